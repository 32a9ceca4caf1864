//! `gen tokenize`: the token ids of a text and each id's piece.

use super::load::load_model;
use crate::config::TokenizeConfig;
use crate::output;
use anyhow::Result;

/// Tokenizes `t.text` with the model's tokenizer and prints ids and pieces.
pub fn run(t: &TokenizeConfig) -> Result<()> {
    let loaded = load_model(t.model.as_deref(), None)?;
    let ids = loaded.tokenizer.encode(&t.text)?;
    // Each id decoded on its own, as llama.cpp's llama-tokenize shows pieces; a piece that is
    // part of a multi-byte character shows as U+FFFD.
    let pieces: Vec<String> = ids
        .iter()
        .map(|&id| loaded.tokenizer.decode(&[id]))
        .collect::<Result<_>>()?;
    output::tokens(&ids, &pieces, t.json)
}
