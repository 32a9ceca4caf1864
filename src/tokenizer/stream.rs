//! Incremental decoding for streamed generation: ids go in one at a time, and only text that
//! is complete comes out (never half of a UTF-8 character, which byte-level BPE routinely
//! produces when one character spans several tokens).

use super::Tokenizer;
use anyhow::{bail, Result};

/// Turns a stream of token ids into text chunks whose concatenation equals
/// [`Tokenizer::decode`] of all the ids.
///
/// It keeps a small window of ids: the tokens of the chunk last returned (as context, so that
/// decoders which treat the first token specially still behave) and the tokens not yet returned.
/// A chunk is released once the window decodes to something longer than the context's text that
/// does not end in U+FFFD, i.e. not in the middle of a character; [`TokenStream::finish`]
/// releases whatever is left, incomplete bytes included (as U+FFFD, like `decode`), and
/// [`TokenStream::finish_complete`] leaves out the bytes of an unfinished last character.
/// Control tokens are part of the text unless [`TokenStream::show_control`] turns them off.
pub struct TokenStream<'a> {
    tokenizer: &'a Tokenizer,
    /// Whether control tokens (`<|im_end|>`, ...) contribute their text.
    control: bool,
    /// Context ids (`..context`) followed by ids whose text has not been returned yet.
    ids: Vec<u32>,
    /// How many of `ids` are context.
    context: usize,
    /// `decode(ids[..context])`: the text already returned for the context ids.
    prefix: String,
}

impl<'a> TokenStream<'a> {
    /// Starts an empty stream over `tokenizer`'s vocabulary.
    pub fn new(tokenizer: &'a Tokenizer) -> Self {
        Self {
            tokenizer,
            control: true,
            ids: Vec::new(),
            context: 0,
            prefix: String::new(),
        }
    }

    /// Whether control tokens contribute their text (default: yes, as `decode`); without, they
    /// are skipped as if they had not been generated.
    pub fn show_control(mut self, show: bool) -> Self {
        self.control = show;
        self
    }

    /// Adds one id; returns the text it completes, or `None` when it completes nothing yet
    /// (for example the first bytes of a multi-token emoji).
    pub fn next(&mut self, id: u32) -> Result<Option<String>> {
        if !self.control && self.tokenizer.is_control(id) {
            return Ok(None);
        }
        self.ids.push(id);
        let text = self.tokenizer.decode(&self.ids)?;
        if text.ends_with('\u{FFFD}') {
            return Ok(None);
        }
        let Some(new) = text.strip_prefix(self.prefix.as_str()) else {
            bail!(
                "streaming decode: the text of ids {:?} ({text:?}) no longer starts with the text already returned ({:?}); \
                 this tokenizer's decoder rewrites earlier text, decode the whole sequence instead",
                self.ids,
                self.prefix
            );
        };
        if new.is_empty() {
            return Ok(None);
        }
        let new = new.to_string();
        // The ids just released become the context for the next chunk.
        self.ids.drain(..self.context);
        self.context = self.ids.len();
        self.prefix = self.tokenizer.decode(&self.ids)?;
        Ok(Some(new))
    }

    /// Ends the stream, returning the text of the ids not yet returned (possibly empty). An
    /// incomplete UTF-8 sequence at the very end comes out as U+FFFD, as [`Tokenizer::decode`]
    /// would give it.
    pub fn finish(self) -> Result<String> {
        self.rest(self.ids.len())
    }

    /// Ends the stream as [`TokenStream::finish`], but leaves out the ids at the end whose
    /// bytes begin a character they do not complete (what streaming held back): returns the
    /// remaining complete text and how many ids were left out.
    pub fn finish_complete(self) -> Result<(String, usize)> {
        let mut end = self.ids.len();
        while end > self.context {
            let text = self.tokenizer.decode(&self.ids[..end])?;
            if !text.ends_with('\u{FFFD}') {
                break;
            }
            end -= 1;
        }
        Ok((self.rest(end)?, self.ids.len() - end))
    }

    /// The text of `ids[..end]` after what was already returned.
    fn rest(&self, end: usize) -> Result<String> {
        if end <= self.context {
            return Ok(String::new());
        }
        let text = self.tokenizer.decode(&self.ids[..end])?;
        match text.strip_prefix(self.prefix.as_str()) {
            Some(rest) => Ok(rest.to_string()),
            None => bail!(
                "streaming decode: the text of ids {:?} ({text:?}) no longer starts with the text already returned ({:?}); \
                 this tokenizer's decoder rewrites earlier text, decode the whole sequence instead",
                &self.ids[..end],
                self.prefix
            ),
        }
    }
}
