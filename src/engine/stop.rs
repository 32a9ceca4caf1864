//! Stop strings (`--stop STR`, repeatable): matched on the decoded text as it streams. Text that
//! could still turn into a match is held back until it is known not to; the match and anything
//! after it are not printed (unless `--keep-stop`).

/// Watches streamed text for the first occurrence of any stop string.
#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    keep_stop: bool,
    /// Text received but not yet released: a suffix that is a prefix of some stop string.
    held: String,
}

/// What to print after a piece of text, and whether a stop string matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopCheck {
    /// Text that is now safe to print.
    pub emit: String,
    /// The stop string that matched (generation must end), if any.
    pub matched: Option<String>,
}

impl StopMatcher {
    /// A matcher for `stops` (empty strings are ignored).
    pub fn new(stops: &[String], keep_stop: bool) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            keep_stop,
            held: String::new(),
        }
    }

    /// Feeds the next piece of generated text.
    pub fn push(&mut self, piece: &str) -> StopCheck {
        if self.stops.is_empty() {
            return StopCheck {
                emit: piece.to_string(),
                matched: None,
            };
        }
        self.held.push_str(piece);
        if let Some((at, stop)) = first_match(&self.held, &self.stops) {
            let end = if self.keep_stop { at + stop.len() } else { at };
            let emit = self.held[..end].to_string();
            let matched = Some(stop.to_string());
            self.held.clear();
            return StopCheck { emit, matched };
        }
        let keep_from = partial_start(&self.held, &self.stops);
        let emit = self.held[..keep_from].to_string();
        self.held.drain(..keep_from);
        StopCheck {
            emit,
            matched: None,
        }
    }

    /// Releases held-back text at the end of generation (it never became a match).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// The earliest occurrence of any stop string in `text`: (byte offset, the stop string). At the
/// same offset the stop listed first wins.
pub fn first_match<'a>(text: &str, stops: &'a [String]) -> Option<(usize, &'a str)> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()).map(|at| (at, s.as_str())))
        .min_by_key(|(at, _)| *at)
}

/// The earliest char boundary from which the rest of `text` is a proper prefix of some stop
/// string (`text.len()` when none is).
fn partial_start(text: &str, stops: &[String]) -> usize {
    text.char_indices()
        .map(|(i, _)| i)
        .find(|&i| {
            let tail = &text[i..];
            stops
                .iter()
                .any(|s| s.len() > tail.len() && s.starts_with(tail))
        })
        .unwrap_or(text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], keep: bool, pieces: &[&str]) -> (Vec<String>, Option<String>, String) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut m = StopMatcher::new(&stops, keep);
        let mut out = Vec::new();
        for p in pieces {
            let c = m.push(p);
            out.push(c.emit);
            if c.matched.is_some() {
                return (out, c.matched, String::new());
            }
        }
        let rest = m.finish();
        (out, None, rest)
    }

    #[test]
    fn a_stop_spanning_two_pieces_is_held_then_cut() {
        let (out, m, _) = run(&["\nUser:"], false, &["Hi there", "\nUs", "er: more"]);
        assert_eq!(out, ["Hi there", "", ""]);
        assert_eq!(m.as_deref(), Some("\nUser:"));
        let (out, _, _) = run(&["\nUser:"], true, &["Hi", "\nUs", "er: more"]);
        assert_eq!(out.concat(), "Hi\nUser:");
    }

    #[test]
    fn held_text_is_released_when_it_cannot_match() {
        let (out, m, rest) = run(&["STOP"], false, &["a ST", "OP!"][..1]);
        assert_eq!(
            (out.concat(), m, rest),
            ("a ".to_string(), None, "ST".to_string())
        );
        let (out, m, rest) = run(&["STOP"], false, &["a ST", "ART"]);
        assert_eq!(out.concat() + &rest, "a START");
        assert!(m.is_none());
    }

    #[test]
    fn earliest_match_wins_and_multibyte_text_is_safe() {
        let (out, m, _) = run(&["world", "lo"], false, &["héllo world"]);
        assert_eq!(out.concat(), "hél");
        assert_eq!(m.as_deref(), Some("lo"));
        let (out, m, rest) = run(&["ÿx"], false, &["aÿ", "b"]);
        assert_eq!((out.concat() + &rest, m), ("aÿb".to_string(), None));
    }
}
