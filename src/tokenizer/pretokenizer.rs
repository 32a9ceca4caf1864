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

/// The Qwen 3.5 regex as adapted by llama.cpp: like Qwen2 with combining marks (`\p{M}`) kept
/// with the letters they follow.
const QWEN35: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// DeepSeek LLM's letter class, llama.cpp's spelled-out ranges (Latin, Greek, Cyrillic,
/// Armenian, Georgian, Cherokee, ... and their fullwidth and supplementary forms), written as
/// escapes because several of its characters (U+1FD3, U+2126, U+212A, ...) are changed by
/// Unicode normalization, which an editor may apply to literal text.
const DEEPSEEK_LLM_LETTERS: &str = concat!(
    "\\s?[A-Za-z\u{B5}\u{C0}-\u{D6}\u{D8}-\u{F6}\u{F8}-\u{1BA}\u{1BC}-\u{1BF}\u{1C4}-\u{293}",
    "\u{295}-\u{2AF}\u{370}-\u{373}\u{376}\u{377}\u{37B}-\u{37D}\u{37F}\u{386}\u{388}-\u{38A}",
    "\u{38C}\u{38E}-\u{3A1}\u{3A3}-\u{3F5}\u{3F7}-\u{481}\u{48A}-\u{52F}\u{531}-\u{556}",
    "\u{10A0}-\u{10C5}\u{13A0}-\u{13F5}\u{13F8}-\u{13FD}\u{1C90}-\u{1CBA}\u{1CBD}-\u{1CBF}",
    "\u{1D00}-\u{1D2B}\u{1D6B}-\u{1D77}\u{1D79}-\u{1D9A}\u{1E00}-\u{1F15}\u{1F18}-\u{1F1D}",
    "\u{1F20}-\u{1F45}\u{1F48}-\u{1F4D}\u{1F50}-\u{1F57}\u{1F59}\u{1F5B}\u{1F5D}\u{1F5F}-\u{1F7D}",
    "\u{1F80}-\u{1FB4}\u{1FB6}-\u{1FBC}\u{1FBE}\u{1FC2}-\u{1FC4}\u{1FC6}-\u{1FCC}\u{1FD0}-\u{1FD3}",
    "\u{1FD6}-\u{1FDB}\u{1FE0}-\u{1FEC}\u{1FF2}-\u{1FF4}\u{1FF6}-\u{1FFC}\u{2102}\u{2107}",
    "\u{210A}-\u{2113}\u{2115}\u{2119}-\u{211D}\u{2124}\u{2126}\u{2128}\u{212A}-\u{212D}",
    "\u{212F}-\u{2134}\u{2139}\u{213C}-\u{213F}\u{2145}-\u{2149}\u{214E}\u{2183}\u{2184}",
    "\u{2C00}-\u{2C7B}\u{2C7E}-\u{2CE4}\u{2CEB}-\u{2CEE}\u{2CF2}\u{2CF3}\u{A640}-\u{A66D}",
    "\u{A680}-\u{A69B}\u{A722}-\u{A76F}\u{A771}-\u{A787}\u{A78B}-\u{A78E}\u{AB70}-\u{ABBF}",
    "\u{FB00}-\u{FB06}\u{FB13}-\u{FB17}\u{FF21}-\u{FF3A}\u{FF41}-\u{FF5A}\u{10400}-\u{1044F}",
    "\u{104B0}-\u{104D3}\u{104D8}-\u{104FB}\u{10C80}-\u{10CB2}\u{10CC0}-\u{10CF2}\u{118A0}-\u{118DF}",
    "\u{1E900}-\u{1E943}]+",
);

/// CJK ideographs and Hangul as DeepSeek's pre-tokenizers group them.
const DEEPSEEK_CJK: &str = "[\u{4E00}-\u{9FA5}\u{800}-\u{4E00}\u{AC00}-\u{D7FF}]+";

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
    /// The Qwen 3.5 regex.
    Qwen35,
    /// Punctuation runs, GPT-2, then groups of 3 ASCII digits (`LLAMA_VOCAB_PRE_TYPE_FALCON`).
    Falcon,
    /// Newlines, letter runs, punctuation runs, trailing space, CJK, digit runs.
    DeepseekLlm,
    /// Newlines, letter runs, punctuation runs, CJK, single digits.
    DeepseekCoder,
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
    ("qwen35", spec(Family::Qwen35, false, false)),
    ("falcon", spec(Family::Falcon, false, false)),
    ("deepseek-llm", spec(Family::DeepseekLlm, false, false)),
    ("deepseek-coder", spec(Family::DeepseekCoder, false, false)),
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
        Family::Qwen35 => &[QWEN35],
        Family::Falcon => &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"],
        Family::DeepseekLlm => &[
            r"[\r\n]",
            DEEPSEEK_LLM_LETTERS,
            "\\s?[!-/:-~\u{FF01}-\u{FF0F}\u{FF1A}-\u{FF5E}\u{2018}-\u{201F}\u{3000}-\u{3002}]+",
            // `\z`, not `$`: in Oniguruma `$` also matches before a newline, llama.cpp's
            // std::regex only at the end of the piece.
            r"\s+\z",
            DEEPSEEK_CJK,
            r"\p{N}+",
        ],
        Family::DeepseekCoder => &[
            r"[\r\n]",
            r"\s?\p{L}+",
            r"\s?\p{P}+",
            DEEPSEEK_CJK,
            r"\p{N}",
        ],
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
