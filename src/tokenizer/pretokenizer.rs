//! Maps a GGUF `tokenizer.ggml.pre` name to the pre-tokenizer llama.cpp uses for it.
//!
//! llama.cpp (`src/llama-vocab.cpp`, `llm_tokenizer_bpe`) splits text with a list of regexes
//! applied one after the other: each regex splits every piece left by the previous one, and
//! both the matches and the text between them are kept. That is exactly a Hugging Face
//! `Sequence` of `Split(Regex, Isolated)` steps, so every supported family is expressed that way
//! (followed by the GPT-2 byte-to-unicode mapping), which also makes the result serialisable as
//! a plain `tokenizer.json`.
//!
//! Only names whose llama.cpp behaviour we can reproduce are accepted; anything else is an
//! error, never a silent fallback to GPT-2.

use anyhow::{anyhow, Result};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::SplitDelimiterBehavior;

/// The GPT-2 regex (llama.cpp's `LLAMA_VOCAB_PRE_TYPE_GPT2`), with the trailing `\s+` that
/// llama.cpp's hand-written matcher also applies.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// The Llama 3 regex as adapted by llama.cpp (case-insensitive contractions spelled out).
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The Qwen2 regex as adapted by llama.cpp: like Llama 3 but one digit per piece.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Which list of regexes a pre-tokenizer name stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Family {
    /// `LLAMA_VOCAB_PRE_TYPE_DEFAULT`: punctuation runs, GPT-2, `\p{N}+`, then groups of 3 ASCII digits.
    Default,
    /// The GPT-2 regex alone.
    Gpt2,
    /// Every `\p{N}` split off on its own, then the GPT-2 regex (starcoder, smollm, ...).
    DigitsThenGpt2,
    /// The Llama 3 regex.
    Llama3,
    /// The Qwen2 regex.
    Qwen2,
}

/// What a `tokenizer.ggml.pre` name implies for tokenization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PreSpec {
    /// The regex family.
    pub family: Family,
    /// llama.cpp's `ignore_merges`: a pre-token that is already a vocabulary entry is used whole.
    pub ignore_merges: bool,
    /// llama.cpp's default for `add_bos` (the GGUF key `tokenizer.ggml.add_bos_token` overrides it).
    pub add_bos: bool,
}

const fn spec(family: Family, ignore_merges: bool, add_bos: bool) -> PreSpec {
    PreSpec {
        family,
        ignore_merges,
        add_bos,
    }
}

/// Every accepted name, with the llama.cpp behaviour it maps to. Names llama.cpp groups together
/// are listed together. `gpt2` is not a llama.cpp name (it spells it `gpt-2`) but is accepted as
/// an alias.
const TABLE: &[(&str, PreSpec)] = &[
    ("default", spec(Family::Default, false, false)),
    // LLAMA_VOCAB_PRE_TYPE_GPT2 (and the types llama.cpp gives the same regex).
    ("gpt-2", spec(Family::Gpt2, false, false)),
    ("gpt2", spec(Family::Gpt2, false, false)),
    ("phi-2", spec(Family::Gpt2, false, false)),
    ("jina-es", spec(Family::Gpt2, false, false)),
    ("jina-de", spec(Family::Gpt2, false, false)),
    ("gigachat", spec(Family::Gpt2, false, false)),
    ("jina-v2-es", spec(Family::Gpt2, false, false)),
    ("jina-v2-de", spec(Family::Gpt2, false, false)),
    ("a.x-4.0", spec(Family::Gpt2, false, false)),
    ("mellum", spec(Family::Gpt2, false, false)),
    ("modern-bert", spec(Family::Gpt2, false, false)),
    ("exaone4", spec(Family::Gpt2, false, false)),
    ("mpt", spec(Family::Gpt2, false, false)),
    ("olmo", spec(Family::Gpt2, false, false)),
    ("jais", spec(Family::Gpt2, false, false)),
    ("trillion", spec(Family::Gpt2, false, false)),
    ("granite-docling", spec(Family::Gpt2, false, false)),
    // LLAMA_VOCAB_PRE_TYPE_STARCODER / REFACT / COMMAND_R / SMOLLM / CODESHELL / EXAONE / MINERVA / MELLUM2.
    ("starcoder", spec(Family::DigitsThenGpt2, false, false)),
    ("refact", spec(Family::DigitsThenGpt2, false, false)),
    ("command-r", spec(Family::DigitsThenGpt2, false, false)),
    ("smollm", spec(Family::DigitsThenGpt2, false, false)),
    ("codeshell", spec(Family::DigitsThenGpt2, false, false)),
    ("exaone", spec(Family::DigitsThenGpt2, false, false)),
    ("minerva-7b", spec(Family::DigitsThenGpt2, false, false)),
    ("mellum2", spec(Family::DigitsThenGpt2, false, false)),
    // LLAMA_VOCAB_PRE_TYPE_LLAMA3: ignore_merges and add_bos by default.
    ("llama3", spec(Family::Llama3, true, true)),
    ("llama-v3", spec(Family::Llama3, true, true)),
    ("llama-bpe", spec(Family::Llama3, true, true)),
    ("falcon3", spec(Family::Llama3, true, true)),
    ("falcon-h1", spec(Family::Llama3, true, true)),
    ("pixtral", spec(Family::Llama3, true, true)),
    ("midm-2.0", spec(Family::Llama3, true, true)),
    ("lfm2", spec(Family::Llama3, true, true)),
    ("jina-v5-nano", spec(Family::Llama3, true, true)),
    // LLAMA_VOCAB_PRE_TYPE_DBRX / SMAUG: the Llama 3 regex without its other settings.
    ("dbrx", spec(Family::Llama3, false, false)),
    ("smaug-bpe", spec(Family::Llama3, false, false)),
    // LLAMA_VOCAB_PRE_TYPE_QWEN2 / STABLELM2 / HUNYUAN / SOLAR_OPEN.
    ("qwen2", spec(Family::Qwen2, false, false)),
    ("deepseek-r1-qwen", spec(Family::Qwen2, false, false)),
    ("kormo", spec(Family::Qwen2, false, false)),
    ("f2llmv2", spec(Family::Qwen2, false, false)),
    ("megrez", spec(Family::Qwen2, false, false)),
    ("stablelm2", spec(Family::Qwen2, false, false)),
    ("hunyuan", spec(Family::Qwen2, false, false)),
    ("solar-open", spec(Family::Qwen2, false, false)),
];

/// The `tokenizer.ggml.pre` values this module accepts, in a stable order.
pub fn supported_pre_tokenizers() -> Vec<&'static str> {
    TABLE.iter().map(|(name, _)| *name).collect()
}

/// Looks up a `tokenizer.ggml.pre` value; `None` when it is not supported.
pub(super) fn lookup(pre: &str) -> Option<PreSpec> {
    TABLE.iter().find(|(name, _)| *name == pre).map(|(_, s)| *s)
}

/// The regexes llama.cpp applies, in order, for a family.
fn regexes(family: Family) -> &'static [&'static str] {
    match family {
        Family::Default => &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
        Family::Gpt2 => &[GPT2],
        Family::DigitsThenGpt2 => &[r"\p{N}", GPT2],
        Family::Llama3 => &[LLAMA3],
        Family::Qwen2 => &[QWEN2],
    }
}

/// The character GPT-2's byte-level encoding uses for each byte value.
pub(super) fn byte_chars() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut next = 256u32;
    for (b, slot) in out.iter_mut().enumerate() {
        let b = b as u32;
        let printable =
            (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
        let code = if printable {
            b
        } else {
            next += 1;
            next - 1
        };
        *slot = char::from_u32(code).unwrap_or('\0');
    }
    out
}

fn isolating_split(re: &str) -> Result<PreTokenizerWrapper> {
    let split = Split::new(
        SplitPattern::Regex(re.to_string()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(|e| anyhow!("internal: compiling the pre-tokenizer regex `{re}`: {e}"))?;
    Ok(split.into())
}

/// Builds the Hugging Face pre-tokenizer for a family: one isolating `Split` per regex, then the
/// GPT-2 byte-to-unicode mapping (with its own regex off, since the splits already happened).
///
/// `missing` lists the byte-level characters that are not in the vocabulary (SmolLM2's lacks
/// bytes such as 0x04 or 0xF1). llama.cpp keeps such a character as a symbol that no merge can
/// touch and then drops it, so it separates what is on either side; Hugging Face's BPE drops it
/// first and may merge its neighbours. Isolating those characters in a last `Split` makes the
/// two agree.
pub(super) fn build(family: Family, missing: &[char]) -> Result<PreTokenizerWrapper> {
    let mut steps: Vec<PreTokenizerWrapper> = Vec::new();
    for re in regexes(family) {
        steps.push(isolating_split(re)?);
    }
    steps.push(ByteLevel::new(false, true, false).into());
    if !missing.is_empty() {
        let class: String = missing
            .iter()
            .map(|c| format!("\\x{{{:X}}}", u32::from(*c)))
            .collect();
        steps.push(isolating_split(&format!("[{class}]"))?);
    }
    Ok(Sequence::new(steps).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

    fn pieces(family: Family, text: &str) -> Vec<String> {
        let pt = build(family, &[]).unwrap();
        let mut s = PreTokenizedString::from(text);
        pt.pre_tokenize(&mut s).unwrap();
        s.get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(_, offsets, _)| text[offsets.0..offsets.1].to_string())
            .collect()
    }

    #[test]
    fn digits_are_split_one_by_one_before_gpt2() {
        assert_eq!(
            pieces(Family::DigitsThenGpt2, "abc 123"),
            ["abc", " ", "1", "2", "3"]
        );
        assert_eq!(pieces(Family::Gpt2, "abc 123"), ["abc", " 123"]);
    }

    #[test]
    fn llama3_groups_three_digits_and_keeps_lookahead() {
        assert_eq!(pieces(Family::Llama3, "12345  x"), ["123", "45", " ", " x"]);
        assert_eq!(pieces(Family::Qwen2, "12 I'M"), ["1", "2", " I", "'M"]);
    }

    #[test]
    fn default_splits_punctuation_then_digit_groups() {
        assert_eq!(
            pieces(Family::Default, "a,b 12345"),
            ["a", ",", "b", " ", "123", "45"]
        );
    }

    #[test]
    fn byte_chars_are_gpt2s() {
        let c = byte_chars();
        assert_eq!(
            (
                c[b' ' as usize],
                c[b'\n' as usize],
                c[b'a' as usize],
                c[0xf1]
            ),
            ('Ġ', 'Ċ', 'a', 'ñ')
        );
        let mut sorted = c.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 256);
    }

    #[test]
    fn every_table_entry_builds_and_names_are_unique() {
        let names = supported_pre_tokenizers();
        for (i, n) in names.iter().enumerate() {
            assert!(!names[..i].contains(n), "duplicate {n}");
            build(lookup(n).unwrap().family, &['\u{F1}']).unwrap();
        }
        assert!(lookup("not-a-pre").is_none());
    }
}
