//! `gen convert`: a GGUF file to a Hugging Face-layout folder (`model.safetensors`,
//! `config.json`, `tokenizer.json`, `tokenizer_config.json`, `generation_config.json`), or,
//! given a folder, the other way ([`super::to_gguf`]).
//! GGUF stores Llama's Q and K projection rows permuted for interleaved RoPE; they are permuted
//! back to Hugging Face's half-split layout here. Gemma's GGUF norms hold `1 + w`, its
//! safetensors `w`. The other families' rows are stored as Hugging Face has them.

use super::load::{open_gguf, GgufParts};
use super::UsageError;
use crate::config::{ConvertConfig, ConvertDtype};
use crate::model::config::to_hf_config_json;
use crate::output;
use crate::quant::hf::OutType;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// `gen convert`: refuses to write into a folder that already holds files unless `--force`,
/// converts with a progress bar on a terminal, and says what it wrote.
pub fn run(c: &ConvertConfig) -> Result<()> {
    if c.input.is_dir() {
        return run_to_gguf(c);
    }
    let dtype = match c.dtype {
        None | Some(ConvertDtype::F32) => DType::F32,
        Some(ConvertDtype::F16) => DType::F16,
        Some(ConvertDtype::Bf16) => DType::BF16,
        Some(d @ (ConvertDtype::Q8_0 | ConvertDtype::Auto)) => {
            return Err(UsageError(format!(
                "--dtype {} is for converting a folder into GGUF; a GGUF file converts into f32, f16 or bf16 safetensors (gen quantize writes quantized GGUF)",
                if d == ConvertDtype::Q8_0 { "q8_0" } else { "auto" }
            ))
            .into())
        }
    };
    if !c.force && c.output.exists() {
        let has_files = std::fs::read_dir(&c.output)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true);
        if has_files {
            return Err(UsageError(format!(
                "{} already exists and is not an empty folder; choose another folder, or pass --force to overwrite the files gen convert writes",
                c.output.display()
            ))
            .into());
        }
    }
    let n = convert(&c.input, &c.output, dtype)?;
    output::note(&format!(
        "gen: wrote {} ({n} tensors as {dtype:?}, config, tokenizer)",
        c.output.display(),
    ))
}

/// `gen convert FOLDER OUT.gguf`.
fn run_to_gguf(c: &ConvertConfig) -> Result<()> {
    if c.output.is_dir() {
        return Err(UsageError(format!(
            "{} is a folder; converting a folder writes one GGUF file: name it, e.g. {}",
            c.output.display(),
            c.output.join("model.gguf").display()
        ))
        .into());
    }
    if !c.force && c.output.exists() {
        return Err(UsageError(format!(
            "{} already exists; choose another file, or pass --force to replace it",
            c.output.display()
        ))
        .into());
    }
    let out_type = match c.dtype.unwrap_or(ConvertDtype::Auto) {
        ConvertDtype::F32 => OutType::F32,
        ConvertDtype::F16 => OutType::F16,
        ConvertDtype::Bf16 => OutType::Bf16,
        ConvertDtype::Q8_0 => OutType::Q8_0,
        ConvertDtype::Auto => OutType::Auto,
    };
    let start = std::time::Instant::now();
    let (n, bytes, resolved) = super::to_gguf::convert(&c.input, &c.output, out_type)?;
    output::note(&format!(
        "gen: wrote {} ({n} tensors, {resolved:?}; {:.2} MiB) in {:.2} s",
        c.output.display(),
        bytes as f64 / (1024.0 * 1024.0),
        start.elapsed().as_secs_f64()
    ))
}

/// Converts `input` (GGUF) into a Hugging Face folder at `output`, weights stored as `dtype`;
/// returns the number of tensors written.
pub fn convert(input: &Path, output: &Path, dtype: DType) -> Result<usize> {
    let device = Device::Cpu;
    let GgufParts {
        mut weights,
        cfg,
        tokenizer,
    } = open_gguf(input)?;
    // Before any weights are written: a SentencePiece vocabulary cannot become a faithful
    // tokenizer.json, and that should not cost the user a finished conversion.
    let tokenizer_json = tokenizer
        .to_json_string()
        .with_context(|| format!("converting the tokenizer of {}", input.display()))?;
    let content = weights
        .gguf_content()
        .context("internal: GGUF source without metadata")?;
    if content.tensor_infos.contains_key("rope_freqs.weight") {
        bail!(
            "{} carries `rope_freqs.weight` (llama3 RoPE scaling baked into the file); converting it to config.json's rope_scaling is not supported",
            input.display()
        );
    }
    let mut names: Vec<(String, Vec<usize>)> = content
        .tensor_infos
        .iter()
        .map(|(n, i)| (n.clone(), i.shape.dims().to_vec()))
        .collect();
    names.sort();
    std::fs::create_dir_all(output).with_context(|| format!("creating {}", output.display()))?;

    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let bar = output::StepBar::new("convert", names.len());
    for (gguf_name, shape) in names {
        bar.step("tensors".into());
        let hf_name = cfg.family.hf_tensor_name(&gguf_name).with_context(|| {
            format!(
                "tensor `{gguf_name}` in {} has no Hugging Face counterpart",
                input.display()
            )
        })?;
        let name = crate::weights::TensorName::new(hf_name.clone(), gguf_name.clone());
        let mut t = weights.dense(&name, &shape, &device)?;
        let interleaved = cfg.family.gguf_rope_interleaved();
        if interleaved && gguf_name.ends_with("attn_q.weight") {
            t = unpermute_rows(&t, cfg.num_attention_heads)?;
        } else if interleaved && gguf_name.ends_with("attn_k.weight") {
            t = unpermute_rows(&t, cfg.num_key_value_heads)?;
        } else if cfg.family.hf_norm_adds_one() && gguf_name.ends_with("norm.weight") {
            t = (t - 1.0)?;
        }
        tensors.insert(hf_name, t.to_dtype(dtype)?);
    }
    bar.finish();
    let st_path = output.join("model.safetensors");
    candle_core::safetensors::save(&tensors, &st_path)
        .with_context(|| format!("writing {}", st_path.display()))?;

    let mut config = to_hf_config_json(&cfg);
    config["torch_dtype"] = match dtype {
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
        _ => "float32",
    }
    .into();
    write_json(&output.join("config.json"), &config)?;
    let mut gen_cfg = serde_json::json!({});
    if let Some(id) = cfg.bos_token_id {
        gen_cfg["bos_token_id"] = id.into();
    }
    if let Some(&id) = cfg.eos_token_ids.first() {
        gen_cfg["eos_token_id"] = id.into();
    }
    write_json(&output.join("generation_config.json"), &gen_cfg)?;
    let tok_path = output.join("tokenizer.json");
    std::fs::write(&tok_path, tokenizer_json)
        .with_context(|| format!("writing {}", tok_path.display()))?;
    let mut tok_cfg: serde_json::Value = serde_json::from_str(&tokenizer.to_config_json_string()?)?;
    tok_cfg["model_max_length"] = cfg.max_position_embeddings.into();
    write_json(&output.join("tokenizer_config.json"), &tok_cfg)?;
    // The safetensors writer goes through a private temporary file (mode 0600); the weights
    // get the mode every other file got from the umask.
    let mode = std::fs::metadata(&tok_path)
        .with_context(|| format!("reading {}", tok_path.display()))?
        .permissions();
    std::fs::set_permissions(&st_path, mode)
        .with_context(|| format!("setting the permissions of {}", st_path.display()))?;
    Ok(tensors.len())
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// Undoes llama.cpp's `permute` of Q/K rows: within each head, GGUF interleaves the two halves
/// `(head, half_dim, 2)`; Hugging Face keeps them split `(head, 2, half_dim)`.
pub fn unpermute_rows(w: &Tensor, n_heads: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    if n_heads == 0 || rows % (2 * n_heads) != 0 {
        bail!("cannot un-permute a ({rows}, {cols}) projection over {n_heads} heads");
    }
    let half = rows / n_heads / 2;
    Ok(w.reshape((n_heads, half, 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))?)
}

/// The inverse of [`unpermute_rows`]: Hugging Face layout to GGUF layout.
pub fn permute_rows(w: &Tensor, n_heads: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    if n_heads == 0 || rows % (2 * n_heads) != 0 {
        bail!("cannot permute a ({rows}, {cols}) projection over {n_heads} heads");
    }
    let half = rows / n_heads / 2;
    Ok(w.reshape((n_heads, 2, half, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))?)
}
