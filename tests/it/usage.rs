//! What a new user does first, end to end: output that streams into a pipe and stops when
//! the reader goes away, escapes in `-p`/`--stop`, seeds that survive JSON readers, usage exit
//! codes, the flag names llama.cpp users know, `--compare` before the prompt, the stdin
//! newline rule, the stats line under `2>&1`, `gen convert` that will not overwrite, `gen
//! tokenize` without the weights, control tokens, and greedy `--explain` without a coin.

use crate::cli::{fails_with, gen, gen_json, json_of, stderr_of, tiny_gguf};
use crate::real::real_gguf;
use crate::tiny::{random_weights, write_safetensors_dir, TinySpec};
use std::io::Read;
use std::process::{Child, Command as Std, Stdio};

/// `gen` on the real model with stdout and stderr piped.
fn spawn_real(args: &[&str]) -> Child {
    Std::new(assert_cmd::cargo::cargo_bin("gen"))
        .env_remove("GEN_MODEL")
        .args(["-m", real_gguf().to_str().unwrap()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The number after `generated ` in a stats line.
fn generated(stats: &str) -> usize {
    stats
        .split("generated ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no generated count in {stats}"))
}

/// A reader of a pipe gets each token as it is generated, not a block at the end: the first
/// read returns a few bytes while gen is still running, and later reads keep getting more.
#[test]
fn piped_output_streams_token_by_token() {
    let mut child = spawn_real(&["-p", "Tell me a long story.", "-n", "3000", "--ignore-eos"]);
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 8192];
    let first = out.read(&mut buf).unwrap();
    // A block-buffered writer would hand over its whole buffer (8 KiB) at once.
    assert!(
        first > 0 && first < 1024,
        "first read gave {first} bytes: output is not streamed per token"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "gen had already finished when its first token arrived"
    );
    let mut more = 0;
    for _ in 0..5 {
        more += out.read(&mut buf).unwrap();
    }
    assert!(more > 0, "no more text arrived while gen was running");
    assert!(child.try_wait().unwrap().is_none());
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `gen ... | head -c 10`: generation stops within a few tokens of the reader leaving (counted
/// in the stats line, not timed), says why, and exits 0; with --each-line no further prompt
/// runs.
#[test]
fn an_early_reader_stops_generation() {
    let tmp = tempfile::tempdir().unwrap();
    let prompts = tmp.path().join("prompts.txt");
    std::fs::write(&prompts, "Tell me a story.\nAnd another one.\nA third.\n").unwrap();
    for args in [
        &["-p", "Tell me a long story.", "-n", "3000", "--ignore-eos"][..],
        &[
            "--each-line",
            "-f",
            prompts.to_str().unwrap(),
            "-n",
            "3000",
            "--ignore-eos",
        ][..],
    ] {
        let mut child = spawn_real(args);
        let mut out = child.stdout.take().unwrap();
        let mut got = [0u8; 10];
        out.read_exact(&mut got).unwrap();
        drop(out);
        let err = stderr_of(&mut child);
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked") && !err.contains("error"), "{err}");
        let stats: Vec<&str> = err.lines().filter(|l| l.starts_with("gen: load")).collect();
        assert_eq!(stats.len(), 1, "{args:?}: one run only: {err}");
        assert!(stats[0].ends_with("stop: output_closed"), "{err}");
        let n = generated(stats[0]);
        assert!(n < 50, "{n} tokens generated after the reader left: {err}");
    }
}

/// Escapes in -p, --stop and --system are processed as llama.cpp does; --no-escape keeps them;
/// files and stdin are taken as they are.
#[test]
fn escapes_in_prompt_and_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_gguf(tmp.path());
    let m = m.to_str().unwrap();
    let input = |args: &[&str], stdin: &str| -> String {
        let out = gen()
            .args(["-m", m, "-n", "1", "-v", "--raw"])
            .args(args)
            .write_stdin(stdin)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8(out.stderr).unwrap();
        let line = err
            .lines()
            .find_map(|l| l.strip_prefix("gen: model input: "))
            .unwrap_or_else(|| panic!("no model input in {err}"))
            .to_string();
        serde_json::from_str::<String>(&line).unwrap()
    };
    assert_eq!(input(&["-p", r"a\nb\t\x41\\"], ""), "a\nb\tA\\");
    assert_eq!(input(&["-p", r"a\nb", "--no-escape"], ""), r"a\nb");
    assert_eq!(input(&[r"pos\n"], ""), "pos\n");
    // Stdin is the prompt's bytes: no escapes.
    assert_eq!(input(&["-f", "-"], "a\\nb"), r"a\nb");

    // The README's example: stop at the first newline, written as "\n".
    let v = gen_json(&[
        "-m",
        real_gguf().to_str().unwrap(),
        "-p",
        r"Q: 2+2?\nA:",
        "--raw",
        "--stop",
        r"\n",
        "--greedy",
        "-n",
        "30",
        "--format",
        "json",
    ]);
    assert_eq!(v["stop"]["reason"], "stop", "{v}");
    assert_eq!(v["stop"]["string"], "\n");
    assert!(!v["text"].as_str().unwrap().contains('\n'));
}

/// A random seed reported in JSON reads back exactly through a double (jq, JavaScript) and
/// reproduces the run; any u64 given explicitly is accepted.
#[test]
fn random_seeds_survive_json_doubles() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_gguf(tmp.path());
    let m = m.to_str().unwrap();
    let base = ["-m", m, "-p", "hello", "-n", "8", "--format", "json"];
    for _ in 0..3 {
        let v = gen_json(&base);
        let seed = v["seed"].as_u64().unwrap();
        let as_double = v["seed"].as_f64().unwrap();
        assert_eq!(
            as_double as u64, seed,
            "seed {seed} does not survive a double"
        );
        assert!(seed < 1 << 32);
        let again = gen_json(&[&base[..], &["--seed", &seed.to_string()]].concat());
        assert_eq!(again["tokens"], v["tokens"]);
    }
    let v = gen_json(&[&base[..], &["--seed", "18446744073709551615"]].concat());
    assert_eq!(v["seed"].as_u64(), Some(u64::MAX));
}

/// llama.cpp's names: --temp, -r/--reverse-prompt, -n -1; perplexity's -c/--ctx-size (and the
/// old --context); empty --stop and --compare values are usage errors.
#[test]
fn flags_llama_cpp_users_know() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_gguf(tmp.path());
    let m = m.to_str().unwrap();
    let run = |extra: &[&str]| {
        gen_json(&[&["-m", m, "-p", "hello", "--format", "json"][..], extra].concat())
    };
    let greedy = run(&["--greedy", "-n", "12"]);
    assert_eq!(
        run(&["--temp", "0", "-n", "12"])["tokens"],
        greedy["tokens"]
    );
    let text = greedy["text"].as_str().unwrap();
    let stop: String = text.chars().skip(3).take(2).collect();
    let a = run(&["--greedy", "-n", "12", "--stop", &stop]);
    let b = run(&["--greedy", "-n", "12", "-r", &stop]);
    let c = run(&["--greedy", "-n", "12", "--reverse-prompt", &stop]);
    assert_eq!(a["stop"]["reason"], "stop");
    for k in ["text", "tokens", "stop"] {
        assert_eq!(a[k], b[k], "{k}");
        assert_eq!(a[k], c[k], "{k}");
    }
    // No limit: until the context is full.
    let v = run(&["-n", "-1", "--ignore-eos", "-c", "40"]);
    assert_eq!(v["stop"]["reason"], "context_full", "{v}");
    fails_with(&["-m", m, "-p", "x", "-n", "-2"], 2, &["-1 for no limit"]);
    fails_with(&["-m", m, "-p", "x", "--stop", ""], 2, &["--stop", "empty"]);
    fails_with(&["-m", m, "-p", "x", "--compare", ""], 2, &["--compare"]);
    // The same for a stop string given in an --each-line object.
    let out = gen()
        .args(["-m", m, "--each-line", "-n", "2", "--format", "jsonl"])
        .write_stdin("{\"prompt\": \"x\", \"stop\": \"\"}\n")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stop string must not be empty"));

    let text_file = tmp.path().join("t.txt");
    std::fs::write(
        &text_file,
        "hello world, this is a text to score. ".repeat(20),
    )
    .unwrap();
    let ppl = |flag: &str| {
        let v = gen_json(&[
            "perplexity",
            text_file.to_str().unwrap(),
            "-m",
            m,
            flag,
            "16",
            "--json",
        ]);
        assert_eq!(v["context"], 16, "{flag}");
        v["ppl"].as_f64().unwrap()
    };
    let p = ppl("-c");
    assert_eq!(ppl("--ctx-size"), p);
    assert_eq!(ppl("--context"), p);
}

/// `--compare all "Once upon a time"`: the list of strategies ends where the prompt begins.
#[test]
fn compare_list_ends_at_the_prompt() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_gguf(tmp.path());
    let m = m.to_str().unwrap();
    let base = [
        "-m", m, "--raw", "-n", "3", "--format", "json", "--seed", "1",
    ];
    let strategies = ["--compare", "greedy", "top_k=5"];
    let before = gen_json(&[&base[..], &strategies, &["Once upon a time"]].concat());
    let after = gen_json(&[&base[..], &["-p", "Once upon a time"], &strategies].concat());
    assert_eq!(before["strategies"].as_array().unwrap().len(), 2);
    assert_eq!(before["prompt_tokens"], after["prompt_tokens"]);
    let tokens = |v: &serde_json::Value| -> Vec<serde_json::Value> {
        v["strategies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["tokens"].clone())
            .collect()
    };
    assert_eq!(tokens(&before), tokens(&after));
    fails_with(
        &["-m", m, "-p", "x", "--compare", "greedy", "Once upon"],
        2,
        &["'Once upon' is not a strategy"],
    );
}

/// One final newline of stdin or a file is not part of the prompt (`echo hi | gen`).
#[test]
fn one_final_newline_of_stdin_or_a_file_is_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_gguf(tmp.path());
    let m = m.to_str().unwrap();
    let prompt_tokens = |args: &[&str], stdin: &str| -> u64 {
        let out = gen()
            .args(["-m", m, "-n", "1", "--raw", "--format", "json"])
            .args(args)
            .write_stdin(stdin)
            .output()
            .unwrap();
        assert!(out.status.success());
        json_of(&out.stdout)["timings"]["prompt_tokens"]
            .as_u64()
            .unwrap()
    };
    let f = |name: &str, text: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let plain = prompt_tokens(&["-p", "hello there"], "");
    assert_eq!(prompt_tokens(&[], "hello there\n"), plain);
    assert_eq!(prompt_tokens(&[], "hello there\r\n"), plain);
    assert_eq!(
        prompt_tokens(&["-f", &f("a.txt", "hello there\n")], ""),
        plain
    );
    // Only one: a blank last line stays.
    assert!(prompt_tokens(&["-f", &f("b.txt", "hello there\n\n")], "") > plain);
}

/// Under `2>&1` the stats line starts on its own line even when the text did not end with a
/// newline; with stderr elsewhere nothing is added to it.
#[test]
fn stats_line_starts_on_a_fresh_line_under_2_to_1() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_gguf(tmp.path());
    let bin = assert_cmd::cargo::cargo_bin("gen");
    let cmd = format!(
        "'{}' -m '{}' -p hello -n 6 --ignore-eos --raw --seed 3 2>&1",
        bin.display(),
        m.display()
    );
    let out = Std::new("bash").args(["-c", &cmd]).output().unwrap();
    let all = String::from_utf8_lossy(&out.stdout).to_string();
    let at = all.find("gen: ").unwrap_or_else(|| panic!("{all}"));
    assert!(at > 0 && all[..at].ends_with('\n'), "{all:?}");
    let text = &all[..at - 1];
    // The text itself is unchanged: the same as with stderr elsewhere.
    let alone = gen()
        .args([
            "-m",
            m.to_str().unwrap(),
            "-p",
            "hello",
            "-n",
            "6",
            "--ignore-eos",
        ])
        .args(["--raw", "--seed", "3"])
        .output()
        .unwrap();
    let alone_text = String::from_utf8_lossy(&alone.stdout).to_string();
    assert!(
        alone_text == text || alone_text == format!("{text}\n"),
        "{alone_text:?} vs {text:?}"
    );
    let err = String::from_utf8_lossy(&alone.stderr);
    assert!(err.starts_with("gen: "), "{err:?}");
}

/// `gen convert` into a folder that holds files is refused unless --force; the weights file
/// gets the same mode as the other files (the umask's).
#[test]
fn convert_refuses_to_overwrite_and_uses_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_gguf(tmp.path());
    let m = m.to_str().unwrap();
    let out = tmp.path().join("hf");
    let o = out.to_str().unwrap();
    gen().args(["convert", m, o]).assert().success();
    let mode = |name: &str| {
        std::fs::metadata(out.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("model.safetensors"), mode("config.json"));
    let before = std::fs::read(out.join("model.safetensors")).unwrap();
    fails_with(&["convert", m, o], 2, &["--force", o]);
    assert_eq!(
        std::fs::read(out.join("model.safetensors")).unwrap(),
        before
    );
    gen()
        .args(["convert", m, o, "--force", "--dtype", "f16"])
        .assert()
        .success();
    assert_ne!(
        std::fs::read(out.join("model.safetensors")).unwrap(),
        before
    );
    // An empty folder is fine.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    gen()
        .args(["convert", m, empty.to_str().unwrap()])
        .assert()
        .success();
}

/// `gen tokenize` reads stdin or --file like the prompt, and never reads the weights (here
/// they are garbage).
#[test]
fn tokenize_reads_stdin_or_a_file_without_the_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = TinySpec::gqa();
    let dir = tmp.path().join("hf");
    write_safetensors_dir(&dir, &spec, &random_weights(&spec));
    std::fs::write(dir.join("model.safetensors"), b"not safetensors at all").unwrap();
    let d = dir.to_str().unwrap();
    let ids = |args: &[&str], stdin: Option<&str>| {
        let mut c = gen();
        c.args(["tokenize", "-m", d, "--json"]).args(args);
        if let Some(s) = stdin {
            c.write_stdin(s);
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        json_of(&out.stdout)["ids"].clone()
    };
    let want = ids(&["hello there"], None);
    assert!(!want.as_array().unwrap().is_empty());
    assert_eq!(ids(&[], Some("hello there\n")), want);
    let f = tmp.path().join("t.txt");
    std::fs::write(&f, "hello there\n").unwrap();
    assert_eq!(ids(&["-f", f.to_str().unwrap()], None), want);
    fails_with(&["tokenize", "-m", d], 2, &["no text to tokenize"]);
    // Generation does read them, and says so.
    fails_with(&["-m", d, "-p", "x"], 1, &["model.safetensors"]);
}

/// Control tokens are not part of the text unless --special (their ids always are in the
/// JSON); with --ignore-eos the chat turn markers would otherwise show.
#[test]
fn control_tokens_are_shown_only_with_special() {
    let m = real_gguf();
    let run = |extra: &[&str]| {
        gen_json(
            &[
                &[
                    "-m",
                    m.to_str().unwrap(),
                    "-p",
                    "What is 2+2?",
                    "--greedy",
                    "--ignore-eos",
                    "-n",
                    "40",
                    "--format",
                    "json",
                ][..],
                extra,
            ]
            .concat(),
        )
    };
    let plain = run(&[]);
    let special = run(&["--special"]);
    assert_eq!(plain["tokens"], special["tokens"]);
    // <|im_end|> is id 2 in SmolLM2's vocabulary.
    assert!(
        plain["tokens"].as_array().unwrap().contains(&2.into()),
        "{plain}"
    );
    let (p, s) = (
        plain["text"].as_str().unwrap(),
        special["text"].as_str().unwrap(),
    );
    assert!(
        !p.contains("<|im_end|>") && s.contains("<|im_end|>"),
        "{p:?} / {s:?}"
    );
    let stripped = s.replace("<|im_end|>", "").replace("<|im_start|>", "");
    assert_eq!(stripped, p);
}

/// Greedy --explain does not show the random number it never uses; sampling does.
#[test]
fn greedy_explain_has_no_coin() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_gguf(tmp.path());
    let m = m.to_str().unwrap();
    let err = |extra: &[&str]| {
        let out = gen()
            .args(["-m", m, "-p", "hi", "-n", "2", "--explain", "-q"])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stderr).unwrap()
    };
    let g = err(&["--greedy"]);
    assert!(g.contains("step 0 · picked") && !g.contains("coin"), "{g}");
    assert!(err(&["--seed", "1"]).contains("step 0 · coin"));
    let v = gen_json(&[
        "-m",
        m,
        "-p",
        "hi",
        "-n",
        "1",
        "--explain",
        "--greedy",
        "--format",
        "json",
    ]);
    assert!(v["explain"][0]["coin"].is_null(), "{v}");
}

/// The compare footer counts in words people write ("the first token"), and a strategy with
/// no repeat says so.
#[test]
fn compare_footer_reads_naturally() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_gguf(tmp.path());
    let out = gen()
        .args(["-m", m.to_str().unwrap(), "-p", "hi", "-n", "1", "--raw"])
        .args(["--compare", "greedy", "top_k=1"])
        .output()
        .unwrap();
    let s = String::from_utf8(out.stdout).unwrap();
    assert!(s.contains("share the first token"), "{s}");
    assert!(
        !s.contains("first 1 tokens") && !s.contains("repeat 0 tok"),
        "{s}"
    );
    assert!(s.contains("no repeated tokens"), "{s}");
    assert!(!s.contains("0.0 tok/s"), "{s}");
}
