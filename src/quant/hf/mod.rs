//! A Hugging Face Llama folder (`config.json`, safetensors, `tokenizer.json`, ...) as a GGUF
//! file, byte for byte as llama.cpp's `convert_hf_to_gguf.py` writes it (`--outtype f32`,
//! `f16`, `bf16`, `q8_0` or its default `auto`). [`plan`] decides every key and tensor from the
//! folder's JSON and the safetensors headers; [`write`] streams the data.
//!
//! What the converter does and gen copies:
//! - hyperparameters are read as `transformers.LlamaConfig` resolves them, its defaults
//!   included (a context of 2048, an RMS epsilon of 1e-6, RoPE base 10000 when unset);
//! - keys come in the converter's order: architecture, type, sampling defaults
//!   ([`metadata::sampling`]), names ([`metadata::names`]), hyperparameters, file type,
//!   vocabulary ([`vocab`]);
//! - tensors come part by part (shards sorted by name), sorted by name within a part, renamed
//!   to llama.cpp's names, Q and K rows permuted for interleaved RoPE;
//! - 1-d tensors, norms and non-`.weight` tensors are stored as f32; matrices as the out type,
//!   f16 from f32 rounding to nearest even, Q8_0 with ggml's reference quantizer (F16 when a
//!   row is not a whole number of blocks);
//! - data aligned to 32 bytes, each tensor padded with zeros.
//!
//! Refused, each with its own error: other architectures, llama3/yarn/longrope RoPE scaling
//! (the converter adds tensors or keys gen does not write), SentencePiece vocabularies.

pub mod metadata;
pub mod vocab;

use super::codec;
use super::fp::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16};
use super::gguf::{self, Kv, OutTensor, Value};
use super::types::GgmlType;
use crate::model::Family;
use anyhow::{bail, Context, Result};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value as Json;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The alignment convert_hf_to_gguf.py writes (gguf-py's default).
const ALIGNMENT: u64 = 32;
/// `general.quantization_version`.
const QUANTIZATION_VERSION: u32 = 2;

/// The converter's `--outtype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutType {
    F32,
    F16,
    Bf16,
    Q8_0,
    /// The converter's default: BF16 when the first matrix is stored as bf16, else F16.
    Auto,
}

impl OutType {
    fn ggml(self) -> GgmlType {
        match self {
            OutType::F32 => GgmlType::F32,
            OutType::F16 | OutType::Auto => GgmlType::F16,
            OutType::Bf16 => GgmlType::BF16,
            OutType::Q8_0 => GgmlType::Q8_0,
        }
    }

    /// `general.file_type` (llama.cpp's `llama_ftype`).
    fn file_type(self) -> u32 {
        match self {
            OutType::F32 => 0,
            OutType::F16 | OutType::Auto => 1,
            OutType::Q8_0 => 7,
            OutType::Bf16 => 32,
        }
    }
}

/// One output tensor and where its data comes from.
#[derive(Debug, Clone)]
pub struct Planned {
    pub out: OutTensor,
    /// Its Hugging Face name.
    pub source_name: String,
    part: usize,
    dtype: Dtype,
    /// Byte range of its data in the part's map.
    range: (usize, usize),
    /// Rows are permuted over this many heads (Q and K projections).
    permute_heads: Option<usize>,
}

/// Everything the GGUF file will hold.
pub struct Conversion {
    pub kvs: Vec<Kv>,
    pub tensors: Vec<Planned>,
    /// The out type `auto` resolved to.
    pub out_type: OutType,
    /// What the user should know: tensors that fell back to F16, folder files not read.
    pub notes: Vec<String>,
    parts: Vec<(PathBuf, Mmap)>,
}

impl Conversion {
    /// Size of the file to be written.
    pub fn file_size(&self) -> u64 {
        let data: u64 = self
            .tensors
            .iter()
            .map(|t| t.out.bytes().next_multiple_of(ALIGNMENT))
            .sum();
        let outs: Vec<OutTensor> = self.tensors.iter().map(|t| t.out.clone()).collect();
        gguf::header(&self.kvs, &outs, ALIGNMENT).len() as u64 + data
    }
}

/// The Llama hyperparameters, resolved as `LlamaConfig` does.
struct Hparams {
    layers: u64,
    context: u64,
    hidden: u64,
    ffn: u64,
    heads: u64,
    kv_heads: u64,
    rms_eps: f64,
    rope_theta: f64,
    head_dim: u64,
    vocab: u64,
    /// (`linear`, factor) when the RoPE is linearly scaled.
    linear_rope: Option<f64>,
}

/// The architectures convert_hf_to_gguf.py converts as `llama` and gen can read back.
const LLAMA_ARCHS: &[&str] = &["LlamaForCausalLM", "LLaMAForCausalLM", "MistralForCausalLM"];

impl Hparams {
    fn read(c: &Json, path: &Path) -> Result<Self> {
        let arch = c["architectures"].get(0).and_then(Json::as_str);
        if !arch.is_some_and(|a| LLAMA_ARCHS.contains(&a)) {
            bail!(
                "{}: architecture {} is not converted by gen convert (it writes Llama: {})",
                path.display(),
                arch.map_or("(none listed)".into(), |a| format!("`{a}`")),
                LLAMA_ARCHS.join(", ")
            );
        }
        let int = |k: &str, default: u64| -> Result<u64> {
            match c.get(k) {
                None | Some(Json::Null) => Ok(default),
                Some(v) => v
                    .as_u64()
                    .with_context(|| format!("{}: `{k}` is not a whole number", path.display())),
            }
        };
        let float = |v: Option<&Json>, k: &str, default: f64| -> Result<f64> {
            match v {
                None | Some(Json::Null) => Ok(default),
                Some(v) => v
                    .as_f64()
                    .with_context(|| format!("{}: `{k}` is not a number", path.display())),
            }
        };
        let hidden = int("hidden_size", 4096)?;
        let heads = int("num_attention_heads", 32)?;
        if heads == 0 {
            bail!("{}: num_attention_heads is 0", path.display());
        }
        // transformers keeps RoPE settings in `rope_parameters` (v5) or `rope_scaling` (v4).
        let rope = c
            .get("rope_parameters")
            .filter(|v| v.is_object())
            .or_else(|| c.get("rope_scaling").filter(|v| v.is_object()));
        let rope_type = rope
            .and_then(|r| r.get("rope_type").or_else(|| r.get("type")))
            .and_then(Json::as_str);
        let linear_rope = match rope_type {
            None | Some("default") => None,
            Some("linear") => rope.and_then(|r| r.get("factor")).and_then(Json::as_f64),
            Some(other) => bail!(
                "{}: RoPE scaling `{other}` is not converted by gen convert (only linear)",
                path.display()
            ),
        };
        let theta = rope
            .and_then(|r| r.get("rope_theta"))
            .or_else(|| c.get("rope_theta"));
        Ok(Self {
            layers: int("num_hidden_layers", 32)?,
            context: int("max_position_embeddings", 2048)?,
            hidden,
            ffn: int("intermediate_size", 11008)?,
            heads,
            kv_heads: int("num_key_value_heads", heads)?,
            rms_eps: float(c.get("rms_norm_eps"), "rms_norm_eps", 1e-6)?,
            rope_theta: float(theta, "rope_theta", 10000.0)?,
            head_dim: int("head_dim", hidden / heads)?,
            vocab: int("vocab_size", 32000)?,
            linear_rope,
        })
    }
}

/// Plans the conversion of `folder` to `out_type`.
pub fn plan(folder: &Path, out_type: OutType) -> Result<Conversion> {
    let config_path = folder.join("config.json");
    let raw = vocab::read_json(&config_path)?
        .with_context(|| format!("{} has no config.json", folder.display()))?;
    let hp = Hparams::read(&raw, &config_path)?;
    let parts = map_parts(folder)?;
    let mut notes = Vec::new();
    let sources = sources(&parts)?;
    let out_type = match out_type {
        OutType::Auto => {
            let first = sources.iter().find(|s| s.shape.len() >= 2);
            if first.is_some_and(|s| s.dtype == Dtype::BF16) {
                OutType::Bf16
            } else {
                OutType::F16
            }
        }
        t => t,
    };

    let tensors = plan_tensors(sources, &parts, &hp, out_type, &mut notes)?;
    if tensors.is_empty() {
        bail!("{} holds no tensors", folder.display());
    }
    let total: u64 = tensors
        .iter()
        .map(|t| t.out.ne.iter().product::<u64>())
        .sum();

    let mut kvs = header_kvs(folder, &raw, &hp, out_type, total)?;
    let vocab_size = usize::try_from(hp.vocab).context("vocab_size")?;
    kvs.extend(vocab::kvs(folder, vocab_size, &raw)?);
    // The converter's rule for 49152-token vocabularies (Granite, SmolLM): no BOS.
    if hp.vocab == 49152 {
        vocab::set(&mut kvs, "tokenizer.ggml.add_bos_token", Value::bool(false));
    }
    if has_front_matter(&folder.join("README.md")) {
        notes.push(
            "README.md's model card (license, tags, base model...) is not copied into the GGUF; convert_hf_to_gguf.py would add those keys".into(),
        );
    }
    Ok(Conversion {
        kvs,
        tensors,
        out_type,
        notes,
        parts,
    })
}

/// One tensor of a safetensors part, as the header describes it.
struct Source {
    part: usize,
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    /// Byte range of its data in the part's map.
    range: (usize, usize),
}

/// Every part's tensors, in the converter's order: part by part, by name within a part.
fn sources(parts: &[(PathBuf, Mmap)]) -> Result<Vec<Source>> {
    let mut sources = Vec::new();
    for (i, (path, map)) in parts.iter().enumerate() {
        let st = SafeTensors::deserialize(map)
            .with_context(|| format!("{} is not a valid safetensors file", path.display()))?;
        let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
        names.sort();
        for name in names {
            let view = st.tensor(&name)?;
            let start = view.data().as_ptr() as usize - map.as_ptr() as usize;
            sources.push(Source {
                part: i,
                dtype: view.dtype(),
                shape: view.shape().to_vec(),
                range: (start, start + view.data().len()),
                name,
            });
        }
    }
    Ok(sources)
}

/// Each tensor's llama.cpp name, shape and stored type (notes on the F16 fallbacks).
fn plan_tensors(
    sources: Vec<Source>,
    parts: &[(PathBuf, Mmap)],
    hp: &Hparams,
    out_type: OutType,
    notes: &mut Vec<String>,
) -> Result<Vec<Planned>> {
    let mut tensors = Vec::new();
    for Source {
        part,
        name,
        dtype,
        shape,
        range,
    } in sources
    {
        if name.ends_with(".attention.masked_bias")
            || name.ends_with(".attention.bias")
            || name.ends_with(".rotary_emb.inv_freq")
        {
            continue;
        }
        if !matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64) {
            bail!(
                "tensor `{name}` in {} is stored as {dtype:?}; gen convert reads f32, f16, bf16 and f64 weights",
                parts[part].0.display()
            );
        }
        // SmolVLM's text model, as the converter's Llama class renames it.
        let name = name.replace("text_model.", "");
        let gguf_name = gguf_tensor_name(&name).with_context(|| {
            format!(
                "tensor `{name}` in {} has no llama.cpp name for a Llama model",
                parts[part].0.display()
            )
        })?;
        // (Biases have no llama.cpp name in gen's Llama, so only weights get here.)
        let permute_heads = if name.ends_with("q_proj.weight") {
            Some(hp.heads)
        } else if name.ends_with("k_proj.weight") {
            Some(hp.kv_heads)
        } else {
            None
        };
        if let Some(h) = permute_heads {
            let rows = shape.first().copied().unwrap_or(0) as u64;
            if h == 0 || !rows.is_multiple_of(2 * h) {
                bail!("tensor `{name}` has {rows} rows, which do not split into {h} heads");
            }
        }
        if shape.len() > 4 {
            bail!(
                "tensor `{name}` has {} dimensions; GGUF holds at most 4",
                shape.len()
            );
        }
        let mut ne = [1u64; 4];
        for (d, &n) in shape.iter().rev().enumerate() {
            ne[d] = n as u64;
        }
        let mut ty = if shape.len() <= 1
            || gguf_name.ends_with("_norm.weight")
            || !gguf_name.ends_with(".weight")
        {
            GgmlType::F32
        } else {
            out_type.ggml()
        };
        if ty == GgmlType::Q8_0 && ne[0] % ty.block_size() as u64 != 0 {
            notes.push(format!(
                "{gguf_name}: rows of {} do not split into Q8_0 blocks; stored as F16, as llama.cpp does",
                ne[0]
            ));
            ty = GgmlType::F16;
        }
        tensors.push(Planned {
            out: OutTensor {
                name: gguf_name,
                ne,
                ty,
            },
            source_name: name,
            part,
            dtype,
            range,
            permute_heads: permute_heads.map(|h| h as usize),
        });
    }
    Ok(tensors)
}

/// The keys before the vocabulary's: architecture, type, sampling, names, hyperparameters,
/// file type, quantization version.
fn header_kvs(
    folder: &Path,
    raw: &Json,
    hp: &Hparams,
    out_type: OutType,
    total: u64,
) -> Result<Vec<Kv>> {
    let str_kv = |k: &str, v: &str| Kv {
        key: k.into(),
        value: Value::str(v),
    };
    let u32_kv = |k: &str, v: u64| -> Result<Kv> {
        Ok(Kv {
            key: k.into(),
            value: Value::u32(
                u32::try_from(v).with_context(|| format!("{k} = {v} does not fit GGUF's u32"))?,
            ),
        })
    };
    let f32_kv = |k: &str, v: f64| Kv {
        key: k.into(),
        value: Value::f32(v as f32),
    };
    let mut kvs = vec![
        str_kv("general.architecture", "llama"),
        str_kv("general.type", "model"),
    ];
    let gen_config = vocab::read_json(&folder.join("generation_config.json"))
        .ok()
        .flatten()
        .unwrap_or(Json::Null);
    kvs.extend(metadata::sampling(&gen_config));
    let folder_name = std::fs::canonicalize(folder)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    kvs.extend(metadata::names(raw, &folder_name, total));
    kvs.push(u32_kv("llama.block_count", hp.layers)?);
    kvs.push(u32_kv("llama.context_length", hp.context)?);
    kvs.push(u32_kv("llama.embedding_length", hp.hidden)?);
    kvs.push(u32_kv("llama.feed_forward_length", hp.ffn)?);
    kvs.push(u32_kv("llama.attention.head_count", hp.heads)?);
    kvs.push(u32_kv("llama.attention.head_count_kv", hp.kv_heads)?);
    if let Some(f) = hp.linear_rope {
        kvs.push(str_kv("llama.rope.scaling.type", "linear"));
        kvs.push(f32_kv("llama.rope.scaling.factor", f));
    }
    kvs.push(f32_kv("llama.rope.freq_base", hp.rope_theta));
    kvs.push(f32_kv("llama.attention.layer_norm_rms_epsilon", hp.rms_eps));
    kvs.push(u32_kv("llama.attention.key_length", hp.head_dim)?);
    kvs.push(u32_kv("llama.attention.value_length", hp.head_dim)?);
    kvs.push(u32_kv(
        "general.file_type",
        u64::from(out_type.file_type()),
    )?);
    kvs.push(u32_kv("llama.vocab_size", hp.vocab)?);
    kvs.push(u32_kv("llama.rope.dimension_count", hp.head_dim)?);
    kvs.push(u32_kv(
        "general.quantization_version",
        u64::from(QUANTIZATION_VERSION),
    )?);
    Ok(kvs)
}

/// Whether a model card starts with YAML front matter, which the converter reads.
fn has_front_matter(p: &Path) -> bool {
    std::fs::read_to_string(p).is_ok_and(|s| s.lines().next() == Some("---"))
}

/// The safetensors parts as the converter lists them: the index's files, or every
/// `model*.safetensors`, sorted by name; each memory-mapped.
fn map_parts(folder: &Path) -> Result<Vec<(PathBuf, Mmap)>> {
    let index = folder.join("model.safetensors.index.json");
    let mut names: Vec<String> = if index.is_file() {
        let j = vocab::read_json(&index)?.unwrap_or(Json::Null);
        let map = j["weight_map"]
            .as_object()
            .with_context(|| format!("{} has no weight_map", index.display()))?;
        let mut v: Vec<String> = map
            .values()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        v.sort();
        v.dedup();
        v
    } else {
        let mut v = Vec::new();
        for e in
            std::fs::read_dir(folder).with_context(|| format!("listing {}", folder.display()))?
        {
            let n = e?.file_name().to_string_lossy().into_owned();
            if n.starts_with("model") && n.ends_with(".safetensors") {
                v.push(n);
            }
        }
        v
    };
    names.sort();
    if names.is_empty() {
        bail!(
            "{} has no model*.safetensors files (gen convert reads safetensors weights)",
            folder.display()
        );
    }
    let mut out = Vec::new();
    for n in names {
        let p = folder.join(&n);
        let f = File::open(&p).with_context(|| format!("opening {}", p.display()))?;
        // SAFETY: mapped read-only; as every mmap-based reader we rely on the file not being
        // truncated while we read it.
        let m = unsafe { Mmap::map(&f) }.with_context(|| format!("reading {}", p.display()))?;
        out.push((p, m));
    }
    Ok(out)
}

/// llama.cpp's name for a Llama tensor of Hugging Face name `hf`: the GGUF name that
/// [`Family::hf_tensor_name`] (the one mapping, which `gen convert` uses the other way) maps
/// to `hf`.
fn gguf_tensor_name(hf: &str) -> Option<String> {
    const OUTSIDE_LAYERS: [&str; 3] = ["token_embd.weight", "output_norm.weight", "output.weight"];
    const IN_LAYERS: [&str; 9] = [
        "attn_norm.weight",
        "attn_q.weight",
        "attn_k.weight",
        "attn_v.weight",
        "attn_output.weight",
        "ffn_norm.weight",
        "ffn_gate.weight",
        "ffn_up.weight",
        "ffn_down.weight",
    ];
    let candidates: Vec<String> = match hf.strip_prefix("model.layers.") {
        Some(rest) => {
            let layer: usize = rest.split_once('.')?.0.parse().ok()?;
            IN_LAYERS
                .iter()
                .map(|p| format!("blk.{layer}.{p}"))
                .collect()
        }
        None => OUTSIDE_LAYERS.iter().map(|n| n.to_string()).collect(),
    };
    candidates
        .into_iter()
        .find(|g| Family::Llama.hf_tensor_name(g).as_deref() == Some(hf))
}

/// Writes the planned file to `out`, calling `progress` after each tensor.
pub fn write(
    c: &Conversion,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(&Planned) -> Result<()>,
) -> Result<()> {
    let outs: Vec<OutTensor> = c.tensors.iter().map(|t| t.out.clone()).collect();
    out.write_all(&gguf::header(&c.kvs, &outs, ALIGNMENT))?;
    let mut buf = Vec::new();
    for t in &c.tensors {
        let (path, map) = &c.parts[t.part];
        let bytes = map
            .get(t.range.0..t.range.1)
            .with_context(|| format!("internal: `{}` out of {}", t.source_name, path.display()))?;
        encode(t, bytes, &mut buf)
            .with_context(|| format!("converting `{}` from {}", t.source_name, path.display()))?;
        out.write_all(&buf)?;
        let pad = (buf.len() as u64).next_multiple_of(ALIGNMENT) as usize - buf.len();
        out.write_all(&vec![0u8; pad])?;
        progress(t)?;
    }
    out.flush()?;
    Ok(())
}

/// One tensor's output bytes into `buf`.
fn encode(t: &Planned, bytes: &[u8], buf: &mut Vec<u8>) -> Result<()> {
    buf.clear();
    let n: usize = t.out.ne.iter().product::<u64>() as usize;
    // f16 kept as f16: copied as its bits (the converter never widens it).
    if t.dtype == Dtype::F16 && t.out.ty == GgmlType::F16 {
        let halves: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect();
        let halves = permuted(halves, t);
        buf.extend(halves.iter().flat_map(|h| h.to_le_bytes()));
        return Ok(());
    }
    let values: Vec<f32> = match t.dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| bf16_to_f32(u16::from_le_bytes([b[0], b[1]])))
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
        other => bail!("internal: {other:?} planned"),
    };
    if values.len() != n {
        bail!("{} values where its shape holds {n}", values.len());
    }
    let values = permuted(values, t);
    match t.out.ty {
        GgmlType::F32 => buf.extend(values.iter().flat_map(|v| v.to_le_bytes())),
        GgmlType::F16 => buf.extend(values.iter().flat_map(|&v| f32_to_f16(v).to_le_bytes())),
        GgmlType::BF16 => buf.extend(values.iter().flat_map(|&v| f32_to_bf16(v).to_le_bytes())),
        ty => {
            buf.resize(t.out.bytes() as usize, 0);
            codec::quantize(ty, &values, buf)?;
        }
    }
    Ok(())
}

/// The rows of a Q or K projection in llama.cpp's order: within each head, the two halves
/// interleaved (`reshape(heads, 2, half, cols).swapaxes(1, 2)`).
fn permuted<T: Copy>(v: Vec<T>, t: &Planned) -> Vec<T> {
    let Some(heads) = t.permute_heads else {
        return v;
    };
    // The outermost dimension (numpy's first) holds the rows.
    let rows = t.out.ne[gguf::n_dims(&t.out.ne) - 1] as usize;
    let cols = v.len() / rows;
    let per_head = rows / heads;
    let half = per_head / 2;
    let mut out = Vec::with_capacity(v.len());
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let src = h * per_head + j * half + i;
                out.extend_from_slice(&v[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}
