//! `--lookup` / `--model-draft`: the engine's speculation settings from the flags, with the
//! draft model loaded once and checked to share the target's vocabulary.

use super::load::{load_model, LoadedModel};
use super::UsageError;
use crate::config::{DraftConfig, SpeculativeConfig};
use crate::engine::{DraftSource, Speculation, Verify};
use crate::kernels::ggml::Arithmetic;
use anyhow::{Context, Result};
use candle_core::DType;
use std::path::Path;
use std::sync::Arc;

/// The speculation `cfg` asks for on `target`, loading a draft model when there is one (with
/// the KV cache type `--cache-type` and the arithmetic asked for).
pub fn speculation(
    cfg: &SpeculativeConfig,
    target: &LoadedModel,
    cache_type: Option<DType>,
    arith: Arithmetic,
) -> Result<Speculation> {
    let source = match &cfg.draft {
        DraftConfig::Lookup { ngram } => DraftSource::Lookup { ngram: *ngram },
        DraftConfig::Model(spec) => {
            let draft = load_model(Some(spec), cache_type, arith)
                .with_context(|| format!("loading the draft model (--model-draft {spec})"))?;
            check_same_vocabulary(target, &draft)?;
            // Decoding reads every weight once per step: the draft's step costs about its
            // weights' share of the target's.
            let cost = weight_bytes(&draft.path) as f64 / weight_bytes(&target.path).max(1) as f64;
            DraftSource::Model {
                model: Arc::new(draft.model),
                cost,
            }
        }
    };
    Ok(Speculation {
        source,
        max: cfg.draft_max,
        min: cfg.draft_min,
        p_min: cfg.p_min,
        verify: if cfg.rejection {
            Verify::Rejection
        } else {
            Verify::Match
        },
    })
}

/// A draft must give every token id the target's meaning: the same tokenizer vocabulary, and
/// logits over as many tokens. The error names the first token that differs.
fn check_same_vocabulary(target: &LoadedModel, draft: &LoadedModel) -> Result<()> {
    let (t, d) = (&target.tokenizer, &draft.tokenizer);
    let name = |m: &LoadedModel| m.path.display().to_string();
    let fix = "a draft must come from the same model family, with the same tokenizer";
    for id in 0..t.vocab_size().min(d.vocab_size()) as u32 {
        let (a, b) = (t.id_to_token(id), d.id_to_token(id));
        if a != b {
            return Err(UsageError(format!(
                "the draft model {} has another vocabulary than {}: token {id} is {:?} in the model and {:?} in the draft; {fix}",
                name(draft),
                name(target),
                a.unwrap_or_default(),
                b.unwrap_or_default()
            ))
            .into());
        }
    }
    let (tv, dv) = (t.vocab_size(), d.vocab_size());
    let (tr, dr) = (
        target.model.config().vocab_size,
        draft.model.config().vocab_size,
    );
    if tv != dv || tr != dr {
        return Err(UsageError(format!(
            "the draft model {} has {dv} tokens ({dr} logits), {} has {tv} ({tr}); {fix}",
            name(draft),
            name(target)
        ))
        .into());
    }
    Ok(())
}

/// The bytes of a model's weights: the GGUF file, or a folder's safetensors files.
fn weight_bytes(path: &Path) -> u64 {
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    if !path.is_dir() {
        return size(path);
    }
    std::fs::read_dir(path).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .map(|p| size(&p))
            .sum()
    })
}
