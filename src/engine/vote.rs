//! Self-consistency voting (Wang et al. 2022) over n samples of one prompt: each sample's final
//! answer is extracted and normalised, and the most frequent one wins. Ties go to the answer
//! whose first vote came from the earliest sample, so a tally never depends on hashing.

use regex::Regex;

/// How a sample's final answer is found.
#[derive(Debug, Clone)]
pub enum Extractor {
    /// `\boxed{...}` (the last one), else "the answer is ..." (the last one, to the end of its
    /// sentence), else the last number in the text.
    Default,
    /// The last match of the regex: its first capture group when it has one, else the match.
    Regex(Regex),
}

/// What the vote found.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    /// Answers and their votes, most votes first (ties: the earliest sample's answer first).
    pub counts: Vec<(String, usize)>,
    /// Samples in which no answer was found.
    pub none: usize,
    pub samples: usize,
}

impl Tally {
    /// The winning answer and its votes, if any sample had an answer.
    pub fn winner(&self) -> Option<(&str, usize)> {
        self.counts.first().map(|(a, n)| (a.as_str(), *n))
    }

    /// The winner's share of all samples (those without an answer included).
    pub fn share(&self) -> f64 {
        match self.winner() {
            Some((_, n)) if self.samples > 0 => n as f64 / self.samples as f64,
            _ => 0.0,
        }
    }
}

impl Extractor {
    /// The normalised final answer of `text`, if one is found.
    pub fn answer(&self, text: &str) -> Option<String> {
        let raw = match self {
            Extractor::Regex(re) => re.captures_iter(text).last().map(|c| {
                c.get(1)
                    .or_else(|| c.get(0))
                    .map_or(String::new(), |m| m.as_str().to_string())
            }),
            Extractor::Default => last_boxed(text)
                .or_else(|| answer_is(text))
                .or_else(|| last_number(text)),
        }?;
        let n = normalise(&raw);
        (!n.is_empty()).then_some(n)
    }
}

/// Counts the answers of `texts` (in sample order).
pub fn tally(extractor: &Extractor, texts: &[&str]) -> Tally {
    let mut counts: Vec<(String, usize)> = Vec::new();
    let mut none = 0;
    for t in texts {
        match extractor.answer(t) {
            Some(a) => match counts.iter_mut().find(|(b, _)| *b == a) {
                Some((_, n)) => *n += 1,
                None => counts.push((a, 1)),
            },
            None => none += 1,
        }
    }
    // A stable sort keeps first-seen order among equal counts: the earliest sample wins ties.
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    Tally {
        counts,
        none,
        samples: texts.len(),
    }
}

/// The contents of the last `\boxed{...}`, braces balanced.
fn last_boxed(text: &str) -> Option<String> {
    let start = text.rfind("\\boxed{")? + "\\boxed{".len();
    let mut depth = 1usize;
    for (i, c) in text[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(text[start..start + i].to_string());
                }
            }
            _ => {}
        }
    }
    None
}

/// What follows the last "answer is" (any case, an optional colon: "the answer is", "the final
/// answer is"), to the end of the sentence or line; of a worked phrase ("38 - 22 = 16 left"),
/// what follows its last `=`; and of a phrase that starts with a number ("7 apples", "$42"),
/// the number alone.
fn answer_is(text: &str) -> Option<String> {
    let lower = text.to_lowercase();
    // Lowercasing can change byte lengths outside ASCII; the search runs on the lowered text
    // and the answer is taken from it too.
    let at = lower.rfind("answer is")? + "answer is".len();
    let rest = lower[at..].trim_start_matches([':', ' ']);
    let end = rest
        .char_indices()
        .find(|&(i, c)| {
            c == '\n' || ((c == '.' || c == '!' || c == '?') && !is_decimal_point(rest, i))
        })
        .map_or(rest.len(), |(i, _)| i);
    let phrase = &rest[..end];
    let phrase = phrase.rfind('=').map_or(phrase, |i| &phrase[i + 1..]);
    let bare = phrase.trim_start_matches([' ', '$', '*', '"', '\'', '`']);
    let word = bare
        .split_whitespace()
        .next()
        .unwrap_or("")
        .trim_end_matches([',', ';', ':']);
    if word
        .replace(',', "")
        .parse::<f64>()
        .is_ok_and(f64::is_finite)
    {
        // A number as written ("1e20", "1,200"): normalised as a whole.
        return Some(word.to_string());
    }
    Some(match number_regex().find(bare) {
        Some(m) if m.start() == 0 => m.as_str().to_string(),
        _ => phrase.to_string(),
    })
}

/// Whether the `.` at byte `i` of `s` sits between two digits (a decimal point, not a full stop).
fn is_decimal_point(s: &str, i: usize) -> bool {
    let before = s[..i]
        .chars()
        .next_back()
        .is_some_and(|c| c.is_ascii_digit());
    let after = s[i + 1..]
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit());
    before && after
}

/// The last number in `text` (an optional sign, digits with `,` thousands separators, an
/// optional decimal part).
fn last_number(text: &str) -> Option<String> {
    number_regex()
        .find_iter(text)
        .last()
        .map(|m| m.as_str().to_string())
}

fn number_regex() -> &'static Regex {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        // A constant pattern, checked by the tests: it compiles.
        Regex::new(r"-?\d[\d,]*(?:\.\d+)?").unwrap_or_else(|_| unreachable!("a valid pattern"))
    })
}

/// One spelling per answer: trimmed, lower case, inner whitespace collapsed, surrounding `$`,
/// quotes and final punctuation removed; a number loses its thousands separators and a zero
/// fraction (`1,000.0` and `1000` vote together).
pub fn normalise(raw: &str) -> String {
    let s = raw
        .trim()
        .trim_matches(|c: char| c == '$' || c == '"' || c == '\'' || c == '*' || c == '`')
        .trim_end_matches(['.', ',', ';', ':', '!', '?'])
        .trim()
        .to_lowercase();
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let plain = s.replace(',', "");
    if let Ok(x) = plain.parse::<f64>() {
        if x.is_finite() {
            if x.fract() == 0.0 && x.abs() < 1e15 {
                return format!("{}", x as i64);
            }
            return format!("{x}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_found_in_order_of_preference() {
        let d = Extractor::Default;
        assert_eq!(
            d.answer("so 3+4 = 7, and \\boxed{\\frac{1}{2}} is it. The answer is 9."),
            Some("\\frac{1}{2}".into())
        );
        assert_eq!(
            d.answer("Thus, the answer is: 1,024.0!"),
            Some("1024".into())
        );
        assert_eq!(d.answer("The Answer Is Paris."), Some("paris".into()));
        assert_eq!(
            d.answer("We get 12 apples, then 3.5 more"),
            Some("3.5".into())
        );
        assert_eq!(d.answer("the answer is 3.14. Done"), Some("3.14".into()));
        assert_eq!(d.answer("no digits here"), None);
        assert_eq!(d.answer("\\boxed{unclosed"), None);
        // A worked phrase gives what follows its last `=`; a phrase that starts with a number
        // gives the number; "the final answer is" counts.
        assert_eq!(
            d.answer("So, the answer is 38 - 22 = 16 oranges left on the table."),
            Some("16".into())
        );
        assert_eq!(d.answer("The answer is 7 pencils."), Some("7".into()));
        assert_eq!(
            d.answer("The answer is: $1,200 in all"),
            Some("1200".into())
        );
        assert_eq!(d.answer("The final answer is 12"), Some("12".into()));
        let re = Extractor::Regex(Regex::new(r"ANSWER: (\w+)").unwrap());
        assert_eq!(re.answer("ANSWER: a ... ANSWER: B"), Some("b".into()));
        assert_eq!(re.answer("nothing"), None);
    }

    #[test]
    fn tallies_break_ties_by_the_earliest_sample() {
        let d = Extractor::Default;
        let t = tally(&d, &["it is 5", "maybe 7", "surely 7", "5.0", "no idea"]);
        assert_eq!(t.counts, vec![("5".into(), 2), ("7".into(), 2)]);
        assert_eq!(t.none, 1);
        assert_eq!(t.winner(), Some(("5", 2)));
        assert!((t.share() - 0.4).abs() < 1e-12);
        let t = tally(&d, &["7", "5", "5"]);
        assert_eq!(t.winner(), Some(("5", 2)));
        let empty = tally(&d, &["none", "at all"]);
        assert_eq!((empty.winner(), empty.none, empty.share()), (None, 2, 0.0));
        assert!(number_regex().is_match("1"));
    }
}
