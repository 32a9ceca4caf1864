//! `--samples N` and `--vote` (issue 18, n samples with self-consistency voting): each sample
//! is the run reproduced alone with its seed, the prefill is shared, the vote counts what the
//! extractor finds, and the flags that make no sense together are usage errors.

use crate::cli::{fails_with, gen_json};
use crate::real::real_gguf;
use gen::engine::vote::{tally, Extractor};
use serde_json::Value;

fn tokens(v: &Value) -> Vec<u64> {
    serde_json::from_value(v["tokens"].clone()).unwrap()
}

/// Sample i of `--samples 4 --seed 7` equals the run alone with `--seed 7+i`, token for token,
/// on the real model (its batch rows are computed exactly as a single row); the samples
/// differ, and the JSON gives the prefill once.
#[test]
fn each_sample_is_its_seeds_run_alone() {
    let m = real_gguf();
    let m = m.to_str().unwrap();
    let base = [
        "-m",
        m,
        "-p",
        "Once upon a time",
        "--raw",
        "-n",
        "24",
        "--format",
        "json",
    ];
    let mut args = base.to_vec();
    args.extend(["--samples", "4", "--seed", "7"]);
    let all = gen_json(&args);
    let samples = all["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 4);
    assert!(all["prefill_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(all["prompt_tokens"], samples[0]["timings"]["prompt_tokens"]);
    for (i, s) in samples.iter().enumerate() {
        assert_eq!(s["index"], i + 1);
        assert_eq!(s["seed"], 7 + i as u64);
        let seed = (7 + i).to_string();
        let mut alone = base.to_vec();
        alone.extend(["--seed", &seed]);
        let one = gen_json(&alone);
        assert_eq!(tokens(s), tokens(&one), "sample {}", i + 1);
        assert_eq!(s["text"], one["text"]);
    }
    assert_ne!(
        tokens(&samples[0]),
        tokens(&samples[1]),
        "different seeds, different samples"
    );
}

/// `--vote` counts the answers the extractor finds in the samples' texts: every sample's
/// `answer` is what `Extractor` gives for its text, the tally is theirs, and the winner has the
/// most votes; `--answer-regex` replaces the rules. Text mode ends with the vote line.
#[test]
fn the_vote_tallies_the_extracted_answers() {
    let m = real_gguf();
    let m = m.to_str().unwrap();
    let q = "What is 12 + 30? Answer with a number.";
    let v = gen_json(&[
        "-m",
        m,
        "-p",
        q,
        "-n",
        "40",
        "--samples",
        "6",
        "--vote",
        "--seed",
        "3",
        "--format",
        "json",
    ]);
    let samples = v["samples"].as_array().unwrap();
    let texts: Vec<&str> = samples
        .iter()
        .map(|s| s["text"].as_str().unwrap())
        .collect();
    for s in samples {
        let want = Extractor::Default.answer(s["text"].as_str().unwrap());
        assert_eq!(s["answer"], serde_json::json!(want), "{s}");
    }
    let t = tally(&Extractor::Default, &texts);
    let vote = &v["vote"];
    assert_eq!(vote["no_answer"], t.none);
    assert_eq!(
        vote["answer"],
        serde_json::json!(t.winner().map(|(a, _)| a))
    );
    let counted: u64 = vote["tally"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["votes"].as_u64().unwrap())
        .sum();
    assert_eq!(counted + t.none as u64, 6);

    let v = gen_json(&[
        "-m",
        m,
        "-p",
        q,
        "-n",
        "40",
        "--samples",
        "3",
        "--vote",
        "--seed",
        "3",
        "--format",
        "json",
        "--answer-regex",
        r"(\d+)\D*$",
    ]);
    let re = Extractor::Regex(regex::Regex::new(r"(\d+)\D*$").unwrap());
    for s in v["samples"].as_array().unwrap() {
        assert_eq!(
            s["answer"],
            serde_json::json!(re.answer(s["text"].as_str().unwrap()))
        );
    }

    let out = crate::cli::gen()
        .args([
            "-m",
            m,
            "-p",
            q,
            "-n",
            "40",
            "--samples",
            "3",
            "--vote",
            "--seed",
            "3",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("--- sample 1 (seed 3) ---\n"), "{text}");
    assert!(text.contains("--- sample 3 (seed 5) ---\n"), "{text}");
    assert!(text.lines().last().unwrap().starts_with("vote: "), "{text}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("one prefill | 3 samples"), "{err}");
}

#[test]
fn sample_flags_that_do_not_combine_are_usage_errors() {
    let m = real_gguf();
    let m = m.to_str().unwrap();
    fails_with(&["-m", m, "-p", "x", "--vote"], 2, &["--samples"]);
    fails_with(
        &[
            "-m",
            m,
            "-p",
            "x",
            "--samples",
            "2",
            "--vote",
            "--answer-regex",
            "(",
        ],
        2,
        &["--answer-regex", "not a valid regex"],
    );
    fails_with(
        &["-m", m, "-p", "x", "--samples", "2", "--beams", "2"],
        2,
        &["--beams"],
    );
    fails_with(&["-m", m, "-p", "x", "--samples", "0"], 2, &["--samples"]);
}
