//! The `tojson` filter as transformers defines it for chat templates, replacing jinja2's
//! HTML-escaping one: Python's `json.dumps(x, ensure_ascii=False, indent=None,
//! separators=None, sort_keys=False)`, each argument also accepted by keyword. So `", "` and
//! `": "` between items, non-ASCII kept, floats as Python's `repr`, `NaN` / `Infinity`
//! allowed, and with `indent` one item per line and `","` after items.

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, ErrorKind, Value};

/// How [`dumps`] writes, from the filter's arguments.
struct Style {
    ensure_ascii: bool,
    /// The text of one indentation level; `None`: everything on one line.
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

/// The filter: `value | tojson`, `value | tojson(indent=2)`, `tojson(value, ensure_ascii=True)`.
pub fn tojson(value: &Value, ensure_ascii: Option<bool>, kwargs: Kwargs) -> Result<Value, Error> {
    let ensure_ascii = match ensure_ascii {
        Some(b) => b,
        None => kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
    };
    let indent = match kwargs.get::<Option<Value>>("indent")? {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) if v.kind() == ValueKind::String => Some(v.as_str().unwrap_or("").to_string()),
        Some(v) => {
            let n = v
                .as_i64()
                .ok_or_else(|| invalid("tojson: indent must be an integer or a string"))?;
            Some(" ".repeat(usize::try_from(n).unwrap_or(0)))
        }
    };
    let (item_sep, key_sep) = match kwargs.get::<Option<Value>>("separators")? {
        Some(v) if !v.is_none() => {
            let parts: Vec<Value> = v.try_iter()?.collect();
            match parts.as_slice() {
                [a, b] if a.as_str().is_some() && b.as_str().is_some() => (
                    a.as_str().unwrap_or("").to_string(),
                    b.as_str().unwrap_or("").to_string(),
                ),
                _ => return Err(invalid("tojson: separators must be two strings")),
            }
        }
        _ if indent.is_some() => (",".to_string(), ": ".to_string()),
        _ => (", ".to_string(), ": ".to_string()),
    };
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    kwargs.assert_all_used()?;
    let style = Style {
        ensure_ascii,
        indent,
        item_sep,
        key_sep,
        sort_keys,
    };
    let mut out = String::new();
    dumps(value, &style, 0, &mut out)?;
    Ok(Value::from(out))
}

/// Writes `value` at nesting `level` as Python's JSON encoder does.
fn dumps(value: &Value, style: &Style, level: usize, out: &mut String) -> Result<(), Error> {
    match value.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&number(value)),
        ValueKind::String => string(value.as_str().unwrap_or(""), style.ensure_ascii, out),
        ValueKind::Seq => {
            let items: Vec<Value> = value.try_iter()?.collect();
            let mut first = true;
            container(items.len(), '[', ']', style, level, out, |out, next| {
                for item in &items {
                    next(out, &mut first);
                    dumps(item, style, level + 1, out)?;
                }
                Ok(())
            })?;
        }
        ValueKind::Map => {
            let mut pairs: Vec<(String, Value)> = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                pairs.push((map_key(&key)?, item));
            }
            if style.sort_keys {
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
            }
            let mut first = true;
            container(pairs.len(), '{', '}', style, level, out, |out, next| {
                for (key, item) in &pairs {
                    next(out, &mut first);
                    string(key, style.ensure_ascii, out);
                    out.push_str(&style.key_sep);
                    dumps(item, style, level + 1, out)?;
                }
                Ok(())
            })?;
        }
        kind => {
            return Err(invalid(format!(
                "tojson: an object of kind {kind} is not JSON serializable"
            )))
        }
    }
    Ok(())
}

/// An array or object: `open`, the items (each after `next`'s separator), `close`; empty
/// ones as `[]` / `{}` even with an indent.
fn container(
    len: usize,
    open: char,
    close: char,
    style: &Style,
    level: usize,
    out: &mut String,
    items: impl FnOnce(&mut String, &dyn Fn(&mut String, &mut bool)) -> Result<(), Error>,
) -> Result<(), Error> {
    out.push(open);
    if len == 0 {
        out.push(close);
        return Ok(());
    }
    let newline = |out: &mut String, depth: usize| {
        if let Some(indent) = &style.indent {
            out.push('\n');
            for _ in 0..depth {
                out.push_str(indent);
            }
        }
    };
    let next = |out: &mut String, first: &mut bool| {
        if !*first {
            out.push_str(&style.item_sep);
        }
        *first = false;
        newline(out, level + 1);
    };
    items(out, &next)?;
    newline(out, level);
    out.push(close);
    Ok(())
}

/// A dict key as Python's encoder writes it: strings as they are, numbers, booleans and None
/// as their JSON text; anything else is an error.
fn map_key(key: &Value) -> Result<String, Error> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or("").to_string()),
        ValueKind::Number => Ok(number(key)),
        ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.to_string()),
        ValueKind::None => Ok("null".to_string()),
        kind => Err(invalid(format!(
            "tojson: keys must be str, int, float, bool or None, not {kind}"
        ))),
    }
}

/// An integer as its digits, a float as Python's `float.__repr__`.
fn number(value: &Value) -> String {
    if value.is_integer() {
        return value.to_string();
    }
    match f64::try_from(value.clone()) {
        Ok(f) => float_repr(f),
        Err(_) => value.to_string(),
    }
}

/// Python's `repr(float)` (as json.dumps writes floats): the shortest digits that read back
/// as the same float, positional for exponents -4..16 (always with a `.`), else `1e+16`.
fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if f == 0.0 {
        return format!("{sign}0.0");
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "1.2345e3", "5e-7".
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        if exp < 0 {
            let zeros = "0".repeat(usize::try_from(-exp - 1).unwrap_or(0));
            format!("{sign}0.{zeros}{digits}")
        } else {
            let point = usize::try_from(exp).unwrap_or(0) + 1;
            if digits.len() <= point {
                let zeros = "0".repeat(point - digits.len());
                format!("{sign}{digits}{zeros}.0")
            } else {
                format!("{sign}{}.{}", &digits[..point], &digits[point..])
            }
        }
    } else {
        let (head, tail) = digits.split_at(1);
        let frac = if tail.is_empty() {
            String::new()
        } else {
            format!(".{tail}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{head}{frac}e{esign}{:02}", exp.abs())
    }
}

/// A JSON string as Python writes it: `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, other control
/// characters as `\u00XX`; with `ensure_ascii` every non-ASCII character as `\uXXXX` (a
/// surrogate pair above U+FFFF).
fn string(s: &str, ensure_ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if ensure_ascii && !c.is_ascii() => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::Environment;

    fn render(src: &str) -> String {
        let mut env = Environment::new();
        env.add_filter("tojson", tojson);
        env.render_str(src, ()).unwrap()
    }

    #[test]
    fn compact_like_json_dumps() {
        assert_eq!(
            render(r#"{{ {"a": [1, 2.5, none, true], "é<>": "x\"\n\u0001"} | tojson }}"#),
            r#"{"a": [1, 2.5, null, true], "é<>": "x\"\n\u0001"}"#
        );
        assert_eq!(
            render("{{ [] | tojson }}{{ {} | tojson(indent=2) }}"),
            "[]{}"
        );
    }

    #[test]
    fn indent_separators_sort_keys_and_ascii() {
        assert_eq!(
            render(r#"{{ {"b": 1, "a": [1, {}]} | tojson(indent=2, sort_keys=true) }}"#),
            "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": 1\n}"
        );
        assert_eq!(
            render(r#"{{ {"a": 1, "b": 2} | tojson(separators=(",", ":")) }}"#),
            r#"{"a":1,"b":2}"#
        );
        assert_eq!(
            render(r#"{{ "é😀" | tojson(ensure_ascii=true) }}"#),
            r#""\u00e9\ud83d\ude00""#
        );
    }

    #[test]
    fn floats_as_python_repr() {
        for (f, want) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5e-5, "-2.5e-05"),
            (1e16, "1e+16"),
            (123456789012345.6, "123456789012345.6"),
            (0.0001, "0.0001"),
            (-0.0, "-0.0"),
            (f64::INFINITY, "Infinity"),
        ] {
            assert_eq!(float_repr(f), want, "{f}");
        }
    }
}
