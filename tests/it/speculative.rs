//! Speculative decoding with prompt-lookup drafts (`--lookup`, issue 18): the output equals
//! the plain run's token for token — greedy and seeded sampling, on the real model and on a
//! tiny random model whose drafts are mostly rejected — and the drafts are counted.

use crate::cli::{fails_with, gen_json, tiny_gguf};
use crate::real::real_gguf;
use serde_json::Value;

fn tokens(v: &Value) -> Vec<u64> {
    serde_json::from_value(v["tokens"].clone()).unwrap()
}

/// Runs `args` plain and with `--lookup` (and the `lookup` flags); the token ids must be equal. Returns the drafted and
/// accepted counts of the speculative run.
fn same_with_lookup(args: &[&str], lookup: &[&str]) -> (u64, u64) {
    let plain = gen_json(args);
    let mut spec_args = args.to_vec();
    spec_args.push("--lookup");
    spec_args.extend_from_slice(lookup);
    let spec = gen_json(&spec_args);
    assert_eq!(tokens(&plain), tokens(&spec), "{args:?}");
    assert_eq!(plain["text"], spec["text"]);
    assert_eq!(plain["stop"], spec["stop"]);
    let t = &spec["timings"];
    (
        t["drafted_tokens"].as_u64().unwrap_or(0),
        t["accepted_tokens"].as_u64().unwrap_or(0),
    )
}

/// The real model, 4 prompts (two that repeat their input) × greedy and two seeds, 96 tokens.
#[test]
fn lookup_changes_no_token_on_the_real_model() {
    let m = real_gguf();
    let m = m.to_str().unwrap();
    let prompts = [
        "Repeat this list exactly: apple, banana, cherry, date, elderberry, fig, grape, honeydew.",
        "Copy this sentence twice: the quick brown fox jumps over the lazy dog.",
        "Once upon a time",
        "Write a Python function that adds two numbers, then the same function with comments.",
    ];
    let (mut drafted, mut accepted) = (0, 0);
    for p in prompts {
        for sampling in [&["--greedy"][..], &["--seed", "1"], &["--seed", "2"]] {
            let mut args = vec!["-m", m, "-p", p, "-n", "96", "--format", "json"];
            args.extend_from_slice(sampling);
            let (d, a) = same_with_lookup(&args, &[]);
            drafted += d;
            accepted += a;
        }
    }
    assert!(
        drafted > 0 && accepted > 0,
        "drafted {drafted}, accepted {accepted}"
    );
    assert!(accepted <= drafted);
}

/// A tiny random model: drafts are mostly wrong, and every rejection must leave the cache and
/// the sampler exactly where the plain run has them (also at the context's end).
#[test]
fn lookup_changes_no_token_when_drafts_fail() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_gguf(tmp.path());
    let m = m.to_str().unwrap();
    let (mut drafted, mut accepted) = (0, 0);
    for seed in ["1", "2", "3", "4"] {
        for temp in ["0", "0.8", "1.5"] {
            let args = [
                "-m",
                m,
                "-p",
                "tt hi tt hi tt",
                "-n",
                "80",
                "--ignore-eos",
                "--seed",
                seed,
                "--temperature",
                temp,
                "--format",
                "json",
            ];
            let (d, a) = same_with_lookup(&args, &[]);
            drafted += d;
            accepted += a;
        }
    }
    assert!(
        drafted > 2 * accepted,
        "drafted {drafted}, accepted {accepted}: mostly rejected"
    );
    // At the end of a small context, with stop strings and a short draft.
    let end = [
        "-m",
        m,
        "-p",
        "tt hi tt hi tt",
        "-n",
        "-1",
        "--ignore-eos",
        "-c",
        "40",
        "--seed",
        "5",
        "--stop",
        "zz",
        "--format",
        "json",
    ];
    same_with_lookup(&end, &["--draft-max", "3"]);
    same_with_lookup(&end, &["--lookup-ngram", "1", "--draft-max", "64"]);
}

#[test]
fn lookup_flags_that_do_not_combine_are_usage_errors() {
    let m = real_gguf();
    let m = m.to_str().unwrap();
    fails_with(
        &["-m", m, "-p", "x", "--lookup", "--beams", "2"],
        2,
        &["--beams"],
    );
    fails_with(
        &["-m", m, "-p", "x", "--lookup", "--samples", "2"],
        2,
        &["--samples"],
    );
    fails_with(&["-m", m, "-p", "x", "--draft-max", "4"], 2, &["--lookup"]);
}
