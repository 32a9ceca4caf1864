//! The sampler chain through the `gen` binary: every sampling flag parses into the chain it
//! should, every out-of-range value is a usage error naming the flag, seeds reproduce across
//! processes, and --logprobs / --explain report what the model and the chain did.

use crate::cli::{fails_with, gen, json_of, tiny_gguf};
use serde_json::Value;

fn run_json(args: &[&str]) -> (Value, String) {
    let out = gen()
        .args(args)
        .args(["--format", "json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{args:?}: {stderr}");
    (json_of(&out.stdout), stderr)
}

fn tokens(v: &Value) -> Vec<u64> {
    v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect()
}

fn sampler(v: &Value) -> Vec<String> {
    v["sampler"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn flags_build_the_chain_they_name() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_gguf(tmp.path());
    let m = m.to_str().unwrap();
    let base = ["-m", m, "-p", "hello", "-n", "4", "--ignore-eos"];

    // Defaults: llama.cpp's chain; penalties off and reported so with -v.
    let (v, err) = run_json(&[&base[..], &["--seed", "1", "-v"]].concat());
    assert_eq!(
        sampler(&v),
        [
            "temperature(t=0.8)",
            "top-k(k=40)",
            "top-p(p=0.95)",
            "min-p(p=0.05)",
            "dist"
        ]
    );
    assert_eq!(v["seed"], 1);
    assert!(
        err.contains("sampler chain: temperature(t=0.8) → top-k(k=40)"),
        "{err}"
    );
    assert!(err.contains("(seed 1)"), "{err}");
    assert!(err.contains("no-op: penalties are off"), "{err}");

    // Every flag at once, in a custom order.
    let (v, _) = run_json(
        &[
            &base[..],
            &[
                "--temperature",
                "1.3",
                "--top-k",
                "off",
                "--top-p",
                "0.9",
                "--min-p",
                "0.02",
                "--typical-p",
                "0.95",
                "--repeat-penalty",
                "1.1",
                "--repeat-last-n",
                "-1",
                "--frequency-penalty",
                "0.5",
                "--presence-penalty",
                "-0.25",
                "--logit-bias",
                "3=-inf",
                "--logit-bias",
                "5=2.5",
                "--min-keep",
                "2",
                "--samplers",
                "typical,top-p,penalties,logit-bias,min-p,temperature,top-k",
            ],
        ]
        .concat(),
    );
    assert_eq!(
        sampler(&v),
        [
            "typical(p=0.95)",
            "top-p(p=0.9)",
            "penalties(repeat=1.1, frequency=0.5, presence=-0.25, last_n=all)",
            "logit-bias(3=-inf, 5=2.5)",
            "min-p(p=0.02)",
            "temperature(t=1.3)",
            "dist"
        ]
    );
    assert!(!tokens(&v).contains(&3), "a banned token was generated");

    // Temperature 0 and --greedy are greedy; the filters are reported as no-ops.
    let (g1, err) =
        run_json(&[&base[..], &["--temperature", "0", "--top-p", "0.5", "-v"]].concat());
    let (g2, _) = run_json(&[&base[..], &["--greedy", "--seed", "99"]].concat());
    assert_eq!(sampler(&g1), ["greedy"]);
    assert_eq!(tokens(&g1), tokens(&g2));
    assert!(
        err.contains("no-op: top-p 0.5 has no effect: temperature 0 is greedy"),
        "{err}"
    );
    // Settings that cancel out on their own.
    let (v, err) = run_json(
        &[
            &base[..],
            &["--top-p", "1", "--min-p", "0", "--temperature", "1", "-v"],
        ]
        .concat(),
    );
    assert_eq!(sampler(&v), ["top-k(k=40)", "dist"]);
    for n in [
        "top-p 1 has no effect",
        "min-p 0 has no effect",
        "temperature 1 has no effect",
    ] {
        assert!(err.contains(n), "{n}: {err}");
    }
    // --samplers with a subset leaves the others out.
    let (v, _) = run_json(&[&base[..], &["--samplers", "top-k;temperature"]].concat());
    assert_eq!(sampler(&v), ["top-k(k=40)", "temperature(t=0.8)", "dist"]);
}

#[test]
fn seeds_reproduce_across_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_gguf(tmp.path());
    let m = m.to_str().unwrap();
    let args = [
        "-m",
        m,
        "-p",
        "hello",
        "-n",
        "24",
        "--ignore-eos",
        "--temperature",
        "1.5",
        "--top-k",
        "off",
    ];
    let a = run_json(&[&args[..], &["--seed", "7"]].concat()).0;
    let b = run_json(&[&args[..], &["--seed", "7"]].concat()).0;
    let c = run_json(&[&args[..], &["--seed", "8"]].concat()).0;
    assert_eq!(tokens(&a), tokens(&b));
    assert_ne!(tokens(&a), tokens(&c));
    // Without --seed a seed is chosen, reported, and reproduces the run.
    let (d, _) = run_json(&args);
    let seed = d["seed"].as_u64().unwrap().to_string();
    let (e, _) = run_json(&[&args[..], &["--seed", &seed]].concat());
    assert_eq!(tokens(&d), tokens(&e));
    // -1 means random, as in llama.cpp.
    let (f, _) = run_json(&[&args[..], &["--seed", "-1"]].concat());
    assert!(f["seed"].is_u64());
    // Text mode prints the same text as JSON for the same seed.
    let out = gen()
        .args(args)
        .args(["--seed", "7", "-q"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        a["text"].as_str().unwrap()
    );
}

#[test]
fn logprobs_and_explain_report_the_step() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_gguf(tmp.path());
    let m = m.to_str().unwrap();
    let base = [
        "-m",
        m,
        "-p",
        "hello",
        "-n",
        "5",
        "--ignore-eos",
        "--seed",
        "3",
    ];

    let (v, _) = run_json(&[&base[..], &["--greedy", "--logprobs", "3"]].concat());
    let lp = v["logprobs"].as_array().unwrap();
    assert_eq!(lp.len(), 5);
    for (entry, &tok) in lp.iter().zip(&tokens(&v)) {
        assert_eq!(entry["token"].as_u64().unwrap(), tok);
        let top = entry["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        // Greedy picks the most likely token, so it heads the alternatives with its own logprob.
        assert_eq!(top[0]["token"], entry["token"]);
        assert_eq!(top[0]["logprob"], entry["logprob"]);
        let lps: Vec<f64> = top.iter().map(|t| t["logprob"].as_f64().unwrap()).collect();
        assert!(
            lps.windows(2).all(|w| w[0] >= w[1]) && lps[0] <= 0.0,
            "{lps:?}"
        );
    }

    let (v, _) = run_json(&[&base[..], &["--explain", "4", "--top-k", "5"]].concat());
    let ex = v["explain"].as_array().unwrap();
    assert_eq!(ex.len(), 5);
    for (step, &tok) in ex.iter().zip(&tokens(&v)) {
        assert_eq!(step["chosen"].as_u64().unwrap(), tok);
        let stages: Vec<&str> = step["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert_eq!(stages[0], "model");
        assert_eq!(stages[2], "top-k(k=5)");
        let kept: Vec<u64> = step["kept"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_u64().unwrap())
            .collect();
        assert_eq!(kept[0], 300, "the tiny vocabulary");
        assert_eq!(kept[2], 5);
        let rows = step["rows"].as_array().unwrap();
        assert!(rows.iter().any(|r| r["token"] == step["chosen"]));
        for r in rows {
            let probs = r["probs"].as_array().unwrap();
            match r["removed_by"].as_str() {
                Some(stage) => {
                    let at = stages.iter().position(|s| *s == stage).unwrap();
                    assert!(probs[at].is_null() && !probs[at - 1].is_null());
                }
                None => assert!(probs.iter().all(|p| p.is_f64())),
            }
        }
    }

    // Text mode: the text alone on stdout, the tables on stderr.
    let out = gen()
        .args(base)
        .args(["--explain", "--logprobs", "2", "-q"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("step 0 · coin") && err.contains("<- picked"),
        "{err}"
    );
    assert!(err.contains("gen: logprobs"), "{err}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        run_json(&base).0["text"].as_str().unwrap()
    );
}

#[test]
fn out_of_range_sampling_flags_are_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_gguf(tmp.path());
    let m = m.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--temperature", "-0.5"], "--temperature"),
        (&["--temperature", "nan"], "finite"),
        (&["--top-p", "0"], "(0, 1]"),
        (&["--top-p", "1.5"], "--top-p"),
        (&["--top-k", "0"], "`off`"),
        (&["--top-k", "many"], "--top-k"),
        (&["--min-p", "1.5"], "[0, 1]"),
        (&["--min-p", "-0.1"], "--min-p"),
        (&["--typical-p", "0"], "--typical-p"),
        (&["--repeat-penalty", "0"], "> 0"),
        (&["--repeat-last-n", "-2"], "--repeat-last-n"),
        (&["--frequency-penalty", "inf"], "finite"),
        (&["--logit-bias", "3"], "ID=BIAS"),
        (&["--logit-bias", "x=1"], "token id"),
        (&["--logit-bias", "3=inf"], "-inf"),
        (
            &["--samplers", "top-k,nucleus"],
            "valid samplers: penalties, logit-bias, temperature, top-k, top-p, min-p, typical",
        ),
        (&["--samplers", "top-k,top_k"], "listed twice"),
        (&["--greedy", "--temperature", "0.5"], "--greedy"),
        (&["--seed", "-2"], "--seed"),
        (&["--logprobs", "101"], "--logprobs"),
        (&["--explain", "0"], "--explain"),
        (&["--min-keep", "0"], "--min-keep"),
    ];
    for (flags, what) in cases {
        let args = [&["-m", m, "-p", "x"][..], flags].concat();
        fails_with(&args, 2, &[what]);
    }
    // A token id outside the vocabulary is only known once the model is loaded: exit 1.
    fails_with(
        &["-m", m, "-p", "x", "--logit-bias", "300=1"],
        1,
        &["--logit-bias names token 300", "300 tokens"],
    );
}
