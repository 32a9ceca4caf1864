//! Prompt-lookup drafting for speculative decoding (transformers' `prompt_lookup_num_tokens`,
//! llama.cpp's n-gram lookup): the tokens that followed the most recent earlier occurrence of
//! the sequence's last n-gram are proposed as its continuation. No draft model; what is
//! proposed is verified by the target, so it only changes speed, never the output.

/// Prompt-lookup settings (`--lookup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lookup {
    /// The longest n-gram matched (shorter ones are tried after it, down to 2, or 1 when this
    /// is 1).
    pub ngram: usize,
    /// Most tokens proposed at once (`--draft-max`).
    pub max: usize,
}

impl Lookup {
    /// Up to `self.max` tokens that followed the latest earlier occurrence of the last n-gram
    /// of `history`, trying n = `self.ngram` down to 2 (to 1 when `ngram` is 1); empty when
    /// none recurs.
    pub fn propose(&self, history: &[u32]) -> Vec<u32> {
        // A single repeated token predicts little in running text: with n-grams of 2 or more
        // asked for, a match needs at least 2 (measured in docs/PERFORMANCE.md).
        let shortest = self.ngram.min(2);
        for n in (shortest..=self.ngram.min(history.len().saturating_sub(1))).rev() {
            let tail = &history[history.len() - n..];
            // Latest occurrence first, and never the tail itself.
            let found = (0..history.len() - n)
                .rev()
                .find(|&i| &history[i..i + n] == tail);
            if let Some(i) = found {
                let start = i + n;
                let end = (start + self.max).min(history.len());
                if start < end {
                    return history[start..end].to_vec();
                }
            }
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposes_what_followed_the_latest_match() {
        let l = Lookup { ngram: 2, max: 3 };
        // ... 1 2 [7 8 9] ... 1 2 [5 6] ... 1 2 → the latest earlier "1 2" is followed by 5 6 1.
        assert_eq!(l.propose(&[1, 2, 7, 8, 9, 1, 2, 5, 6, 1, 2]), vec![5, 6, 1]);
        // No bigram match: nothing, unless unigrams are asked for.
        assert_eq!(l.propose(&[4, 9, 3, 5, 9]), Vec::<u32>::new());
        let one = Lookup { ngram: 1, max: 3 };
        assert_eq!(one.propose(&[4, 9, 3, 5, 9]), vec![3, 5, 9]);
        assert_eq!(l.propose(&[1, 2, 3]), Vec::<u32>::new());
        assert_eq!(l.propose(&[]), Vec::<u32>::new());
        assert_eq!(Lookup { ngram: 2, max: 10 }.propose(&[7, 7, 7]), vec![7]);
    }
}
