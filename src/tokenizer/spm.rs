//! SentencePiece vocabularies (GGUF `tokenizer.ggml.model = llama`: Llama 2, TinyLlama, Mistral,
//! Phi-3, ...), encoded and decoded as llama.cpp does (`llm_tokenizer_spm` and `token_to_piece`
//! in src/llama-vocab.cpp). The Hugging Face `tokenizers` crate has no model with these exact
//! semantics (score-ordered bigram merges over the whole escaped text, ties to the left), so the
//! encoder is our own.
//!
//! Encoding: special tokens written in the text are split out first (longest text first, as
//! llama.cpp's `tokenizer_st_partition`); every remaining piece gets a space in front when it
//! starts the text or follows a special token (`add_space_prefix`), has its spaces escaped to
//! U+2581, and is merged pair by pair, the adjacent pair whose concatenation is the
//! highest-scoring vocabulary entry first (ties: the leftmost). A final symbol that is not a
//! token falls back to its bytes (`<0xXX>` tokens).

use anyhow::{anyhow, bail, Result};
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

/// The escaped space of SentencePiece vocabularies (U+2581, `▁`).
const SPACE: char = '\u{2581}';

/// llama.cpp's token types (`llama_token_type`) as they matter here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Normal,
    Unknown,
    Control,
    UserDefined,
    /// A byte-fallback token, `<0xXX>`: decodes to that byte.
    Byte(u8),
    /// Unused or undefined: decodes to nothing.
    Unused,
}

/// What [`Spm::new`] needs: one entry per id.
pub(super) struct SpmVocab {
    pub texts: Vec<String>,
    pub scores: Vec<f32>,
    pub kinds: Vec<Kind>,
    /// `tokenizer.ggml.add_space_prefix` (llama.cpp's default for SentencePiece: true).
    pub add_space_prefix: bool,
}

/// Whether special-token texts in the input become their ids (llama.cpp's `parse_special`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Specials {
    /// Control, unknown and user-defined token texts become their single ids.
    Parse,
    /// Only user-defined tokens are split out; control and unknown token texts are ordinary
    /// text (llama.cpp's `parse_special = false`).
    AsText,
}

/// A SentencePiece tokenizer built from a GGUF vocabulary.
#[derive(Debug, Clone)]
pub(super) struct Spm {
    texts: Vec<String>,
    scores: Vec<f32>,
    kinds: Vec<Kind>,
    ids: HashMap<String, u32>,
    /// The token each byte value falls back to: `<0xXX>`, else (ASCII only) the byte's own
    /// one-character token, as llama.cpp's `byte_to_token`.
    byte_ids: [Option<u32>; 256],
    add_space_prefix: bool,
    /// Control, unknown and user-defined tokens, longest text first (ties: lower id): the order
    /// in which llama.cpp splits them out of the text.
    specials: Vec<u32>,
}

/// A part of the input after special tokens were split out.
enum Fragment<'a> {
    Text(&'a str),
    Token(u32),
}

/// A run of the text being merged: `text[start..start + len]`, linked to its neighbours.
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge of two adjacent symbols whose concatenation is a token.
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    /// Byte length of the concatenation: a bigram whose symbols have since changed is stale.
    size: usize,
}

impl Ord for Bigram {
    /// Max-heap order: higher score first, then the leftmost (llama.cpp's `llm_bigram_spm`).
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}

impl Spm {
    /// Builds the tokenizer. Two ids with the same text are an error (llama.cpp asserts that the
    /// text → id map has one entry per id).
    pub(super) fn new(vocab: SpmVocab) -> Result<Self> {
        let SpmVocab {
            texts,
            scores,
            kinds,
            add_space_prefix,
        } = vocab;
        if scores.len() != texts.len() || kinds.len() != texts.len() {
            bail!(
                "internal: {} token texts but {} scores and {} types",
                texts.len(),
                scores.len(),
                kinds.len()
            );
        }
        let mut ids = HashMap::with_capacity(texts.len());
        for (id, text) in texts.iter().enumerate() {
            let id = u32::try_from(id).map_err(|_| anyhow!("more tokens than u32 ids allow"))?;
            if let Some(first) = ids.insert(text.clone(), id) {
                bail!("token {id} has the same text as token {first} ({text:?}); every token text must be unique, re-convert the file");
            }
        }
        let mut byte_ids = [None; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            let hex = format!("<0x{b:02X}>");
            *slot = ids.get(hex.as_str()).copied().or_else(|| {
                u8::try_from(b)
                    .ok()
                    .filter(u8::is_ascii)
                    .and_then(|a| ids.get(char::from(a).to_string().as_str()).copied())
            });
        }
        let mut specials: Vec<u32> = (0..texts.len())
            .filter(|&i| matches!(kinds[i], Kind::Control | Kind::Unknown | Kind::UserDefined))
            .filter_map(|i| u32::try_from(i).ok())
            .collect();
        specials.sort_by(|&a, &b| {
            texts[b as usize]
                .len()
                .cmp(&texts[a as usize].len())
                .then(a.cmp(&b))
        });
        Ok(Self {
            texts,
            scores,
            kinds,
            ids,
            byte_ids,
            add_space_prefix,
            specials,
        })
    }

    /// Number of ids.
    pub(super) fn len(&self) -> usize {
        self.texts.len()
    }

    /// The id of a vocabulary text.
    pub(super) fn token_to_id(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    /// The vocabulary text of an id.
    pub(super) fn id_to_token(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize).map(String::as_str)
    }

    /// The type of an id.
    pub(super) fn kind(&self, id: u32) -> Option<Kind> {
        self.kinds.get(id as usize).copied()
    }

    /// Whether pieces get a leading space (`add_space_prefix`).
    pub(super) fn add_space_prefix(&self) -> bool {
        self.add_space_prefix
    }

    /// The longest token text in bytes.
    pub(super) fn longest_token_bytes(&self) -> usize {
        self.texts.iter().map(String::len).max().unwrap_or(1)
    }

    /// Encodes text without BOS/EOS (the caller adds them).
    pub(super) fn encode(&self, text: &str, specials: Specials) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        // llama.cpp: a piece gets the space prefix when it starts the text or follows a special
        // token, as SentencePiece sees every piece as the start of a sentence.
        let mut after_special = true;
        let mut piece = String::new();
        for fragment in self.partition(text, specials) {
            match fragment {
                Fragment::Token(id) => {
                    out.push(id);
                    after_special = true;
                }
                Fragment::Text(t) => {
                    piece.clear();
                    if self.add_space_prefix && after_special {
                        piece.push(SPACE);
                    }
                    piece.extend(t.chars().map(|c| if c == ' ' { SPACE } else { c }));
                    self.encode_piece(&piece, &mut out)?;
                    after_special = false;
                }
            }
        }
        Ok(out)
    }

    /// Splits special-token texts out of `text`, one token at a time in `self.specials` order,
    /// each occurrence left to right (llama.cpp's `tokenizer_st_partition`).
    fn partition<'a>(&self, text: &'a str, specials: Specials) -> Vec<Fragment<'a>> {
        let mut fragments = vec![Fragment::Text(text)];
        if text.is_empty() {
            return Vec::new();
        }
        for &id in &self.specials {
            let kind = self.kinds[id as usize];
            if specials == Specials::AsText && matches!(kind, Kind::Control | Kind::Unknown) {
                continue;
            }
            let needle = self.texts[id as usize].as_str();
            if !fragments
                .iter()
                .any(|f| matches!(f, Fragment::Text(t) if t.contains(needle)))
            {
                continue;
            }
            let mut next = Vec::with_capacity(fragments.len() + 2);
            for fragment in fragments {
                let Fragment::Text(t) = fragment else {
                    next.push(fragment);
                    continue;
                };
                let mut rest = 0;
                for (at, _) in t.match_indices(needle) {
                    if at > rest {
                        next.push(Fragment::Text(&t[rest..at]));
                    }
                    next.push(Fragment::Token(id));
                    rest = at + needle.len();
                }
                if rest < t.len() {
                    next.push(Fragment::Text(&t[rest..]));
                }
            }
            fragments = next;
        }
        fragments
    }

    /// Merges one escaped piece and appends its ids (llama.cpp's `llm_tokenizer_spm_session`).
    fn encode_piece(&self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        let mut symbols: Vec<Symbol> = Vec::new();
        for (start, c) in text.char_indices() {
            let index = symbols.len();
            symbols.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: index.checked_sub(1),
                next: (start + c.len_utf8() < text.len()).then_some(index + 1),
            });
        }
        if symbols.is_empty() {
            return Ok(());
        }
        let mut queue = BinaryHeap::new();
        let bigram = |symbols: &[Symbol], left: usize, right: usize| -> Option<Bigram> {
            let (l, r) = (symbols[left], symbols[right]);
            let joined = text.get(l.start..l.start + l.len + r.len)?;
            let id = self.ids.get(joined)?;
            Some(Bigram {
                score: self.scores[*id as usize],
                left,
                right,
                size: joined.len(),
            })
        };
        for i in 1..symbols.len() {
            queue.extend(bigram(&symbols, i - 1, i));
        }
        while let Some(b) = queue.pop() {
            let (l, r) = (symbols[b.left], symbols[b.right]);
            if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
                continue;
            }
            symbols[b.left].len += r.len;
            symbols[b.right].len = 0;
            symbols[b.left].next = r.next;
            if let Some(n) = r.next {
                symbols[n].prev = Some(b.left);
            }
            if let Some(p) = symbols[b.left].prev {
                queue.extend(bigram(&symbols, p, b.left));
            }
            if let Some(n) = symbols[b.left].next {
                queue.extend(bigram(&symbols, b.left, n));
            }
        }
        // Every merged symbol is a token (a bigram is queued only when its text is one), so
        // only single characters can be missing from the vocabulary: they become bytes.
        let mut at = Some(0);
        while let Some(i) = at {
            let s = symbols[i];
            let piece = &text[s.start..s.start + s.len];
            match self.ids.get(piece) {
                Some(&id) => out.push(id),
                None => {
                    for b in piece.bytes() {
                        out.push(self.byte_ids[usize::from(b)].ok_or_else(|| {
                            anyhow!("cannot encode {piece:?}: it is not in the vocabulary and there is no byte token <0x{b:02X}> to fall back to")
                        })?);
                    }
                }
            }
            at = s.next;
        }
        Ok(())
    }

    /// The bytes an id stands for, as llama.cpp's `token_to_piece` with `special = true`:
    /// control, unknown and user-defined tokens as their text, normal tokens with U+2581 as a
    /// space, byte tokens as their byte, unused tokens as nothing.
    fn piece(&self, id: u32) -> Result<std::borrow::Cow<'_, [u8]>> {
        use std::borrow::Cow;
        let text = self.texts.get(id as usize).ok_or_else(|| {
            anyhow!(
                "cannot decode token id {id}: the vocabulary has {} tokens",
                self.len()
            )
        })?;
        Ok(match self.kinds[id as usize] {
            Kind::Control | Kind::Unknown | Kind::UserDefined => Cow::Borrowed(text.as_bytes()),
            Kind::Normal => Cow::Owned(text.replace(SPACE, " ").into_bytes()),
            Kind::Byte(b) => Cow::Owned(vec![b]),
            Kind::Unused => Cow::Borrowed(&[]),
        })
    }

    /// Decodes ids to bytes. `show` says which ids contribute (the others are skipped). When
    /// the ids start with `bos` and pieces were given a space prefix, the one space the encoder
    /// added after BOS is removed again, so that decoding an encoded text gives it back.
    pub(super) fn decode(
        &self,
        ids: &[u32],
        bos: Option<u32>,
        show: impl Fn(u32) -> bool,
    ) -> Result<String> {
        let mut bytes = Vec::new();
        let strip_second = self.add_space_prefix && bos.is_some() && ids.first().copied() == bos;
        for (i, &id) in ids.iter().enumerate() {
            let piece = self.piece(id)?;
            if !show(id) {
                continue;
            }
            let piece: &[u8] = &piece;
            let piece = match piece {
                [b' ', rest @ ..] if i == 1 && strip_second => rest,
                _ => piece,
            };
            bytes.extend_from_slice(piece);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vocabulary: `<unk>`, `<s>`, `</s>`, the 256 byte tokens, then `extra` (text, score).
    fn vocab(extra: &[(&str, f32)]) -> Spm {
        let mut texts = vec!["<unk>".to_string(), "<s>".to_string(), "</s>".to_string()];
        let mut kinds = vec![Kind::Unknown, Kind::Control, Kind::Control];
        for b in 0..=255u8 {
            texts.push(format!("<0x{b:02X}>"));
            kinds.push(Kind::Byte(b));
        }
        let mut scores = vec![0.0; texts.len()];
        for (t, s) in extra {
            texts.push((*t).to_string());
            kinds.push(Kind::Normal);
            scores.push(*s);
        }
        Spm::new(SpmVocab {
            texts,
            scores,
            kinds,
            add_space_prefix: true,
        })
        .unwrap()
    }

    fn texts(spm: &Spm, ids: &[u32]) -> Vec<String> {
        ids.iter()
            .map(|&i| spm.id_to_token(i).unwrap().to_string())
            .collect()
    }

    #[test]
    fn highest_score_merges_first_and_ties_go_left() {
        // "▁ab": ▁a (score -1) beats ab (-2), so the result is ▁a + b.
        let spm = vocab(&[
            ("▁", -5.0),
            ("a", -5.0),
            ("b", -5.0),
            ("▁a", -1.0),
            ("ab", -2.0),
        ]);
        assert_eq!(
            texts(&spm, &spm.encode("ab", Specials::Parse).unwrap()),
            ["▁a", "b"]
        );
        // Equal scores: "aaa" merges the left pair first → aa + a.
        let spm = vocab(&[("▁", -5.0), ("a", -5.0), ("aa", -1.0)]);
        assert_eq!(
            texts(&spm, &spm.encode("aaa", Specials::Parse).unwrap()),
            ["▁", "aa", "a"]
        );
    }

    #[test]
    fn unknown_characters_fall_back_to_bytes_and_decode_back() {
        let spm = vocab(&[("▁", -1.0), ("x", -1.0)]);
        let ids = spm.encode("xé", Specials::Parse).unwrap();
        assert_eq!(texts(&spm, &ids), ["▁", "x", "<0xC3>", "<0xA9>"]);
        assert_eq!(spm.decode(&ids, None, |_| true).unwrap(), " xé");
        // Half a character decodes to U+FFFD, which streaming relies on.
        assert_eq!(spm.decode(&ids[..3], None, |_| true).unwrap(), " x\u{FFFD}");
    }

    #[test]
    fn special_tokens_split_out_and_reset_the_space_prefix() {
        let spm = vocab(&[("▁", -1.0), ("a", -1.0), ("▁a", -0.5)]);
        let ids = spm.encode("a</s>a", Specials::Parse).unwrap();
        assert_eq!(texts(&spm, &ids), ["▁a", "</s>", "▁a"]);
        // As text, `</s>` is ordinary characters (here all bytes).
        let ids = spm.encode("</s>", Specials::AsText).unwrap();
        assert_eq!(texts(&spm, &ids)[0], "▁");
        assert!(!ids.contains(&2));
    }

    #[test]
    fn the_space_after_bos_is_removed_on_decode_only_after_bos() {
        let spm = vocab(&[("▁hi", -1.0)]);
        let hi = spm.token_to_id("▁hi").unwrap();
        assert_eq!(spm.decode(&[1, hi], Some(1), |_| true).unwrap(), "<s>hi");
        assert_eq!(spm.decode(&[1, hi], Some(1), |id| id != 1).unwrap(), "hi");
        assert_eq!(spm.decode(&[hi, hi], Some(1), |_| true).unwrap(), " hi hi");
    }

    #[test]
    fn duplicate_texts_and_missing_bytes_are_errors_not_panics() {
        let err = Spm::new(SpmVocab {
            texts: vec!["a".into(), "a".into()],
            scores: vec![0.0; 2],
            kinds: vec![Kind::Normal; 2],
            add_space_prefix: true,
        })
        .unwrap_err();
        assert!(err.to_string().contains("same text"), "{err}");
        let spm = Spm::new(SpmVocab {
            texts: vec!["▁".into()],
            scores: vec![0.0],
            kinds: vec![Kind::Normal],
            add_space_prefix: true,
        })
        .unwrap();
        let err = spm.encode("é", Specials::Parse).unwrap_err();
        assert!(err.to_string().contains("<0xC3>"), "{err}");
        assert!(spm.decode(&[7], None, |_| true).is_err());
    }
}
