//! Every way a prompt reaches `gen`: argument, --prompt, --file, stdin, stdin plus an argument,
//! `-`, and --each-line batches (plain lines and JSONL with per-prompt overrides), with the
//! output formats text, json and jsonl.

use crate::cli::{fails_with, gen, json_of, tiny_gguf};
use serde_json::Value;

fn tokens_of(v: &Value) -> Vec<u64> {
    v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect()
}

fn prompt_tokens(m: &str, args: &[&str], stdin: Option<&str>) -> u64 {
    let mut c = gen();
    c.args(["-m", m, "-n", "1", "--greedy", "--format", "json"])
        .args(args);
    if let Some(s) = stdin {
        c.write_stdin(s);
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_of(&out.stdout)["timings"]["prompt_tokens"]
        .as_u64()
        .unwrap()
}

#[test]
fn prompt_sources_combine() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_gguf(tmp.path());
    let m = m.to_str().unwrap();
    let file = tmp.path().join("p.txt");
    std::fs::write(&file, "hello there").unwrap();
    let f = file.to_str().unwrap();
    let tok = |s: &str| {
        let out = gen()
            .args(["tokenize", "-m", m, "--json", s])
            .output()
            .unwrap();
        json_of(&out.stdout)["ids"].as_array().unwrap().len() as u64
    };
    let n = tok("hello there");
    assert_eq!(prompt_tokens(m, &["hello there"], None), n);
    assert_eq!(prompt_tokens(m, &["-p", "hello there"], None), n);
    assert_eq!(prompt_tokens(m, &["-f", f], None), n);
    assert_eq!(prompt_tokens(m, &[], Some("hello there")), n);
    assert_eq!(prompt_tokens(m, &["-f", "-"], Some("hello there")), n);
    // `-f -` (stdin) first, then the argument, joined by a newline.
    assert_eq!(
        prompt_tokens(m, &["-f", "-", "tt hi"], Some("hello there")),
        tok("hello there\ntt hi")
    );
    assert_eq!(
        prompt_tokens(m, &["-f", "-", "tt hi"], Some("hello there\n")),
        tok("hello there\ntt hi")
    );
    // With prompt text and no `-f -`, piped stdin is not read (it could stay open forever).
    assert_eq!(
        prompt_tokens(m, &["tt hi"], Some("hello there")),
        tok("tt hi")
    );
    // A file replaces stdin and combines with the argument too.
    assert_eq!(
        prompt_tokens(m, &["-f", f, "tt hi"], Some("ignored")),
        tok("hello there\ntt hi")
    );
    // Empty stdin and no argument: an error, not a wait.
    fails_with(&["-m", m], 2, &["no prompt"]);
    fails_with(&["-m", m, "a", "-p", "b"], 2, &["give the prompt once"]);
}

#[test]
fn each_line_runs_every_prompt_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_gguf(tmp.path());
    let m = m.to_str().unwrap();
    let single = |p: &str, extra: &[&str]| {
        let out = gen()
            .args(["-m", m, "-p", p, "--ignore-eos", "--format", "json"])
            .args(extra)
            .output()
            .unwrap();
        json_of(&out.stdout)
    };
    let input = "hello\n\n{\"prompt\": \"tt hi\", \"seed\": 9, \"temperature\": 1.2, \"max_tokens\": 3}\n{oops\n{\"prompt\": \"x\", \"colour\": 1}\nbye\n";
    let out = gen()
        .args([
            "-m",
            m,
            "--each-line",
            "-n",
            "5",
            "--ignore-eos",
            "--format",
            "jsonl",
            "--seed",
            "1",
        ])
        .write_stdin(input)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "two lines fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 4:")
            && stderr.contains("line 5")
            && stderr.contains("2 of 5 prompts failed"),
        "{stderr}"
    );
    let recs: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let lines: Vec<u64> = recs.iter().map(|r| r["line"].as_u64().unwrap()).collect();
    assert_eq!(
        lines,
        [1, 3, 4, 5, 6],
        "one record per prompt, in input order"
    );
    assert!(recs[2]["error"].is_string() && recs[3]["error"].as_str().unwrap().contains("colour"));
    // Each record equals running that prompt alone with the same settings.
    assert_eq!(
        tokens_of(&recs[0]),
        tokens_of(&single("hello", &["--seed", "1", "-n", "5"]))
    );
    assert_eq!(
        tokens_of(&recs[1]),
        tokens_of(&single(
            "tt hi",
            &["--seed", "9", "--temperature", "1.2", "-n", "3"]
        ))
    );
    assert_eq!(recs[1]["seed"], 9);
    assert_eq!(
        tokens_of(&recs[4]),
        tokens_of(&single("bye", &["--seed", "1", "-n", "5"]))
    );

    // --format json: one array; text: one line per prompt.
    let out = gen()
        .args([
            "-m",
            m,
            "--each-line",
            "-n",
            "4",
            "--ignore-eos",
            "--format",
            "json",
            "--greedy",
        ])
        .write_stdin("hello\nbye\n")
        .output()
        .unwrap();
    assert!(out.status.success());
    let arr = json_of(&out.stdout);
    assert_eq!(arr.as_array().unwrap().len(), 2);
    let out = gen()
        .args([
            "-m",
            m,
            "--each-line",
            "-n",
            "4",
            "--ignore-eos",
            "--greedy",
            "-q",
        ])
        .write_stdin("hello\nbye\n")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    // Text mode: each answer ends with a newline and an empty line separates answers.
    assert_eq!(
        text,
        format!(
            "{}\n\n{}\n",
            arr[0]["text"].as_str().unwrap(),
            arr[1]["text"].as_str().unwrap()
        )
    );
    fails_with(
        &["-m", m, "--each-line", "-f", "/dev/null"],
        2,
        &["no prompt"],
    );
    fails_with(&["-m", m, "--each-line"], 2, &["no prompt"]);
}
