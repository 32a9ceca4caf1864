//! Stop strings through the binary: a stop spanning two tokens cuts the text there (or keeps it
//! with --keep-stop), one that never matches changes nothing, and text held back because it
//! could start a match is released at the end. For sampling and beam search alike.

use crate::cli::{gen, gen_json, tiny_gguf};
use candle_core::quantized::gguf_file;
use serde_json::Value;

fn run(m: &str, extra: &[&str]) -> Value {
    let base = [
        "-m",
        m,
        "-p",
        "hello",
        "-n",
        "16",
        "--ignore-eos",
        "--format",
        "json",
    ];
    gen_json(&[&base[..], extra].concat())
}

#[test]
fn stop_strings_cut_hold_back_and_release() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tiny_gguf(tmp.path());
    let m = path.to_str().unwrap();
    let tok = {
        let mut f = std::fs::File::open(&path).unwrap();
        gen::tokenizer::Tokenizer::from_gguf(&gguf_file::Content::read(&mut f).unwrap()).unwrap()
    };
    for strategy in [&["--greedy"][..], &["--beams", "2"]] {
        let plain = run(m, strategy);
        let text = plain["text"].as_str().unwrap().to_string();
        let ids: Vec<u32> = plain["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap() as u32)
            .collect();
        // A stop string made of the last character of one token and the first of the next.
        // (As the text shows them: control tokens are not part of it.)
        let pieces: Vec<String> = ids
            .iter()
            .map(|&i| tok.decode_text(&[i], false).unwrap())
            .collect();
        let clean = |p: &String| !p.is_empty() && !p.contains('\u{FFFD}');
        let i = (4..pieces.len() - 1)
            .find(|&i| clean(&pieces[i]) && clean(&pieces[i + 1]))
            .expect("two clean neighbouring pieces");
        let stop = format!(
            "{}{}",
            pieces[i].chars().last().unwrap(),
            pieces[i + 1].chars().next().unwrap()
        );
        let at = text.find(&stop).unwrap();
        let v = run(m, &[strategy, &["--stop", &stop]].concat());
        assert_eq!(
            v["text"].as_str().unwrap(),
            &text[..at],
            "{strategy:?} stop {stop:?}"
        );
        assert_eq!(v["stop"]["reason"], "stop");
        assert_eq!(v["stop"]["string"], stop.as_str());
        let kept = run(m, &[strategy, &["--stop", &stop, "--keep-stop"]].concat());
        assert_eq!(kept["text"].as_str().unwrap(), &text[..at + stop.len()]);
        // Text mode prints exactly the cut text.
        let out = gen()
            .args([
                "-m",
                m,
                "-p",
                "hello",
                "-n",
                "16",
                "--ignore-eos",
                "-q",
                "--stop",
                &stop,
            ])
            .args(strategy)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), &text[..at]);

        // Never matches: nothing changes.
        let v = run(m, &[strategy, &["--stop", "\u{1F600}never"]].concat());
        assert_eq!(v["text"], plain["text"]);
        assert_eq!(v["stop"]["reason"], "max_tokens");
        // The text ends with the start of a stop string: held back while streaming, released at
        // the end, in text mode too.
        let tail: String = text
            .chars()
            .rev()
            .take(2)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let partial = format!("{tail}\u{1F600}");
        let out = gen()
            .args([
                "-m",
                m,
                "-p",
                "hello",
                "-n",
                "16",
                "--ignore-eos",
                "-q",
                "--stop",
                &partial,
            ])
            .args(strategy)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), text, "{strategy:?}");
    }
}
