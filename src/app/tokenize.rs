//! `gen tokenize`: the token ids of a text and each id's piece. Only the tokenizer is loaded,
//! never the weights.

use super::input::read_text;
use super::load::load_tokenizer;
use crate::config::TokenizeConfig;
use crate::output;
use anyhow::Result;

/// Tokenizes the text (argument, `--file` or stdin) with the model's tokenizer and prints ids
/// and pieces.
pub fn run(t: &TokenizeConfig) -> Result<()> {
    let text = read_text(
        &t.text,
        "no text to tokenize: pass it as an argument, with --file, or on stdin",
    )?;
    let tokenizer = load_tokenizer(t.model.as_deref())?;
    if t.verbose {
        output::note(&format!("gen: tokenizer: {}", tokenizer.summary()))?;
    }
    let ids = tokenizer.encode(&text)?;
    // Each id decoded on its own, as llama.cpp's llama-tokenize shows pieces; a piece that is
    // part of a multi-byte character shows as U+FFFD.
    let pieces: Vec<String> = ids
        .iter()
        .map(|&id| tokenizer.decode(&[id]))
        .collect::<Result<_>>()?;
    output::tokens(&ids, &pieces, t.json)
}
