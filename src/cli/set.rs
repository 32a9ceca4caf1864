//! `gen chat`'s `/set NAME VALUE`: the sampling settings by their flag names, parsed and
//! range-checked by the same value parsers as the flags, so a value the command line refuses
//! is refused here too (and leaves the settings as they were).

use super::values::{
    closed_unit, finite, max_tokens, non_negative, open_unit, positive, seed, top_k, TopKArg,
};
use crate::config::{SamplingConfig, Window};

/// The names `/set` takes (flag names without `--`; `_` and `-` alike).
pub const SETTINGS: [&str; 11] = [
    "temperature",
    "top-k",
    "top-p",
    "min-p",
    "typical-p",
    "repeat-penalty",
    "repeat-last-n",
    "frequency-penalty",
    "presence-penalty",
    "seed",
    "max-tokens",
];

/// Sets `name` to `value` in `sampling` (or `max_tokens`); returns the setting as it now
/// reads, or an error naming the setting and its range, with nothing changed.
pub fn apply_setting(
    sampling: &mut SamplingConfig,
    max_tokens_per_answer: &mut usize,
    name: &str,
    value: &str,
) -> Result<String, String> {
    let key = name.trim_start_matches("--").replace('_', "-");
    let bad = |why: String| format!("/set {key}: invalid value '{value}': {why}");
    let mut next = sampling.clone();
    match key.as_str() {
        "temperature" | "temp" => next.temperature = non_negative(value).map_err(bad)?,
        "top-k" => {
            next.top_k = match top_k(value).map_err(bad)? {
                TopKArg::Off => None,
                TopKArg::K(k) => Some(k),
            }
        }
        "top-p" => next.top_p = open_unit(value).map_err(bad)?,
        "min-p" => next.min_p = closed_unit(value).map_err(bad)?,
        "typical-p" | "typical" => next.typical_p = open_unit(value).map_err(bad)?,
        "repeat-penalty" => next.repeat_penalty = positive(value).map_err(bad)?,
        "repeat-last-n" => {
            let n: i64 = value
                .trim()
                .parse()
                .ok()
                .filter(|n| *n >= -1)
                .ok_or_else(|| {
                    bad("must be a whole number ≥ -1 (-1 = everything, 0 = off)".into())
                })?;
            next.repeat_window = match n {
                0 => None,
                n if n < 0 => Some(Window::All),
                n => Some(Window::Last(n as usize)),
            };
        }
        "frequency-penalty" => next.frequency_penalty = finite(value).map_err(bad)?,
        "presence-penalty" => next.presence_penalty = finite(value).map_err(bad)?,
        "seed" => next.seed = seed(value).map_err(bad)?.0,
        "max-tokens" | "n-predict" | "num-predict" => {
            *max_tokens_per_answer = max_tokens(value).map_err(bad)?;
            return Ok(format!("max-tokens {value}"));
        }
        _ => {
            return Err(format!(
                "/set: unknown setting '{name}'; settings: {}",
                SETTINGS.join(", ")
            ))
        }
    }
    *sampling = next;
    Ok(format!("{key} {}", value.trim()))
}

/// Every `/set` setting as it now reads, in [`SETTINGS`] order (`/show`, `/save`); each value
/// is one [`apply_setting`] takes back.
pub fn current_settings(sampling: &SamplingConfig, max_tokens: usize) -> Vec<(String, String)> {
    let s = sampling;
    let values = [
        s.temperature.to_string(),
        s.top_k.map_or("off".into(), |k| k.to_string()),
        s.top_p.to_string(),
        s.min_p.to_string(),
        s.typical_p.to_string(),
        s.repeat_penalty.to_string(),
        match s.repeat_window {
            None => "0".into(),
            Some(Window::All) => "-1".into(),
            Some(Window::Last(n)) => n.to_string(),
        },
        s.frequency_penalty.to_string(),
        s.presence_penalty.to_string(),
        s.seed.map_or("-1".into(), |n| n.to_string()),
        if max_tokens == usize::MAX {
            "-1".into()
        } else {
            max_tokens.to_string()
        },
    ];
    SETTINGS
        .iter()
        .zip(values)
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_take_the_flags_checks() {
        let mut s = SamplingConfig::default();
        let mut n = 10;
        assert_eq!(
            apply_setting(&mut s, &mut n, "temperature", "0.3"),
            Ok("temperature 0.3".into())
        );
        assert_eq!(s.temperature, 0.3);
        apply_setting(&mut s, &mut n, "top_k", "off").unwrap();
        assert_eq!(s.top_k, None);
        apply_setting(&mut s, &mut n, "--max-tokens", "-1").unwrap();
        assert_eq!(n, usize::MAX);
        let before = s.clone();
        let err = apply_setting(&mut s, &mut n, "top-p", "2").unwrap_err();
        assert!(err.contains("top-p") && err.contains("(0, 1]"), "{err}");
        assert!(apply_setting(&mut s, &mut n, "temperature", "-1").is_err());
        assert!(apply_setting(&mut s, &mut n, "repeat-last-n", "-2").is_err());
        assert!(apply_setting(&mut s, &mut n, "colour", "1")
            .unwrap_err()
            .contains("unknown setting"));
        assert_eq!(s, before, "a refused value changes nothing");
        apply_setting(&mut s, &mut n, "seed", "7").unwrap();
        assert_eq!(s.seed, Some(7));
    }

    #[test]
    fn current_settings_read_back() {
        let mut s = SamplingConfig::default();
        let mut n = 5;
        apply_setting(&mut s, &mut n, "repeat-last-n", "-1").unwrap();
        let now = current_settings(&s, n);
        let (mut back, mut m) = (SamplingConfig::greedy(), 0);
        for (k, v) in &now {
            apply_setting(&mut back, &mut m, k, v).unwrap();
        }
        assert_eq!((back, m), (s, n));
    }
}
