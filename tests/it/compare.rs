//! `--compare`: every strategy's output equals running that strategy alone with the same seed,
//! the same seed gives the same report twice, and bad strategies are usage errors.

use crate::cli::{fails_with, gen, gen_json, tiny_gguf};
use serde_json::Value;

fn run(m: &str, args: &[&str]) -> Value {
    let base = [
        "-m",
        m,
        "-p",
        "hello there",
        "-n",
        "10",
        "--ignore-eos",
        "--format",
        "json",
    ];
    gen_json(&[&base[..], args].concat())
}

#[test]
fn compare_equals_each_strategy_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_gguf(tmp.path());
    let m = m.to_str().unwrap();
    let specs = [
        "greedy",
        "temperature=1",
        "top_k=5",
        "temperature=0.7,top_p=0.9",
        "min_p=0.2",
        "beams=3",
    ];
    let args: Vec<&str> = ["--seed", "11", "--compare"]
        .into_iter()
        .chain(specs)
        .collect();
    let report = run(m, &args);
    let pure = [
        "--temperature",
        "1",
        "--top-k",
        "off",
        "--top-p",
        "1",
        "--min-p",
        "0",
        "--seed",
        "11",
    ];
    let alone: Vec<Vec<&str>> = vec![
        vec!["--greedy"],
        pure.to_vec(),
        [&pure[..], &["--top-k", "5"]].concat(),
        [&pure[..], &["--temperature", "0.7", "--top-p", "0.9"]].concat(),
        [&pure[..], &["--min-p", "0.2"]].concat(),
        vec!["--beams", "3"],
    ];
    let rows = report["strategies"].as_array().unwrap();
    assert_eq!(rows.len(), specs.len());
    for ((row, spec), flags) in rows.iter().zip(specs).zip(alone) {
        // Flags given twice are rejected by clap, so rebuild from the pure base.
        let mut f: Vec<&str> = Vec::new();
        let mut i = 0;
        while i < flags.len() {
            let (k, v) = (flags[i], flags.get(i + 1).copied());
            if let Some(pos) = f.iter().position(|x| *x == k) {
                f[pos + 1] = v.unwrap();
            } else {
                f.push(k);
                if k != "--greedy" {
                    f.push(v.unwrap());
                }
            }
            i += if k == "--greedy" { 1 } else { 2 };
        }
        let single = run(m, &f);
        assert_eq!(row["strategy"], spec);
        assert_eq!(
            row["tokens"], single["tokens"],
            "{spec} vs alone with {f:?}"
        );
        assert_eq!(row["text"], single["text"], "{spec}");
        let d1 = row["distinct_1"].as_f64().unwrap();
        assert!(d1 > 0.0 && d1 <= 1.0);
        assert!(row["mean_logprob"].as_f64().unwrap() <= 0.0);
    }
    assert_eq!(report["seed"], 11);
    // The same seed gives the same report (timings aside), and text mode is reproducible too.
    let again = run(m, &args);
    for (a, b) in rows.iter().zip(again["strategies"].as_array().unwrap()) {
        assert_eq!(a["tokens"], b["tokens"]);
    }
    let text = |_: ()| {
        let out = gen()
            .args([
                "-m",
                m,
                "-p",
                "hello there",
                "-n",
                "10",
                "--ignore-eos",
                "-q",
            ])
            .args(&args)
            .output()
            .unwrap();
        let s = String::from_utf8(out.stdout).unwrap();
        // Drop the footer with the prefill time.
        s.lines()
            .filter(|l| !l.starts_with("prompt ") && !l.contains("tok/s"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let t1 = text(());
    assert_eq!(t1, text(()));
    assert!(
        t1.contains("== beams=3 ==") && t1.contains("distinct-1"),
        "{t1}"
    );
    // jsonl: one record per strategy.
    let out = gen()
        .args([
            "-m",
            m,
            "-p",
            "hi",
            "-n",
            "4",
            "--format",
            "jsonl",
            "--compare",
            "all",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 6);
}

#[test]
fn bad_strategies_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_gguf(tmp.path());
    let m = m.to_str().unwrap();
    fails_with(
        &["-m", m, "-p", "x", "--compare", "nucleus"],
        2,
        &["'nucleus'", "keys:"],
    );
    fails_with(
        &["-m", m, "-p", "x", "--compare", "top_p=3"],
        2,
        &["(0, 1]"],
    );
    fails_with(
        &["-m", m, "-p", "x", "--compare", "greedy", "--beams", "2"],
        2,
        &["--compare"],
    );
}

/// Under a pseudo-terminal (util-linux `script`) the view has one column per strategy and bold
/// headers; `NO_COLOR` turns the colour off; in a pipe there are blocks and no escape codes.
#[test]
fn terminal_view_columns_and_colour() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_gguf(tmp.path());
    let bin = assert_cmd::cargo::cargo_bin("gen");
    let cmd = format!(
        "stty cols 150 rows 40; {} -m {} -p hello -n 6 --ignore-eos --seed 1 -q --compare greedy min_p=0.1 beams=2",
        bin.display(),
        m.display()
    );
    let pty = |no_color: bool| {
        let mut c = std::process::Command::new("script");
        c.args(["-qec", &cmd, "/dev/null"]).env_remove("GEN_MODEL");
        if no_color {
            c.env("NO_COLOR", "1");
        } else {
            c.env_remove("NO_COLOR");
        }
        let out = c
            .output()
            .expect("util-linux `script` runs gen under a pseudo-terminal");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let coloured = pty(false);
    assert!(coloured.contains("\x1b[1mgreedy\x1b[0m"), "{coloured}");
    let first = coloured.lines().next().unwrap();
    assert!(
        first.contains("greedy") && first.contains("min_p=0.1") && first.contains("beams=2"),
        "columns: {first}"
    );
    let plain = pty(true);
    assert!(!plain.contains('\x1b'), "{plain}");
    let piped = gen()
        .args([
            "-m",
            m.to_str().unwrap(),
            "-p",
            "hello",
            "-n",
            "6",
            "-q",
            "--compare",
            "greedy",
            "beams=2",
        ])
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let piped = String::from_utf8(piped.stdout).unwrap();
    assert!(
        piped.starts_with("== greedy ==") && !piped.contains('\x1b'),
        "{piped}"
    );
}

/// In columns narrow enough that some metric lines wrap and others do not, every column's
/// rule sits on the same line, so the texts start side by side.
#[test]
fn terminal_columns_stay_in_line_when_metrics_wrap() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_gguf(tmp.path());
    let bin = assert_cmd::cargo::cargo_bin("gen");
    let cmd = format!(
        "stty cols 100 rows 60; {} -m {} -p hello -n 40 --ignore-eos --seed 1 -q --compare greedy temperature=1 beams=2",
        bin.display(),
        m.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env_remove("GEN_MODEL")
        .env("NO_COLOR", "1")
        .output()
        .expect("util-linux `script` runs gen under a pseudo-terminal");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let rules: Vec<&str> = text.lines().filter(|l| l.contains('─')).collect();
    assert_eq!(rules.len(), 1, "{text}");
    let runs = rules[0]
        .split_whitespace()
        .filter(|w| w.starts_with('─'))
        .count();
    assert_eq!(runs, 3, "{text}");
    // One column's metric lines wrapped onto more lines than the others' (greedy's longest
    // repeat here), else the test would show nothing.
    let heights: Vec<usize> = text
        .lines()
        .take_while(|l| !l.contains('─'))
        .map(|l| l.split("   ").filter(|c| !c.trim().is_empty()).count())
        .collect();
    assert!(heights.iter().any(|&n| n < 3), "{text}");
}

/// On the real model, where strategies end at different steps (at their first full stop) and
/// leave the batch, down to the last one running alone: the batched report equals the
/// sequential one token for token.
#[test]
fn batched_compare_equals_sequential_when_strategies_end_early() {
    let m = crate::real::real_gguf();
    let m = m.to_str().unwrap();
    let report = |extra: &[&str]| {
        let base = [
            "-m",
            m,
            "-p",
            "Once upon a time",
            "-n",
            "40",
            "-t",
            "2",
            "--seed",
            "3",
            "--stop",
            ".",
            "--format",
            "json",
            "--compare",
            "all",
        ];
        gen_json(&[&base[..], extra].concat())
    };
    let (batched, sequential) = (report(&[]), report(&["--compare-sequential"]));
    let rows = batched["strategies"].as_array().unwrap();
    for (a, b) in rows
        .iter()
        .zip(sequential["strategies"].as_array().unwrap())
    {
        assert_eq!(a["strategy"], b["strategy"]);
        assert_eq!(a["tokens"], b["tokens"], "{}", a["strategy"]);
        assert_eq!(a["text"], b["text"], "{}", a["strategy"]);
        assert_eq!(a["stop"], b["stop"], "{}", a["strategy"]);
    }
    // The premise: the batch really shrinks step by step (the sampling strategies, beams
    // aside, end at three or more different steps).
    let ends: Vec<(usize, &str)> = rows
        .iter()
        .filter(|r| !r["strategy"].as_str().unwrap().starts_with("beams"))
        .map(|r| {
            let n = r["tokens"].as_array().unwrap().len();
            (n, r["stop"]["reason"].as_str().unwrap())
        })
        .collect();
    let mut steps: Vec<usize> = ends
        .iter()
        .filter(|(n, r)| *n < 40 && *r == "stop")
        .map(|(n, _)| *n)
        .collect();
    steps.sort_unstable();
    steps.dedup();
    assert!(
        steps.len() >= 3,
        "expected strategies to leave the batch at different steps: {ends:?}"
    );
}

/// `spec=lookup` and `spec=draft` rows: the same tokens as the plain strategy beside them
/// (speculation only changes speed), and the settings they need.
#[test]
fn speculative_variants_give_the_plain_strategies_text() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_gguf(tmp.path());
    let m = m.to_str().unwrap();
    let report = run(
        m,
        &[
            "--seed",
            "3",
            "--model-draft",
            m,
            "--compare",
            "greedy",
            "greedy,spec=lookup",
            "greedy,spec=draft",
            "temperature=0.8",
            "temperature=0.8,spec=lookup",
        ],
    );
    let rows = report["strategies"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[0]["tokens"], rows[1]["tokens"]);
    assert_eq!(rows[0]["tokens"], rows[2]["tokens"]);
    assert_eq!(rows[3]["tokens"], rows[4]["tokens"]);
    assert_eq!(rows[3]["text"], rows[4]["text"]);
    fails_with(
        &["-m", m, "-p", "x", "--compare", "greedy,spec=draft"],
        2,
        &["--model-draft"],
    );
    fails_with(
        &[
            "-m",
            m,
            "-p",
            "x",
            "--lookup",
            "--compare",
            "greedy",
            "min_p=0.1",
        ],
        2,
        &["spec=lookup"],
    );
    fails_with(
        &["-m", m, "-p", "x", "--compare", "beams=2,spec=lookup"],
        2,
        &["beam search cannot speculate"],
    );
    fails_with(
        &["-m", m, "-p", "x", "--compare", "greedy,spec=ngram"],
        2,
        &["spec is `lookup` or `draft`"],
    );
}
