//! Tiny random Llamas made at test time, written as a Hugging Face safetensors folder and as
//! GGUF files (any ggml type), so model tests run in milliseconds without the real model.

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use gen::app::convert::permute_rows;
use std::collections::HashMap;
use std::path::Path;

/// The shape of a tiny model.
#[derive(Debug, Clone)]
pub struct TinySpec {
    pub hidden: usize,
    pub ffn: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub vocab: usize,
    pub tied: bool,
    pub llama3_scaling: bool,
    pub max_pos: usize,
    pub seed: u64,
}

impl TinySpec {
    /// Grouped-query attention, untied head.
    pub fn gqa() -> Self {
        Self {
            hidden: 64,
            ffn: 96,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            vocab: 300,
            tied: false,
            llama3_scaling: false,
            max_pos: 256,
            seed: 1,
        }
    }
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }
}

/// Deterministic uniform numbers (splitmix64), so fixtures do not depend on candle's RNG: the
/// top 24 bits `k` as `k / 2^23 - 1`, exact in f32, so Python oracles can make the same values.
pub struct Rng(pub u64);
impl Rng {
    pub fn next_f32(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
    fn tensor(&mut self, shape: &[usize], center: f32, scale: f32) -> Tensor {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| center + scale * self.next_f32()).collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
    }
}

/// Random weights under their Hugging Face names, in Hugging Face (half-split RoPE) layout.
pub fn random_weights(s: &TinySpec) -> HashMap<String, Tensor> {
    let mut rng = Rng(s.seed);
    let hd = s.head_dim();
    // Uniform with variance 1/fan_in keeps activations O(1), as trained models have them.
    let a = |fan_in: usize| (3.0 / fan_in as f32).sqrt();
    let mut w = HashMap::new();
    w.insert(
        "model.embed_tokens.weight".to_string(),
        rng.tensor(&[s.vocab, s.hidden], 0.0, 1.0),
    );
    for i in 0..s.layers {
        let p = |n: &str| format!("model.layers.{i}.{n}.weight");
        w.insert(p("input_layernorm"), rng.tensor(&[s.hidden], 1.0, 0.2));
        w.insert(
            p("post_attention_layernorm"),
            rng.tensor(&[s.hidden], 1.0, 0.2),
        );
        w.insert(
            p("self_attn.q_proj"),
            rng.tensor(&[s.heads * hd, s.hidden], 0.0, 2.0 * a(s.hidden)),
        );
        w.insert(
            p("self_attn.k_proj"),
            rng.tensor(&[s.kv_heads * hd, s.hidden], 0.0, 2.0 * a(s.hidden)),
        );
        w.insert(
            p("self_attn.v_proj"),
            rng.tensor(&[s.kv_heads * hd, s.hidden], 0.0, a(s.hidden)),
        );
        w.insert(
            p("self_attn.o_proj"),
            rng.tensor(&[s.hidden, s.heads * hd], 0.0, a(s.heads * hd)),
        );
        w.insert(
            p("mlp.gate_proj"),
            rng.tensor(&[s.ffn, s.hidden], 0.0, a(s.hidden)),
        );
        w.insert(
            p("mlp.up_proj"),
            rng.tensor(&[s.ffn, s.hidden], 0.0, a(s.hidden)),
        );
        w.insert(
            p("mlp.down_proj"),
            rng.tensor(&[s.hidden, s.ffn], 0.0, a(s.ffn)),
        );
    }
    w.insert(
        "model.norm.weight".to_string(),
        rng.tensor(&[s.hidden], 1.0, 0.2),
    );
    if !s.tied {
        w.insert(
            "lm_head.weight".to_string(),
            rng.tensor(&[s.vocab, s.hidden], 0.0, 4.0 * a(s.hidden)),
        );
    }
    w
}

const SCALING: (f32, f32, f32, usize) = (8.0, 1.0, 4.0, 64); // factor, low, high, original ctx

/// Writes `config.json` and `model.safetensors` (and a byte-level `tokenizer.json`).
pub fn write_safetensors_dir(dir: &Path, s: &TinySpec, w: &HashMap<String, Tensor>) {
    std::fs::create_dir_all(dir).unwrap();
    let mut cfg = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": s.hidden, "intermediate_size": s.ffn, "num_hidden_layers": s.layers,
        "num_attention_heads": s.heads, "num_key_value_heads": s.kv_heads, "vocab_size": s.vocab,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": s.max_pos,
        "tie_word_embeddings": s.tied, "bos_token_id": 1, "eos_token_id": [0, 2],
    });
    if s.llama3_scaling {
        let (factor, low, high, orig) = SCALING;
        cfg["rope_scaling"] = serde_json::json!({"rope_type": "llama3", "factor": factor,
            "low_freq_factor": low, "high_freq_factor": high, "original_max_position_embeddings": orig});
    }
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    candle_core::safetensors::save(w, dir.join("model.safetensors")).unwrap();
    // A tokenizer built through gen's own GGUF path, so the folder loads end to end.
    let gguf = dir.join("tokenizer-source.gguf");
    write_gguf(&gguf, s, w, GgmlDType::F32);
    let mut f = std::fs::File::open(&gguf).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    let tok = gen::tokenizer::Tokenizer::from_gguf(&content).unwrap();
    std::fs::write(dir.join("tokenizer.json"), tok.to_json_string().unwrap()).unwrap();
    std::fs::remove_file(gguf).unwrap();
}

/// GPT-2's byte-to-unicode table: the printable stand-in for each byte.
pub fn byte_chars() -> Vec<char> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut table = vec!['\0'; 256];
    for (b, c) in bs.iter().zip(cs) {
        table[*b as usize] = char::from_u32(c).unwrap();
    }
    table
}

/// Writes the model as a llama GGUF with every matrix stored as `dtype` (norms stay f32) and a
/// byte-level BPE vocabulary (`<|endoftext|>` = 0, `<s>` = 1, `<|im_end|>` = 2, then 256 bytes).
pub fn write_gguf(path: &Path, s: &TinySpec, w: &HashMap<String, Tensor>, dtype: GgmlDType) {
    write_gguf_with(path, s, w, dtype, |_| {});
}

/// As [`write_gguf`], with a chance to edit the metadata first (to make broken files).
pub fn write_gguf_with(
    path: &Path,
    s: &TinySpec,
    w: &HashMap<String, Tensor>,
    dtype: GgmlDType,
    edit: impl Fn(&mut Vec<(String, gguf_file::Value)>),
) {
    use gguf_file::Value as V;
    let hd = s.head_dim();
    let mut tokens: Vec<String> = vec!["<|endoftext|>".into(), "<s>".into(), "<|im_end|>".into()];
    let mut types: Vec<i32> = vec![3, 3, 3];
    for c in byte_chars() {
        tokens.push(c.to_string());
        types.push(1);
    }
    tokens.push("Ġt".into());
    types.push(1);
    while tokens.len() < s.vocab {
        tokens.push(format!("<unused{}>", tokens.len()));
        types.push(5);
    }
    assert_eq!(
        tokens.len(),
        s.vocab,
        "tiny vocab must hold the 260 base tokens"
    );
    let u32v = |x: usize| V::U32(x as u32);
    let strs = |v: &[String]| V::Array(v.iter().map(|t| V::String(t.clone())).collect());
    let mut md: Vec<(String, V)> = vec![
        ("general.architecture".into(), V::String("llama".into())),
        ("llama.embedding_length".into(), u32v(s.hidden)),
        ("llama.feed_forward_length".into(), u32v(s.ffn)),
        ("llama.block_count".into(), u32v(s.layers)),
        ("llama.attention.head_count".into(), u32v(s.heads)),
        ("llama.attention.head_count_kv".into(), u32v(s.kv_heads)),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            V::F32(1e-5),
        ),
        ("llama.rope.freq_base".into(), V::F32(10000.0)),
        ("llama.context_length".into(), u32v(s.max_pos)),
        ("llama.rope.dimension_count".into(), u32v(hd)),
        ("tokenizer.ggml.model".into(), V::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), V::String("smollm".into())),
        ("tokenizer.ggml.tokens".into(), strs(&tokens)),
        (
            "tokenizer.ggml.token_type".into(),
            V::Array(types.iter().map(|&t| V::I32(t)).collect()),
        ),
        ("tokenizer.ggml.merges".into(), strs(&["Ġ t".to_string()])),
        ("tokenizer.ggml.bos_token_id".into(), V::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), V::U32(0)),
        ("tokenizer.ggml.add_bos_token".into(), V::Bool(false)),
    ];
    edit(&mut md);
    let mut q: Vec<(String, QTensor)> = Vec::new();
    let quant = |t: &Tensor, dt: GgmlDType| QTensor::quantize(t, dt).unwrap();
    q.push((
        "token_embd.weight".into(),
        quant(&w["model.embed_tokens.weight"], dtype),
    ));
    for i in 0..s.layers {
        let hf = |n: &str| w[&format!("model.layers.{i}.{n}.weight")].clone();
        let name = |n: &str| format!("blk.{i}.{n}.weight");
        q.push((
            name("attn_norm"),
            quant(&hf("input_layernorm"), GgmlDType::F32),
        ));
        q.push((
            name("ffn_norm"),
            quant(&hf("post_attention_layernorm"), GgmlDType::F32),
        ));
        q.push((
            name("attn_q"),
            quant(
                &permute_rows(&hf("self_attn.q_proj"), s.heads).unwrap(),
                dtype,
            ),
        ));
        q.push((
            name("attn_k"),
            quant(
                &permute_rows(&hf("self_attn.k_proj"), s.kv_heads).unwrap(),
                dtype,
            ),
        ));
        q.push((name("attn_v"), quant(&hf("self_attn.v_proj"), dtype)));
        q.push((name("attn_output"), quant(&hf("self_attn.o_proj"), dtype)));
        q.push((name("ffn_gate"), quant(&hf("mlp.gate_proj"), dtype)));
        q.push((name("ffn_up"), quant(&hf("mlp.up_proj"), dtype)));
        q.push((name("ffn_down"), quant(&hf("mlp.down_proj"), dtype)));
    }
    q.push((
        "output_norm.weight".into(),
        quant(&w["model.norm.weight"], GgmlDType::F32),
    ));
    if !s.tied {
        q.push(("output.weight".into(), quant(&w["lm_head.weight"], dtype)));
    }
    if s.llama3_scaling {
        // llama.cpp's converter stores llama3 scaling as per-frequency divisors.
        let (factor, low, high, orig) = SCALING;
        let (low_wl, high_wl) = (orig as f32 / low, orig as f32 / high);
        let factors: Vec<f32> = (0..hd / 2)
            .map(|i| {
                let freq = 1.0 / 10000f32.powf(2.0 * i as f32 / hd as f32);
                let wl = 2.0 * std::f32::consts::PI / freq;
                if wl < high_wl {
                    1.0
                } else if wl > low_wl {
                    factor
                } else {
                    let smooth = (orig as f32 / wl - low) / (high - low);
                    1.0 / ((1.0 - smooth) / factor + smooth)
                }
            })
            .collect();
        let t = Tensor::from_vec(factors, hd / 2, &Device::Cpu).unwrap();
        q.push(("rope_freqs.weight".into(), quant(&t, GgmlDType::F32)));
    }
    let md_refs: Vec<(&str, &V)> = md.iter_mut().map(|(k, v)| (k.as_str(), &*v)).collect();
    let q_refs: Vec<(&str, &QTensor)> = q.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &md_refs, &q_refs).unwrap();
}

/// Not a test: writes the tiny model folder the fuzz targets start from (`fuzz/seeds/hf_tiny`,
/// committed): `SEED_DIR=fuzz/seeds/hf_tiny cargo test --release --test it
/// write_fuzz_seed_folder -- --ignored`. Eight-wide, one layer, f16: small enough to mutate.
#[test]
#[ignore = "writes the fuzz seed folder; run by hand"]
fn write_fuzz_seed_folder() {
    let s = TinySpec {
        hidden: 8,
        ffn: 16,
        layers: 1,
        heads: 2,
        kv_heads: 1,
        vocab: 260,
        tied: true,
        llama3_scaling: false,
        max_pos: 64,
        seed: 7,
    };
    let w: HashMap<String, Tensor> = random_weights(&s)
        .into_iter()
        .map(|(k, v)| (k, v.to_dtype(candle_core::DType::F16).unwrap()))
        .collect();
    write_safetensors_dir(Path::new(&std::env::var("SEED_DIR").unwrap()), &s, &w);
}
