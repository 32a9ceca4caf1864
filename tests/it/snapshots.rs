//! The output formats pinned with insta snapshots (timings, paths and floats that depend on
//! the machine's arithmetic masked): a sampled generation with --logprobs, beam search with
//! --num-return, --compare, and --each-line as JSONL. The schema is documented in docs/OUTPUT.md;
//! a change to it shows up here as a snapshot diff.

use crate::cli::{gen, json_of, tiny_gguf};
use insta::assert_json_snapshot;
use serde_json::Value;

fn run(args: &[&str], stdin: Option<&str>) -> Vec<u8> {
    let mut c = gen();
    c.args(args);
    if let Some(s) = stdin {
        c.write_stdin(s);
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Replaces every float by its kind, so the snapshot pins structure and exact values (ids,
/// texts, counts) but not the last bits of arithmetic.
fn mask_floats(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => *v = Value::String("<float>".into()),
        Value::Array(a) => a.iter_mut().for_each(mask_floats),
        Value::Object(o) => o.values_mut().for_each(mask_floats),
        _ => {}
    }
}

#[test]
fn output_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_gguf(tmp.path());
    let m = m.to_str().unwrap();
    let base = [
        "-m",
        m,
        "-p",
        "hello",
        "-n",
        "4",
        "--ignore-eos",
        "--seed",
        "3",
        // The pinned ids come from a random tiny model, full of near-ties; the f32 cache keeps
        // them independent of the f16 rounding GGUF's default cache adds.
        "--cache-type",
        "f32",
    ];
    let settings = {
        let mut s = insta::Settings::clone_current();
        s.add_redaction(".model", "<model>");
        s.add_redaction(".timings", "<timings>");
        s.add_redaction("[].model", "<model>");
        s.add_redaction("[].timings", "<timings>");
        s.add_redaction(".prefill_ms", "<ms>");
        s
    };
    settings.bind(|| {
        let mut v = json_of(&run(
            &[&base[..], &["--format", "json", "--logprobs", "2"]].concat(),
            None,
        ));
        mask_floats(&mut v);
        assert_json_snapshot!("sampled_json", v);

        let mut v = json_of(&run(
            &[
                "-m",
                m,
                "-p",
                "hello",
                "-n",
                "4",
                "--ignore-eos",
                "--cache-type",
                "f32",
                "--beams",
                "3",
                "--num-return",
                "2",
                "--format",
                "json",
            ],
            None,
        ));
        mask_floats(&mut v);
        assert_json_snapshot!("beams_json", v);

        let mut v = json_of(&run(
            &[
                &base[..],
                &[
                    "--format",
                    "json",
                    "--compare",
                    "greedy",
                    "min_p=0.1",
                    "beams=2",
                ],
            ]
            .concat(),
            None,
        ));
        mask_floats(&mut v);
        assert_json_snapshot!("compare_json", v);

        let out = run(
            &[
                "-m",
                m,
                "-n",
                "3",
                "--ignore-eos",
                "--cache-type",
                "f32",
                "--greedy",
                "--each-line",
                "--format",
                "jsonl",
            ],
            Some("hello\n{\"prompt\": \"bye\", \"max_tokens\": 2}\n"),
        );
        let mut lines: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        lines.iter_mut().for_each(|l| {
            l["seed"] = "<random>".into();
            mask_floats(l);
        });
        assert_json_snapshot!("each_line_jsonl", lines);
    });
}
