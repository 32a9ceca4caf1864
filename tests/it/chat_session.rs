//! `gen chat` (issue 19) on the real model: scripted sessions (one message per line, JSONL
//! out), the KV cache kept between turns against fresh processes, context overflow, `/save`
//! and `/load`, and a real pseudo-terminal (util-linux `script`) for the line editor, the
//! commands, `"""` input, Ctrl-C and Ctrl-D.

use crate::cli::gen;
use crate::real::real_gguf;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::process::{Command as Std, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Runs a scripted `gen chat` with `stdin`; returns its JSONL turns and stderr.
fn chat(args: &[&str], stdin: &str) -> (Vec<Value>, String) {
    let m = real_gguf();
    let out = gen()
        .args(["chat", "-m", m.to_str().unwrap(), "--format", "jsonl"])
        .args(args)
        .write_stdin(stdin)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let turns = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (turns, err)
}

fn content(v: &Value) -> &str {
    v["content"].as_str().unwrap()
}

fn count(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap()
}

const USERS: [&str; 5] = [
    "Name a fruit.",
    "Why is it healthy?",
    "Give me a recipe with it.",
    "How long does it take?",
    "Thanks! Any other fruit?",
];

/// The top-two log-probability gap (= logit gap) at generated token `i` of a turn record.
fn gap(turn: &Value, i: usize) -> f64 {
    let top = turn["logprobs"][i]["top"].as_array().unwrap();
    top[0]["logprob"].as_f64().unwrap() - top[1]["logprob"].as_f64().unwrap()
}

/// Over 5 greedy turns, each answer equals what a fresh process gives for the same
/// conversation sent whole (nothing cached), up to the first near-tie: a batched prefill and
/// one-token steps round differently (as llama.cpp's do), so where the two answers part, the
/// top two tokens must be within 0.1 in logit. Every turn after the first reuses the cache.
#[test]
fn the_kept_cache_changes_no_answer() {
    let opts = ["--temperature", "0", "-n", "40", "--logprobs", "2"];
    let (turns, _) = chat(&opts, &(USERS.join("\n") + "\n"));
    assert_eq!(turns.len(), USERS.len());
    let mut exact = 0;
    for (k, turn) in turns.iter().enumerate() {
        if k > 0 {
            assert!(count(turn, "reused_tokens") > 30, "turn {}: {turn}", k + 1);
        }
        let mut messages = Vec::new();
        for (u, t) in USERS.iter().zip(&turns).take(k) {
            messages.push(json!({"role": "user", "content": u}));
            messages.push(json!({"role": "assistant", "content": content(t)}));
        }
        messages.push(json!({"role": "user", "content": USERS[k]}));
        let (fresh, _) = chat(&opts, &(json!({ "messages": messages }).to_string() + "\n"));
        let fresh = &fresh[0];
        assert_eq!(count(fresh, "reused_tokens"), 0);
        let kept: Vec<u64> = serde_json::from_value(turn["tokens"].clone()).unwrap();
        let new: Vec<u64> = serde_json::from_value(fresh["tokens"].clone()).unwrap();
        match kept.iter().zip(&new).position(|(a, b)| a != b) {
            None => {
                assert_eq!(kept, new, "turn {}", k + 1);
                exact += 1;
            }
            Some(i) => {
                let g = gap(turn, i).min(gap(fresh, i));
                assert!(
                    g < 0.1,
                    "turn {}: the answers part at token {i} where the top two are {g} apart:\n{}\n{}",
                    k + 1,
                    content(turn),
                    content(fresh)
                );
            }
        }
    }
    assert!(exact >= 3, "only {exact} of 5 turns match exactly");
}

/// Over 10 greedy turns, each turn runs only its new text through the model: what it computes
/// stays a few dozen tokens while the conversation grows to hundreds.
#[test]
fn each_turn_computes_only_its_new_text() {
    let users: Vec<String> = (1..=10).map(|i| format!("Say the number {i}.")).collect();
    let (turns, _) = chat(
        &["--temperature", "0", "-n", "24"],
        &(users.join("\n") + "\n"),
    );
    assert_eq!(turns.len(), 10);
    let last = &turns[9];
    let prompt = count(last, "prompt_tokens");
    let computed = count(last, "computed_tokens");
    assert!(prompt > 150, "{last}");
    // The new user message with its template tokens, and the part of the last answer whose
    // re-tokenization differs from the generated tokens.
    let previous = count(&turns[8], "generated_tokens");
    assert!(
        computed <= 20 + previous,
        "turn 10 computed {computed} of {prompt} tokens: {last}"
    );
    assert_eq!(count(last, "reused_tokens") + computed, prompt);
}

/// With `-c 256`, a long conversation drops its oldest exchanges, says so on stderr, keeps the
/// system prompt and goes on answering.
#[test]
fn a_full_context_drops_old_exchanges_and_keeps_the_system_prompt() {
    let users: Vec<String> = (1..=8)
        .map(|i| format!("Tell me something about the number {i}, in two sentences."))
        .collect();
    let input = users.join("\n") + "\n/show\n";
    let (turns, err) = chat(
        &[
            "-c",
            "256",
            "-n",
            "40",
            "--seed",
            "1",
            "--system",
            "Answer briefly.",
        ],
        &input,
    );
    assert_eq!(turns.len(), 8, "{err}");
    assert!(
        err.contains("dropped the") && err.contains("the system prompt is kept"),
        "{err}"
    );
    assert!(err.contains("system: Answer briefly."), "{err}");
    for t in &turns {
        assert!(
            count(t, "prompt_tokens") + count(t, "generated_tokens") <= 256,
            "{t}"
        );
    }
}

/// `/save` in one process and `/load` in another continue the same conversation: the third
/// answer equals the one a single session gives (same seed), and the settings come back.
#[test]
fn save_then_load_continues_the_conversation() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("talk.json");
    let f = file.to_str().unwrap();
    let opts = ["--seed", "3", "-n", "30"];
    let (whole, _) = chat(
        &opts,
        "/set top-k 20\nName a colour.\nWhy that one?\nAnd a second one?\n",
    );
    let (first, _) = chat(
        &opts,
        &format!("/set top-k 20\nName a colour.\nWhy that one?\n/save {f}\n"),
    );
    assert_eq!(content(&first[1]), content(&whole[1]));
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(saved["messages"].as_array().unwrap().len(), 4, "{saved}");
    // The second process starts with the default top-k: /load brings back 20.
    let (second, err) = chat(&opts, &format!("/load {f}\n/show\nAnd a second one?\n"));
    assert!(
        err.contains("top-k 20") && err.contains("2 exchanges"),
        "{err}"
    );
    assert_eq!(content(&second[0]), content(&whole[2]));
}

/// A message too long for the context, a bad command or setting, a line that is not UTF-8 or
/// not a message: each is one error line for that input, changes nothing, and the script goes
/// on; its exit status counts the failures (as `--each-line`), and a JSONL reader gets a
/// `{"line", "error"}` record in the failed turn's place.
#[test]
fn scripted_errors_are_reported_and_the_session_goes_on() {
    let m = real_gguf();
    let m = m.to_str().unwrap();
    let run = |args: &[&str], stdin: &[u8]| {
        let out = gen()
            .args(["chat", "-m", m, "-n", "8", "--seed", "1"])
            .args(args)
            .write_stdin(stdin.to_vec())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, err) = run(
        &["--format", "jsonl"],
        b"Hello\n/set top-p 2\n/frobnicate\ncaf\xe9\n{\"role\": \"assistant\", \"content\": \"hi\"}\nStill there?\n/show\n",
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 5, "{err}");
    assert!(
        errors[0].contains("/set top-p") && errors[0].contains("(0, 1]"),
        "{err}"
    );
    assert!(errors[1].contains("unknown command /frobnicate"), "{err}");
    assert!(
        errors[2].contains("line 4 of stdin is not valid UTF-8"),
        "{err}"
    );
    assert!(errors[3].contains("\"messages\""), "{err}");
    assert!(errors[4].contains("4 of 7 inputs failed"), "{err}");
    // The refused top-p changed nothing; both messages were answered.
    assert!(err.contains("top-p 0.95"), "{err}");
    let recs: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 6, "{out}");
    assert_eq!((count(&recs[0], "turn"), count(&recs[5], "turn")), (1, 2));
    let failed: Vec<u64> = recs[1..5].iter().map(|r| count(r, "line")).collect();
    assert_eq!(failed, [2, 3, 4, 5]);
    let long = "word ".repeat(400);
    let (code, _, err) = run(&["-c", "128"], format!("{long}\nHi\n").as_bytes());
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("raise -c/--ctx-size") && err.contains("1 of 2 inputs failed"),
        "{err}"
    );
}

/// `gen chat` in a pseudo-terminal, one line at a time as a person types.
struct Pty {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    out: Arc<Mutex<Vec<u8>>>,
}

impl Pty {
    fn spawn(args: &str) -> Self {
        Self::spawn_in(args, None)
    }

    /// `data`: the user's data folder (`XDG_DATA_HOME`) for the history file.
    fn spawn_in(args: &str, data: Option<&std::path::Path>) -> Self {
        let bin = assert_cmd::cargo::cargo_bin("gen");
        let history = if data.is_some() { "" } else { "--no-history" };
        let cmd = format!(
            "stty cols 200 rows 50; exec {} chat -m {} {history} {args}",
            bin.display(),
            real_gguf().display()
        );
        let mut command = Std::new("script");
        if let Some(d) = data {
            command.env("XDG_DATA_HOME", d);
        }
        let mut child = command
            .args(["-qec", &cmd, "/dev/null"])
            .env_remove("GEN_MODEL")
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("util-linux `script` runs gen under a pseudo-terminal");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Self { child, stdin, out }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).to_string()
    }

    /// Waits until the output holds `n` occurrences of `needle`.
    fn wait_for(&self, needle: &str, n: usize) {
        let start = Instant::now();
        while self.text().matches(needle).count() < n {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "waited for {n} × {needle:?}; output so far:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types `keys` (a line ends with `\r`, as Enter sends).
    fn send(&mut self, keys: &str) {
        self.stdin.write_all(keys.as_bytes()).unwrap();
        self.stdin.flush().unwrap();
    }

    /// Types one line after the `n`-th prompt appeared.
    fn line_at(&mut self, prompt: &str, n: usize, line: &str) {
        self.wait_for(prompt, n);
        // Let the line editor settle into reading (keys sent before it reads may be dropped).
        std::thread::sleep(Duration::from_millis(100));
        self.send(&format!("{line}\r"));
    }
}

/// The terminal session: two turns, the commands, a `"""` message, Ctrl-C during an answer
/// (what was printed stays; the next turn goes on), Ctrl-C at an empty prompt (how to leave),
/// and Ctrl-D (exit status 0).
#[test]
fn a_terminal_session_with_commands_and_ctrl_c() {
    let mut t = Pty::spawn("-n 400 --seed 4 -v");
    t.line_at(">>> ", 1, "Hello! Who are you?");
    t.line_at(">>> ", 2, "/set temperature 0.5");
    t.line_at(">>> ", 3, "/set top-p 3");
    t.line_at(">>> ", 4, "\"\"\"Write a very long story");
    t.line_at("... ", 1, "about a dragon and a knight,");
    t.line_at("... ", 2, "in many chapters.\"\"\"");
    // Ctrl-C once the answer is streaming (the echo of the line is ~30 bytes).
    let before = t.text().len();
    let start = Instant::now();
    while t.text().len() < before + 300 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    t.send("\x03");
    t.wait_for("stop: interrupted", 1);
    t.line_at(">>> ", 5, "Thanks.");
    t.wait_for("gen: turn 3 ", 1);
    t.line_at(">>> ", 6, "/show");
    t.wait_for("exchanges", 1);
    t.wait_for(">>> ", 7);
    std::thread::sleep(Duration::from_millis(100));
    t.send("\x03");
    t.wait_for("Ctrl-D or /bye to leave", 2);
    t.wait_for(">>> ", 8);
    std::thread::sleep(Duration::from_millis(100));
    t.send("\x04");
    let status = t.child.wait().unwrap();
    let out = t.text();
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(!out.contains("panicked"), "{out}");
    assert!(out.contains("gen: temperature 0.5"), "{out}");
    assert!(
        out.contains("/set top-p") && out.contains("(0, 1]"),
        "{out}"
    );
    assert!(
        out.contains("temperature 0.5, top-k 40, top-p 0.95"),
        "{out}"
    );
    assert!(out.contains("3 exchanges"), "{out}");
    assert!(
        out.contains("gen: turn 2 ") && out.contains("stop: interrupted"),
        "{out}"
    );
}

/// The line editor's history is kept in the user's data folder between sessions.
#[test]
fn the_terminal_history_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let mut t = Pty::spawn_in("-n 8", Some(tmp.path()));
    t.line_at(">>> ", 1, "/show");
    t.wait_for("exchanges", 1);
    t.wait_for(">>> ", 2);
    std::thread::sleep(Duration::from_millis(100));
    t.send("\x04");
    assert_eq!(t.child.wait().unwrap().code(), Some(0), "{}", t.text());
    let history = std::fs::read_to_string(tmp.path().join("gen/chat_history")).unwrap();
    assert!(history.contains("/show"), "{history}");
}

/// A template that renders earlier answers differently from how they were generated (as
/// templates that drop thinking blocks from history do): the prefix match keeps the cache only
/// up to where the rendering changed, and the next answer is still the one a fresh process
/// gives.
#[test]
fn a_template_that_rewrites_history_is_matched_correctly() {
    use candle_core::quantized::{gguf_file, GgmlDType};
    let tmp = tempfile::tempdir().unwrap();
    let spec = crate::tiny::TinySpec::gqa();
    let path = tmp.path().join("rewrites.gguf");
    let template = "{% for m in messages %}<|im_start|>{{ m.role }}\\n\
        {% if m.role == 'assistant' %}(an earlier answer){% else %}{{ m.content }}{% endif %}\
        <|im_end|>\\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\\n{% endif %}";
    crate::tiny::write_gguf_with(
        &path,
        &spec,
        &crate::tiny::random_weights(&spec),
        GgmlDType::Q8_0,
        |md| {
            md.push((
                "tokenizer.chat_template".into(),
                gguf_file::Value::String(template.into()),
            ))
        },
    );
    let m = path.to_str().unwrap();
    // EOS and end of turn banned, so that every answer is 6 tokens long.
    let opts = [
        "--temperature",
        "0",
        "-n",
        "6",
        "--format",
        "jsonl",
        "--logit-bias",
        "0=-inf",
        "--logit-bias",
        "2=-inf",
    ];
    let run = |stdin: String| {
        let out = gen()
            .args(["chat", "-m", m])
            .args(opts)
            .write_stdin(stdin)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let turns = run("hello there\nand again\n".into());
    assert_eq!(turns.len(), 2);
    let first_prompt = count(&turns[0], "prompt_tokens");
    // The cache held turn 1's prompt and answer; turn 2 keeps only the prompt's part before
    // the rewritten answer.
    let reused = count(&turns[1], "reused_tokens");
    assert_eq!(count(&turns[0], "generated_tokens"), 6);
    assert!(reused < first_prompt + 5, "{}\n{}", turns[0], turns[1]);
    assert!(reused >= first_prompt - 1, "{}\n{}", turns[0], turns[1]);
    let messages = json!({"messages": [
        {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": content(&turns[0])},
        {"role": "user", "content": "and again"},
    ]});
    let fresh = run(format!("{messages}\n"));
    assert_eq!(fresh[0]["tokens"], turns[1]["tokens"]);
}

/// A model without a chat template cannot chat: a usage error naming the model and what to use
/// instead.
#[test]
fn chat_needs_a_chat_template() {
    let tmp = tempfile::tempdir().unwrap();
    let m = crate::cli::tiny_gguf(tmp.path());
    crate::cli::fails_with(
        &["chat", "-m", m.to_str().unwrap()],
        2,
        &["gen chat needs a chat template", "tiny.gguf"],
    );
}

/// `--lookup` in a chat (answers often repeat the conversation): every turn's tokens equal the
/// plain session's, and the kept cache stays right across turns.
#[test]
fn lookup_in_a_chat_changes_no_token() {
    let input = "Copy this twice: the cat sat on the mat.\nNow copy your last answer once more.\nName a fruit.\n";
    let opts = ["--temperature", "0", "-n", "40"];
    let (plain, _) = chat(&opts, input);
    let draft = crate::real::real_gguf();
    let draft = draft.to_str().unwrap();
    for extra in [&["--lookup"][..], &["--model-draft", draft, "--seed", "4"]] {
        let mut with = opts.to_vec();
        with.extend_from_slice(extra);
        let (spec, _) = chat(&with, input);
        assert_eq!(plain.len(), 3);
        for (p, s) in plain.iter().zip(&spec) {
            assert_eq!(p["tokens"], s["tokens"], "{extra:?} turn {}", p["turn"]);
            assert_eq!(p["reused_tokens"], s["reused_tokens"], "turn {}", p["turn"]);
        }
    }
}
