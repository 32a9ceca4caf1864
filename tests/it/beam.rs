//! Beam search on tiny random models: width 1 is greedy, an exhaustive search confirms the best
//! hypothesis, and bad flags are clear errors.

use crate::cli::{fails_with, gen, gen_json, tiny_gguf};
use crate::model::{full, load_gguf};
use candle_core::quantized::gguf_file;
use gen::config::EarlyStopping;
use gen::engine::{beam_search, BeamParams, DecodeParams, Prefilled, Processors};
use gen::tokenizer::Tokenizer;

fn tokenizer(path: &std::path::Path) -> Tokenizer {
    let mut f = std::fs::File::open(path).unwrap();
    Tokenizer::from_gguf(&gguf_file::Content::read(&mut f).unwrap()).unwrap()
}

fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let z: f64 = row.iter().map(|&l| (l as f64 - max).exp()).sum();
    row.iter().map(|&l| l as f64 - max - z.ln()).collect()
}

#[test]
fn width_one_is_greedy() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_gguf(tmp.path());
    let m = m.to_str().unwrap();
    let run = |extra: &[&str]| {
        let base = [
            "-m",
            m,
            "-p",
            "tt hi",
            "-n",
            "12",
            "--ignore-eos",
            "--format",
            "json",
        ];
        gen_json(&[&base[..], extra].concat())
    };
    let greedy = run(&["--greedy"]);
    let beam = run(&["--beams", "1"]);
    assert_eq!(greedy["tokens"], beam["tokens"]);
    assert_eq!(greedy["text"], beam["text"]);
    // Additive processors (frequency/presence penalties, logit bias) shift log-probs and logits
    // alike, so width 1 still equals the greedy chain with them. (The multiplicative repetition
    // penalty acts on log-probs in beam search, as in transformers, and on logits in the chain.)
    let extra = [
        "--frequency-penalty",
        "2",
        "--presence-penalty",
        "1",
        "--logit-bias",
        "195=-5",
    ];
    let g = run(&[&["--greedy"][..], &extra].concat());
    let b = run(&[&["--beams", "1"][..], &extra].concat());
    assert_eq!(g["tokens"], b["tokens"]);
    assert_ne!(
        g["tokens"], greedy["tokens"],
        "the processors should change this output"
    );
}

/// With only five tokens allowed (the rest banned by logit bias) and 25 beams, every sequence of
/// up to three tokens is within reach; the best hypothesis must be the brute-force optimum of
/// `sum_logprobs / len ^ length_penalty` over sequences that end in EOS or reach length 3.
#[test]
fn exhaustive_search_confirms_the_best_hypothesis() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tiny_gguf(tmp.path());
    let model = load_gguf(&path);
    let tok = tokenizer(&path);
    let vocab = model.config().vocab_size;
    let eos = 0u32;
    let allowed = [eos, 40, 77, 120, 200];
    let bias: Vec<(u32, f32)> = (0..vocab as u32)
        .filter(|t| !allowed.contains(t))
        .map(|t| (t, f32::NEG_INFINITY))
        .collect();
    let prompt = tok.encode("tt hi").unwrap();
    for length_penalty in [1.0f32, 0.5, 2.0] {
        let params = BeamParams {
            num_beams: 25,
            num_return: 3,
            length_penalty,
            early_stopping: EarlyStopping::Never,
            decode: DecodeParams {
                max_tokens: 3,
                eos: vec![eos],
                batch_size: 64,
                ctx_size: Some(256),
                ..DecodeParams::default()
            },
        };
        let processors = Processors {
            logit_bias: bias.clone(),
            ..Processors::default()
        };
        let pre = Prefilled::run(&model, &prompt, 64, 256).unwrap();
        let got = beam_search(
            &model,
            &tok,
            &prompt,
            pre,
            &params,
            &processors,
            &mut |_| Ok(()),
        )
        .unwrap();

        // Brute force: every sequence over `allowed`, EOS only last, length 1..=3.
        let mut best: Vec<(f64, Vec<u32>)> = Vec::new();
        let mut stack: Vec<(Vec<u32>, f64)> = vec![(Vec::new(), 0.0)];
        while let Some((seq, sum)) = stack.pop() {
            let mut ctx = prompt.clone();
            ctx.extend(&seq);
            let lp = log_softmax(full(&model, &ctx).last().unwrap());
            for &t in &allowed {
                let mut s = seq.clone();
                s.push(t);
                let total = sum + lp[t as usize];
                if t == eos || s.len() == 3 {
                    best.push((total / (s.len() as f64).powf(length_penalty as f64), s));
                } else {
                    stack.push((s, total));
                }
            }
        }
        best.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (h, (score, seq)) in got.hypotheses.iter().zip(&best) {
            assert_eq!(&h.tokens, seq, "length penalty {length_penalty}");
            assert!((h.score - score).abs() < 1e-4, "{} vs {score}", h.score);
        }
        assert_eq!(got.hypotheses.len(), 3);
    }
}

#[test]
fn beam_flags_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tiny_gguf(tmp.path());
    let m = m.to_str().unwrap();
    fails_with(&["-m", m, "-p", "x", "--beams", "0"], 2, &["--beams"]);
    fails_with(
        &["-m", m, "-p", "x", "--beams", "2", "--num-return", "3"],
        2,
        &["--num-return 3 is more than --beams 2"],
    );
    fails_with(&["-m", m, "-p", "x", "--num-return", "2"], 2, &["--beams"]);
    for flag in [
        &["--temperature", "0.7"][..],
        &["--top-p", "0.9"],
        &["--top-k", "5"],
        &["--min-p", "0.1"],
        &["--seed", "3"],
        &["--greedy"],
        &["--samplers", "top-k"],
        &["--explain"],
        &["--logprobs", "2"],
    ] {
        let args = [&["-m", m, "-p", "x", "--beams", "2"][..], flag].concat();
        fails_with(&args, 2, &["--beams", flag[0]]);
    }
    fails_with(
        &[
            "-m",
            m,
            "-p",
            "x",
            "--beams",
            "2",
            "--early-stopping",
            "maybe",
        ],
        2,
        &["--early-stopping"],
    );
    // --num-return in text mode: numbered blocks, best first.
    let out = gen()
        .args([
            "-m",
            m,
            "-p",
            "hello",
            "-n",
            "6",
            "--beams",
            "3",
            "--num-return",
            "3",
            "-q",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("[1] score ") && text.contains("\n[3] score "),
        "{text}"
    );
}
