//! The README's commands, run as written: the generation of "Two commands" and every line of
//! the Usage block, in order, in a scratch folder that holds what they name (the real model
//! under `models/`, `tests/oracle/text.txt`, `notes.txt`, `prompts.txt`, `prompt.txt`, and a
//! Hub cache made from the folder `gen convert` writes). `gen` is a shell function that runs
//! this build's binary. Each line must succeed, and where its comment promises something,
//! the output shows it.

use crate::real::real_gguf;
use std::path::{Path, PathBuf};
use std::process::Command;

fn readme() -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md");
    std::fs::read_to_string(p).unwrap()
}

/// The lines of the first ```sh block after `heading`.
fn sh_block(text: &str, heading: &str) -> Vec<String> {
    let at = text
        .find(heading)
        .unwrap_or_else(|| panic!("README has no {heading}"));
    let rest = &text[at..];
    let start = rest.find("```sh\n").expect("a ```sh block") + 6;
    let end = start + rest[start..].find("```").expect("the end of the block");
    rest[start..end]
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The command without its trailing comment (`  # ...`).
fn command(line: &str) -> &str {
    line.find("  #").map_or(line, |i| &line[..i]).trim_end()
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(dir: &Path, hf_home: &Path, cmd: &str) -> Run {
    let bin = assert_cmd::cargo::cargo_bin("gen");
    let script = format!("gen() {{ '{}' \"$@\"; }}\n{cmd}\n", bin.display());
    let out = Command::new("bash")
        .args(["-c", &script])
        .current_dir(dir)
        .env_remove("GEN_MODEL")
        .env("HF_HOME", hf_home)
        .env("HF_HUB_OFFLINE", "1")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A Hub cache (`$HF_HOME/hub`) holding `repo` at revision `main` with the files of `folder`,
/// as hf-hub lays it out.
fn hub_cache(hf_home: &Path, repo: &str, folder: &Path) {
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let root = hf_home
        .join("hub")
        .join(format!("models--{}", repo.replace('/', "--")));
    let snap = root.join("snapshots").join(sha);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(root.join("refs")).unwrap();
    std::fs::write(root.join("refs/main"), sha).unwrap();
    for f in std::fs::read_dir(folder).unwrap() {
        let f = f.unwrap().path();
        std::os::unix::fs::symlink(&f, snap.join(f.file_name().unwrap())).unwrap();
    }
}

#[test]
fn every_readme_command_runs_and_does_what_it_says() {
    let text = readme();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("work");
    let hf_home = tmp.path().join("hf");
    std::fs::create_dir_all(dir.join("models")).unwrap();
    std::fs::create_dir_all(dir.join("tests/oracle")).unwrap();
    std::os::unix::fs::symlink(
        real_gguf(),
        dir.join("models").join(gen::config::DEFAULT_MODEL_FILE),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/text.txt"),
        dir.join("tests/oracle/text.txt"),
    )
    .unwrap();
    std::fs::write(
        dir.join("notes.txt"),
        "- the meeting moved to Tuesday\n- bring the budget figures\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("prompts.txt"),
        "What is 2+2?\n{\"prompt\": \"Name a colour.\", \"seed\": 7}\nSay hello.\n",
    )
    .unwrap();
    std::fs::write(dir.join("prompt.txt"), "Write a haiku about the sea.\n").unwrap();

    // "Two commands": the generation, with this build instead of `cargo run --release --`.
    let two = sh_block(&text, "## Two commands");
    let first = two
        .iter()
        .find_map(|l| l.split_once("cargo run --release -- ").map(|(_, a)| a))
        .expect("the README's generation command");
    let r = run(&dir, &hf_home, &format!("gen {first}"));
    assert_eq!(r.code, Some(0), "{first}: {}", r.stderr);
    assert!(!r.stdout.trim().is_empty(), "{first}: no text");
    assert!(r.stderr.contains("(chat template)"), "{}", r.stderr);

    let usage = sh_block(&text, "## Usage");
    assert!(usage.len() >= 15, "{usage:?}");
    for line in &usage {
        let cmd = command(line);
        if cmd.contains("HuggingFaceTB/") {
            hub_cache(
                &hf_home,
                "HuggingFaceTB/SmolLM2-135M-Instruct",
                &dir.join("models/SmolLM2-135M-Instruct"),
            );
        }
        let r = run(&dir, &hf_home, cmd);
        let ctx = format!("{cmd}\nstdout: {}\nstderr: {}", r.stdout, r.stderr);
        assert_eq!(r.code, Some(0), "{ctx}");
        assert!(
            !r.stderr.contains("error") && !r.stderr.contains("panicked"),
            "{ctx}"
        );
        if !cmd.starts_with("gen convert") && !cmd.starts_with("gen quantize") {
            assert!(!r.stdout.trim().is_empty(), "no output: {ctx}");
        }
        check(cmd, &r, &dir, &hf_home, &ctx);
    }
}

/// What each line's comment promises.
fn check(cmd: &str, r: &Run, dir: &Path, hf_home: &Path, ctx: &str) {
    let stats = || {
        r.stderr
            .lines()
            .filter(|l| l.starts_with("gen: load"))
            .collect::<Vec<_>>()
    };
    if cmd.starts_with("gen \"What is the capital") {
        assert!(r.stderr.contains("(chat template)"), "{ctx}");
    }
    if cmd.contains("--raw") && !cmd.contains("--compare") {
        assert!(!r.stderr.contains("(chat template)"), "{ctx}");
    }
    if cmd.contains("--seed 42") {
        let again = run(dir, hf_home, cmd);
        assert_eq!(again.stdout, r.stdout, "not reproducible: {ctx}");
    }
    if cmd.contains("--explain") {
        assert!(r.stderr.contains("step 0 · coin"), "{ctx}");
    }
    if cmd.contains("--num-return 3") {
        for k in ["[1] score", "[2] score", "[3] score"] {
            assert!(r.stdout.contains(k), "{k}: {ctx}");
        }
    }
    if cmd.contains("--stop") {
        assert!(!r.stdout.contains('\n'), "{ctx}");
        assert!(stats()[0].ends_with("stop: stop"), "{ctx}");
    }
    if cmd.contains("notes.txt") {
        assert!(stats()[0].contains("(chat template)"), "{ctx}");
    }
    if cmd.contains("--each-line") {
        let records: Vec<serde_json::Value> = r
            .stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let lines: Vec<u64> = records
            .iter()
            .map(|v| v["line"].as_u64().unwrap())
            .collect();
        assert_eq!(lines, [1, 2, 3], "{ctx}");
        assert_eq!(records[1]["seed"], 7, "{ctx}");
    }
    if cmd.contains("--compare all") {
        assert_eq!(r.stdout.matches("\n== ").count() + 1, 6, "{ctx}");
        assert!(r.stdout.starts_with("== greedy =="), "{ctx}");
    }
    if cmd.contains("--format json ") || cmd.ends_with("--format json") {
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        for k in ["text", "tokens", "stop", "timings"] {
            assert!(!v[k].is_null(), "{k}: {ctx}");
        }
    }
    if cmd.contains("| head -c 200") {
        assert!(r.stdout.len() <= 200, "{ctx}");
        let s = stats();
        assert!(
            s[0].ends_with("stop: output_closed") || s[0].ends_with("stop: eos"),
            "{ctx}"
        );
    }
    if cmd.contains(" -md ") || cmd.contains("--lookup") {
        assert!(stats()[0].contains("| draft: "), "{ctx}");
    }
    // `gen convert|quantize IN OUT ...`: what OUT must be.
    let args: Vec<&str> = cmd.split_whitespace().collect();
    let (input, out) = (
        args.get(2).copied().unwrap_or(""),
        args.get(3).copied().unwrap_or(""),
    );
    let hf_to_gguf = || {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oracle/hf_to_gguf.json");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        v["inputs"]["real"].clone()
    };
    let sha = |p: &str| crate::quantize::sha256_file(&dir.join(p));
    if cmd.starts_with("gen convert") && input.ends_with(".gguf") {
        // The folder hf_to_gguf.py converted, file for file.
        for (name, f) in hf_to_gguf()["files"].as_object().unwrap() {
            assert_eq!(
                sha(&format!("{out}/{name}")),
                f["sha256"].as_str().unwrap(),
                "{name}: {ctx}"
            );
        }
    }
    if cmd.starts_with("gen convert") && out.ends_with(".gguf") {
        let dtype = args[args.iter().position(|&a| a == "--dtype").unwrap() + 1];
        assert_eq!(
            sha(out),
            hf_to_gguf()["convert"][dtype]["sha256"].as_str().unwrap(),
            "{ctx}"
        );
    }
    if cmd.starts_with("gen quantize") {
        let ty = args[4];
        let want = if input.ends_with(".gguf") {
            let oracle = crate::quantize::oracle();
            oracle["real"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == ty)
                .and_then(|c| c["sha256"].as_str())
                .unwrap()
                .to_string()
        } else {
            hf_to_gguf()["quantize"][ty]["sha256"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(sha(out), want, "{ctx}");
    }
    if cmd.contains("tokenize --json") {
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(
            v["ids"].as_array().unwrap().len(),
            v["pieces"].as_array().unwrap().len(),
            "{ctx}"
        );
    }
    if cmd.contains("| gen tokenize") {
        // The same ids as the argument (the final newline of stdin is not part of the text).
        let ids: Vec<u64> = r
            .stdout
            .lines()
            .map(|l| l.split('\t').next().unwrap().parse().unwrap())
            .collect();
        let arg = run(dir, hf_home, "gen tokenize --json \"x =  12\"");
        let v: serde_json::Value = serde_json::from_str(&arg.stdout).unwrap();
        let want: Vec<u64> = v["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect();
        assert_eq!(ids, want, "{ctx}");
    }
    if cmd.starts_with("gen perplexity") {
        assert!(r.stdout.starts_with("perplexity "), "{ctx}");
    }
}
