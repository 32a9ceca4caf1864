//! The value parsers of the flags: each checks a range and rejects what is outside it, with a
//! message that says what is allowed (never clamps).

use crate::config::StageKind;

#[derive(Debug, Clone, Copy)]
pub(super) enum TopKArg {
    Off,
    K(usize),
}

#[derive(Debug, Clone)]
pub(super) struct SamplerList(pub(super) Vec<StageKind>);

pub(super) fn parse_f32(s: &str) -> Result<f32, String> {
    s.trim()
        .parse::<f32>()
        .map_err(|_| format!("'{s}' is not a number"))
}

pub(super) fn finite(s: &str) -> Result<f32, String> {
    let v = parse_f32(s)?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err("must be a finite number".into())
    }
}

pub(super) fn non_negative(s: &str) -> Result<f32, String> {
    let v = finite(s)?;
    if v == 0.0 || (v > 0.0 && (1.0 / v).is_finite()) {
        Ok(v)
    } else if v > 0.0 {
        Err("is too small: its inverse overflows (0 = greedy)".into())
    } else {
        Err("must be ≥ 0 (0 = greedy)".into())
    }
}

pub(super) fn positive(s: &str) -> Result<f32, String> {
    let v = finite(s)?;
    if v > 0.0 && (1.0 / v).is_finite() {
        Ok(v)
    } else if v > 0.0 {
        Err("is too small: its inverse overflows (1 = off)".into())
    } else {
        Err("must be > 0 (1 = off)".into())
    }
}

pub(super) fn open_unit(s: &str) -> Result<f32, String> {
    let v = finite(s)?;
    if v > 0.0 && v <= 1.0 {
        Ok(v)
    } else {
        Err("must be in (0, 1] (1 = off)".into())
    }
}

pub(super) fn closed_unit(s: &str) -> Result<f32, String> {
    let v = finite(s)?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err("must be in [0, 1] (0 = off)".into())
    }
}

pub(super) fn top_k(s: &str) -> Result<TopKArg, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(TopKArg::Off);
    }
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1 (use `off` to turn top-k off)".into()),
        Ok(k) => Ok(TopKArg::K(k)),
        Err(_) => Err("must be a whole number ≥ 1, or `off`".into()),
    }
}

/// `--seed`: a number, or -1 for a random one.
#[derive(Debug, Clone, Copy)]
pub(super) struct SeedArg(pub(super) Option<u64>);

pub(super) fn seed(s: &str) -> Result<SeedArg, String> {
    match s.trim() {
        "-1" | "random" => Ok(SeedArg(None)),
        t => t.parse::<u64>().map(|n| SeedArg(Some(n))).map_err(|_| {
            "must be a whole number in 0..=18446744073709551615, or -1 for a random seed".into()
        }),
    }
}

pub(super) fn logit_bias(s: &str) -> Result<(u32, f32), String> {
    let (id, bias) = s
        .split_once('=')
        .ok_or_else(|| "expected ID=BIAS, e.g. 42=-inf or 42=2.5".to_string())?;
    let id = id
        .trim()
        .parse::<u32>()
        .map_err(|_| format!("'{id}' is not a token id (a whole number ≥ 0)"))?;
    let bias = parse_f32(bias)?;
    if bias.is_nan() || bias == f32::INFINITY {
        return Err("BIAS must be a number or -inf".into());
    }
    Ok((id, bias))
}

pub(super) fn sampler_list(s: &str) -> Result<SamplerList, String> {
    let mut out: Vec<StageKind> = Vec::new();
    for name in s.split([',', ';']).filter(|n| !n.trim().is_empty()) {
        let kind: StageKind = name.parse()?;
        if out.contains(&kind) {
            return Err(format!("'{kind}' is listed twice"));
        }
        out.push(kind);
    }
    Ok(SamplerList(out))
}

/// `--max-tokens`: a count, or -1 for no limit (`usize::MAX`).
pub(super) fn max_tokens(s: &str) -> Result<usize, String> {
    match s.trim() {
        "-1" => Ok(usize::MAX),
        t => t
            .parse::<usize>()
            .map_err(|_| "must be a whole number ≥ 0, or -1 for no limit".into()),
    }
}

/// A string flag that cannot be empty (`--stop ''` would match everywhere).
/// A regex for `--answer-regex`: it must compile.
pub(super) fn answer_regex(s: &str) -> Result<String, String> {
    regex::Regex::new(s).map(|_| s.to_string()).map_err(|e| {
        format!(
            "not a valid regex: {}",
            e.to_string().lines().last().unwrap_or("")
        )
    })
}

pub(super) fn non_empty(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(s.to_string())
    }
}

/// Processes the escapes llama.cpp processes in prompts (`string_process_escapes`): `\n`,
/// `\r`, `\t`, `\'`, `\"`, `\\` and `\xHH` (ASCII only, so the text stays UTF-8). Any other
/// backslash is kept as written.
pub(super) fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.peek().copied() {
            Some(e @ ('n' | 'r' | 't' | '\'' | '"' | '\\')) => {
                chars.next();
                out.push(match e {
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    other => other,
                });
            }
            Some('x') => {
                let hex: String = chars.clone().skip(1).take(2).collect();
                match u8::from_str_radix(&hex, 16) {
                    Ok(b)
                        if hex.len() == 2
                            && hex.chars().all(|h| h.is_ascii_hexdigit())
                            && b.is_ascii() =>
                    {
                        chars.nth(2);
                        out.push(char::from(b));
                    }
                    _ => out.push('\\'),
                }
            }
            _ => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_as_llama_cpp() {
        assert_eq!(unescape(r"Q: 2+2?\nA:"), "Q: 2+2?\nA:");
        assert_eq!(unescape(r#"\t\r\'\"\\"#), "\t\r'\"\\");
        assert_eq!(unescape(r"\x41\x7e"), "A~");
        // Not escapes: kept as written.
        assert_eq!(
            unescape(r"C:\dir \q \x4 \xff \x+1 \"),
            r"C:\dir \q \x4 \xff \x+1 \"
        );
        assert_eq!(unescape(r"\\n"), r"\n");
        assert_eq!(unescape("héllo ✓"), "héllo ✓");
    }

    #[test]
    fn max_tokens_and_seeds() {
        assert_eq!(max_tokens("-1"), Ok(usize::MAX));
        assert_eq!(max_tokens("12"), Ok(12));
        assert!(max_tokens("-2").is_err());
        assert!(non_empty("").is_err());
        assert_eq!(seed("18446744073709551615").unwrap().0, Some(u64::MAX));
    }
}
