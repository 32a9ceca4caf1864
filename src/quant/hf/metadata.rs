//! The `general.*` keys convert_hf_to_gguf.py derives from a folder (gguf-py's `Metadata`):
//! sampling defaults from `generation_config.json`, then the model's name, basename, finetune,
//! version and size label, guessed from `_name_or_path` in `config.json` (when it looks like a
//! Hub id) and then from the folder's own name, with a size label counted from the weights
//! when neither says one. The model card (README.md front matter) is not read: see
//! [`super::Conversion::notes`].

use crate::quant::gguf::{Kv, Value};
use regex::Regex;
use serde_json::Value as Json;
use std::sync::LazyLock;

/// `general.sampling.*` from generation_config.json, in the order gguf-py writes them.
pub fn sampling(gen_config: &Json) -> Vec<Kv> {
    enum Kind {
        Str,
        I32,
        F32,
    }
    // (key, generation_config names in order of preference, type)
    let fields: [(&str, &[&str], Kind); 12] = [
        ("sequence", &["sequence"], Kind::Str),
        ("top_k", &["top_k"], Kind::I32),
        ("top_p", &["top_p"], Kind::F32),
        ("min_p", &["min_p"], Kind::F32),
        ("xtc_probability", &["xtc_probability"], Kind::F32),
        ("xtc_threshold", &["xtc_threshold"], Kind::F32),
        ("temp", &["temperature"], Kind::F32),
        ("penalty_last_n", &["penalty_last_n"], Kind::I32),
        (
            "penalty_repeat",
            &["penalty_repeat", "repetition_penalty"],
            Kind::F32,
        ),
        ("mirostat", &["mirostat"], Kind::I32),
        ("mirostat_tau", &["mirostat_tau"], Kind::F32),
        ("mirostat_eta", &["mirostat_eta"], Kind::F32),
    ];
    let mut out = Vec::new();
    for (key, names, kind) in fields {
        // gguf-py's `get(name, default)` chain: the first name present wins, even when null.
        let Some(v) = names.iter().find_map(|n| gen_config.get(n)) else {
            continue;
        };
        let value = match kind {
            Kind::Str => v.as_str().map(Value::str),
            Kind::I32 => v.as_i64().map(|i| Value::i32(i as i32)),
            Kind::F32 => v.as_f64().map(|f| Value::f32(f as f32)),
        };
        if let Some(value) = value {
            out.push(Kv {
                key: format!("general.sampling.{key}"),
                value,
            });
        }
    }
    out
}

/// The name keys: `general.name`, `version`, `organization`, `finetune`, `basename`,
/// `size_label`, in the order gguf-py writes them.
pub fn names(raw_config: &Json, folder_name: &str, total_params: u64) -> Vec<Kv> {
    let mut m = Names::default();
    if let Some(id) = raw_config.get("_name_or_path").and_then(Json::as_str) {
        // Only a Hub id (`org/name` or `name`), not a path on someone's disk.
        if id.matches('/').count() <= 1 {
            m.fill(&components(id, total_params));
        }
    }
    m.fill(&components(folder_name, total_params));
    let name = m.name.unwrap_or_else(|| folder_name.to_string());
    let size_label = m
        .size_label
        .or_else(|| (total_params > 0).then(|| rounded_count(total_params)));
    let mut out = vec![kv("general.name", &name)];
    let optional = [
        ("general.version", m.version),
        ("general.organization", m.organization),
        ("general.finetune", m.finetune),
        ("general.basename", m.basename),
        ("general.size_label", size_label),
    ];
    for (key, v) in optional {
        if let Some(v) = v {
            out.push(kv(key, &v));
        }
    }
    out
}

fn kv(key: &str, v: &str) -> Kv {
    Kv {
        key: key.to_string(),
        value: Value::str(v),
    }
}

#[derive(Default)]
struct Names {
    name: Option<String>,
    organization: Option<String>,
    basename: Option<String>,
    finetune: Option<String>,
    version: Option<String>,
    size_label: Option<String>,
}

impl Names {
    /// Sets what is still unset from one model id's components.
    fn fill(&mut self, c: &Components) {
        let set = |slot: &mut Option<String>, v: &Option<String>| {
            if slot.is_none() {
                slot.clone_from(v);
            }
        };
        set(&mut self.name, &c.full_name.as_deref().map(id_to_title));
        set(
            &mut self.organization,
            &c.organization.as_deref().map(id_to_title),
        );
        set(&mut self.basename, &c.basename);
        set(&mut self.finetune, &c.finetune);
        set(&mut self.version, &c.version);
        set(&mut self.size_label, &c.size_label);
    }
}

/// What gguf-py's `get_model_id_components` reads out of a model id.
#[derive(Debug, Default, PartialEq)]
struct Components {
    full_name: Option<String>,
    organization: Option<String>,
    basename: Option<String>,
    finetune: Option<String>,
    version: Option<String>,
    size_label: Option<String>,
}

static VERSION: LazyLock<Regex> = LazyLock::new(|| re(r"(v|iter)?\d+([.]\d+)*"));
static QUANT_TYPE: LazyLock<Regex> = LazyLock::new(|| re(r"i?q\d(_\w)*|b?fp?(16|32)"));
static SIZE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(([A]|\d+[x])?\d+([._]\d+)?[KMBT][\d]?|small|mini|medium|large|x?xl)"));
static FINETUNE: LazyLock<Regex> = LazyLock::new(|| re(r"chat|instruct|vision|lora"));
static NOT_TITLED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(v\d+(?:\.\d+)*|\d.*)$").unwrap_or_else(|_| unreachable!("a valid pattern"))
});

/// A case-insensitive whole-string match (Python's `re.fullmatch(p, s, re.IGNORECASE)`).
fn re(p: &str) -> Regex {
    // The patterns are constants of this file, each compiled by the unit tests.
    Regex::new(&format!("(?i)^(?:{p})$")).unwrap_or_else(|_| unreachable!("a valid pattern"))
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Part {
    Basename,
    SizeLabel,
    Finetune,
    Version,
    Type,
}

fn components(model_id: &str, total_params: u64) -> Components {
    if model_id.contains(' ') {
        return Components {
            full_name: Some(model_id.to_string()),
            ..Default::default()
        };
    }
    let (mut org, full) = match model_id.split_once('/') {
        Some((o, n)) => (Some(o.to_string()), n.to_string()),
        None => (None, model_id.to_string()),
    };
    if org.as_deref().is_some_and(|o| o.starts_with('.')) {
        org = None;
    }
    let mut parts: Vec<String> = full
        .split('-')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    let mut types: Vec<Vec<Part>> = vec![Vec::new(); parts.len()];
    let add = |t: &mut Vec<Part>, p: Part| {
        if !t.contains(&p) {
            t.push(p);
        }
    };
    for i in 0..parts.len() {
        let part = parts[i].clone();
        if VERSION.is_match(&part) {
            add(&mut types[i], Part::Version);
        } else if QUANT_TYPE.is_match(&part) {
            add(&mut types[i], Part::Type);
            parts[i] = part.to_uppercase();
        } else if i > 0 && SIZE.is_match(&part) {
            let mut p: Vec<char> = part.replace('_', ".").chars().collect();
            // bloom-7b1 → 7.1B
            if p.last().is_some_and(|c| c.is_ascii_digit()) && p.len() >= 2 {
                let n = p.len();
                let (a, b) = (p[n - 2], p[n - 1]);
                p.truncate(n - 2);
                p.extend(['.', b, a]);
            }
            let n = p.len();
            if n > 1 && p[n - 2].is_ascii_digit() && "kmbt".contains(p[n - 1]) {
                p[n - 1] = p[n - 1].to_ascii_uppercase();
            }
            let mut part: String = p.iter().collect();
            if total_params != 0 {
                let last = part.chars().last().unwrap_or(' ');
                let scale = " KMBT".find(last);
                let number: Option<f64> = part[..part.len() - last.len_utf8()].parse().ok();
                if let Some(number) = number {
                    // Python's `pow(1000, -1)` when the suffix is not one of " KMBT".
                    let label = number * scale.map_or(0.001, |s| 1000f64.powi(s as i32));
                    let total = total_params as f64;
                    // Far from the weights' count: a context length ("8k"), not a size.
                    if (label - total).abs() > (7 * total_params / 8) as f64 {
                        add(&mut types[i], Part::Finetune);
                        let lower = last.to_lowercase().to_string();
                        part = format!("{}{lower}", &part[..part.len() - last.len_utf8()]);
                    }
                }
            }
            if types[i].is_empty() {
                add(&mut types[i], Part::SizeLabel);
            }
            parts[i] = part;
        } else if i > 0 && FINETUNE.is_match(&part) {
            add(&mut types[i], Part::Finetune);
        }
    }
    // Word sizes ("small") give way to a numeric one.
    let numeric_size = parts
        .iter()
        .zip(&types)
        .any(|(n, t)| t.contains(&Part::SizeLabel) && n.chars().any(|c| c.is_ascii_digit()));
    if numeric_size {
        for (n, t) in parts.iter().zip(types.iter_mut()) {
            if t.contains(&Part::SizeLabel) && n.chars().all(char::is_alphabetic) {
                t.retain(|&p| p != Part::SizeLabel);
            }
        }
    }
    let mut at_start = true;
    for (part, t) in parts.iter().zip(types.iter_mut()) {
        let alpha_first = part.chars().next().is_some_and(char::is_alphabetic);
        if at_start && ((t.is_empty() && alpha_first) || t.contains(&Part::Version)) {
            add(t, Part::Basename);
        } else {
            at_start = false;
            if t.is_empty() {
                add(t, Part::Finetune);
            }
        }
    }
    // A trailing version is not part of the basename.
    for t in types.iter_mut().rev() {
        if t.contains(&Part::Basename) && t.len() > 1 {
            t.retain(|&p| p != Part::Basename);
        } else {
            break;
        }
    }
    let join = |want: Part, exclude: Option<Part>, dedup: bool| -> Option<String> {
        let mut picked: Vec<&str> = Vec::new();
        for (n, t) in parts.iter().zip(&types) {
            if t.contains(&want)
                && !exclude.is_some_and(|x| t.contains(&x))
                && !(dedup && picked.contains(&n.as_str()))
            {
                picked.push(n);
            }
        }
        (!picked.is_empty()).then(|| picked.join("-"))
    };
    let mut basename = join(Part::Basename, None, false);
    let size_label = join(Part::SizeLabel, None, true);
    let finetune = join(Part::Finetune, None, false);
    let version = join(Part::Version, Some(Part::Basename), false);
    if size_label.is_none() && finetune.is_none() && version.is_none() {
        basename = None; // too ambiguous to say anything
    }
    Components {
        full_name: Some(full),
        organization: org,
        basename,
        finetune,
        version,
        size_label,
    }
}

/// gguf-py's `id_to_title`: dashes to spaces, all-lowercase words title-cased unless they
/// are versions or start with a digit.
fn id_to_title(s: &str) -> String {
    s.trim()
        .replace('-', " ")
        .split_whitespace()
        .map(|w| {
            if is_lower(w) && !NOT_TITLED.is_match(w) {
                title(w)
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Python's `str.islower`: at least one cased character, and none uppercase.
fn is_lower(w: &str) -> bool {
    w.chars().any(char::is_lowercase) && !w.chars().any(char::is_uppercase)
}

/// Python's `str.title`: a letter after a non-letter is uppercased, the others lowercased.
fn title(w: &str) -> String {
    let mut out = String::new();
    let mut prev_cased = false;
    for c in w.chars() {
        let cased = c.is_lowercase() || c.is_uppercase();
        if cased && !prev_cased {
            out.extend(c.to_uppercase());
        } else if cased {
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
        prev_cased = cased;
    }
    out
}

/// gguf-py's `model_weight_count_rounded_notation(n, min_digits=2)`: "135M", "1.7B", "26M".
fn rounded_count(n: u64) -> String {
    let x = n as f64;
    let (scaled, suffix) = if x > 1e12 {
        (x * 1e-12, "T")
    } else if x > 1e9 {
        (x * 1e-9, "B")
    } else if x > 1e6 {
        (x * 1e-6, "M")
    } else {
        (x * 1e-3, "K")
    };
    // Python's round() is half-to-even; only the digit count matters here.
    let digits = format!("{}", scaled.round_ties_even() as u64);
    let significant = digits.trim_start_matches('0').len();
    let fix = 2usize.saturating_sub(significant);
    format!("{scaled:.fix$}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tests/oracle/gguf_names.json: gguf-py's own answers (gguf_names.py).
    fn oracle() -> Json {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oracle/gguf_names.json");
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    }

    #[test]
    fn model_ids_split_as_gguf_py_splits_them() {
        let o = oracle();
        let cases = o["components"].as_array().unwrap();
        assert!(cases.len() >= 100);
        let mut wrong = Vec::new();
        for case in cases {
            let id = case["id"].as_str().unwrap();
            let total = case["total_params"].as_u64().unwrap();
            let got = components(id, total);
            let want = |k: &str| case[k].as_str().map(str::to_string);
            let want = Components {
                full_name: want("full_name"),
                organization: want("organization"),
                basename: want("basename"),
                finetune: want("finetune"),
                version: want("version"),
                size_label: want("size_label"),
            };
            if got != want {
                wrong.push(format!("{id} ({total}): gen {got:?}, gguf-py {want:?}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn titles_and_counts_follow_gguf_py() {
        let o = oracle();
        for (id, want) in o["titles"].as_object().unwrap() {
            assert_eq!(id_to_title(id), want.as_str().unwrap(), "{id}");
        }
        for (n, want) in o["counts"].as_object().unwrap() {
            assert_eq!(
                rounded_count(n.parse().unwrap()),
                want.as_str().unwrap(),
                "{n}"
            );
        }
    }
}
