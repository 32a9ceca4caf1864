//! Flags → a resolved [`Config`]: the value parsers (range checks that reject, never clamp),
//! the `--compare` strategy specs, and the one step from parsed arguments to settings.

use super::values::{unescape, TopKArg};
use super::*;
use crate::config::{
    BeamConfig, ChatConfig, Command, Config, ConvertConfig, ConvertDtype, DraftConfig,
    EarlyStopping, FileType, GenerateConfig, OutputFormat, PerplexityConfig, PromptSource,
    QuantizeConfig, SamplingConfig, SpecChoice, SpeculativeConfig, StageKind, Strategy,
    StrategyKind, TemplateChoice, TokenizeConfig, VoteConfig, Window,
};

impl BeamArgs {
    fn into_config(self) -> Result<Option<BeamConfig>, String> {
        let Some(beams) = self.beams else {
            return Ok(None);
        };
        if self.num_return > beams {
            return Err(format!(
                "--num-return {} is more than --beams {beams}: beam search keeps only {beams} hypotheses",
                self.num_return
            ));
        }
        Ok(Some(BeamConfig {
            num_beams: beams as usize,
            num_return: self.num_return as usize,
            length_penalty: self.length_penalty,
            early_stopping: match self.early_stopping {
                EarlyStoppingArg::True => EarlyStopping::Eager,
                EarlyStoppingArg::False => EarlyStopping::Heuristic,
                EarlyStoppingArg::Never => EarlyStopping::Never,
            },
            no_repeat_ngram: self.no_repeat_ngram.map(|n| n as usize),
        }))
    }
}

impl SamplingArgs {
    fn into_config(self) -> SamplingConfig {
        SamplingConfig {
            temperature: if self.greedy { 0.0 } else { self.temperature },
            top_k: match self.top_k {
                TopKArg::Off => None,
                TopKArg::K(k) => Some(k),
            },
            top_p: self.top_p,
            min_p: self.min_p,
            typical_p: self.typical_p,
            repeat_penalty: self.repeat_penalty,
            repeat_window: match self.repeat_last_n {
                0 => None,
                n if n < 0 => Some(Window::All),
                n => Some(Window::Last(n as usize)),
            },
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            logit_bias: self.logit_bias,
            seed: self.seed.and_then(|s| s.0),
            order: self
                .samplers
                .map_or_else(|| StageKind::DEFAULT_ORDER.to_vec(), |l| l.0),
            min_keep: self.min_keep as usize,
        }
    }
}

impl TemplateArgs {
    /// `--raw` wins (clap refuses it with `--chat-template-file`), then the file.
    fn choice(self, raw: bool) -> TemplateChoice {
        match (raw, self.chat_template_file) {
            (true, _) => TemplateChoice::Raw,
            (false, Some(path)) => TemplateChoice::File(path),
            (false, None) => TemplateChoice::Model,
        }
    }
}

impl SpeculativeArgs {
    fn into_config(self) -> Result<Option<SpeculativeConfig>, String> {
        let draft = match (self.lookup, self.model_draft) {
            (true, _) => DraftConfig::Lookup {
                ngram: self.lookup_ngram as usize,
            },
            (false, Some(m)) => DraftConfig::Model(m),
            (false, None) => {
                let given = [
                    (self.draft_max.is_some(), "--draft-max"),
                    (self.draft_min.is_some(), "--draft-min"),
                    (self.draft_p_min.is_some(), "--draft-p-min"),
                    (self.draft_verify.is_some(), "--draft-verify"),
                ];
                if let Some((_, flag)) = given.iter().find(|(set, _)| *set) {
                    return Err(format!(
                        "{flag} is a speculative decoding setting: add --lookup or --model-draft MODEL"
                    ));
                }
                return Ok(None);
            }
        };
        if self.draft_p_min.is_some() && matches!(draft, DraftConfig::Lookup { .. }) {
            return Err(
                "--draft-p-min is about a draft model's own probabilities: it needs --model-draft, not --lookup"
                    .into(),
            );
        }
        let draft_max = self
            .draft_max
            .map_or(crate::config::DEFAULT_DRAFT_MAX, |n| n as usize);
        let draft_min = self.draft_min.unwrap_or(0) as usize;
        if draft_min > draft_max {
            return Err(format!(
                "--draft-min {draft_min} is more than --draft-max {draft_max}: no draft would ever be verified"
            ));
        }
        Ok(Some(SpeculativeConfig {
            draft,
            draft_max,
            draft_min,
            p_min: self.draft_p_min.unwrap_or(0.0),
            rejection: self.draft_verify == Some(DraftVerifyArg::Rejection),
        }))
    }
}

impl ChatArgs {
    fn into_config(self) -> Result<ChatConfig, String> {
        if self.sampling.explain.is_some() {
            return Err("--explain is for single runs of `gen`, not `gen chat`".into());
        }
        if self.sampling.logprobs.is_some() && matches!(self.format, ChatFormatArg::Text) {
            return Err(
                "--logprobs in `gen chat` needs --format jsonl (they are part of each turn's record)"
                    .into(),
            );
        }
        let logprobs = self.sampling.logprobs.map(|n| n as usize);
        let sampling = self.sampling.into_config();
        Ok(ChatConfig {
            generate: GenerateConfig {
                model: self.model.model,
                prompt: PromptSource {
                    max_bytes: self.input_limit.max_prompt_bytes,
                    ..PromptSource::default()
                },
                max_tokens: self.max_tokens,
                ignore_eos: false,
                special: false,
                ctx_size: self.ctx_size.map(|c| c as usize),
                batch_size: self.batch_size as usize,
                cache_type: self.cache_type.map(CacheTypeArg::dtype),
                arith: self.arith.arithmetic(),
                format: match self.format {
                    ChatFormatArg::Text => OutputFormat::Text,
                    ChatFormatArg::Jsonl => OutputFormat::Jsonl,
                },
                verbose: self.verbose,
                quiet: false,
                sampling,
                logprobs,
                explain: None,
                each_line: false,
                system: self.system.map(|s| unescape(&s)),
                template: self.template.choice(false),
                print_prompt: false,
                compare: None,
                compare_sequential: false,
                stop: self.stop.iter().map(|s| unescape(s)).collect(),
                keep_stop: false,
                beam: None,
                samples: None,
                vote: None,
                speculative: self.speculative.into_config()?,
            },
            history: !self.no_history,
        })
    }
}

impl QuantTypeArg {
    fn file_type(self) -> FileType {
        use QuantTypeArg as A;
        match self {
            A::Q4_0 => FileType::Q4_0,
            A::Q4_1 => FileType::Q4_1,
            A::Q5_0 => FileType::Q5_0,
            A::Q5_1 => FileType::Q5_1,
            A::Q8_0 => FileType::Q8_0,
            A::Q2_K => FileType::Q2_K,
            A::Q3_K_S => FileType::Q3_K_S,
            A::Q3_K_M => FileType::Q3_K_M,
            A::Q3_K_L => FileType::Q3_K_L,
            A::Q4_K_S => FileType::Q4_K_S,
            A::Q4_K_M => FileType::Q4_K_M,
            A::Q5_K_S => FileType::Q5_K_S,
            A::Q5_K_M => FileType::Q5_K_M,
            A::Q6_K => FileType::Q6_K,
            A::F16 => FileType::F16,
            A::BF16 => FileType::BF16,
            A::F32 => FileType::F32,
        }
    }
}

impl CacheTypeArg {
    fn dtype(self) -> candle_core::DType {
        match self {
            CacheTypeArg::F32 => candle_core::DType::F32,
            CacheTypeArg::F16 => candle_core::DType::F16,
        }
    }
}

impl Cli {
    /// Validates the flags and resolves them into a [`Config`].
    pub fn into_config(self) -> Result<Config, String> {
        Ok(match self.command {
            Some(SubCommand::Convert(a)) => Config {
                threads: None,
                command: Command::Convert(ConvertConfig {
                    input: a.input,
                    output: a.output,
                    force: a.force,
                    dtype: a.dtype.map(|d| match d {
                        DtypeArg::F32 => ConvertDtype::F32,
                        DtypeArg::F16 => ConvertDtype::F16,
                        DtypeArg::Bf16 => ConvertDtype::Bf16,
                        DtypeArg::Q8_0 => ConvertDtype::Q8_0,
                        DtypeArg::Auto => ConvertDtype::Auto,
                    }),
                }),
            },
            Some(SubCommand::Quantize(a)) => Config {
                threads: a.threads.map(usize::from),
                command: Command::Quantize(QuantizeConfig {
                    input: a.input,
                    output: a.output,
                    file_type: a.file_type.file_type(),
                    force: a.force,
                    verbose: a.verbose,
                }),
            },
            Some(SubCommand::Tokenize(a)) => Config {
                threads: a.model.threads.map(usize::from),
                command: Command::Tokenize(TokenizeConfig {
                    model: a.model.model,
                    text: PromptSource {
                        text: a.text,
                        file: a.file,
                        max_bytes: a.input_limit.max_prompt_bytes,
                    },
                    json: a.json,
                    verbose: a.verbose,
                }),
            },
            Some(SubCommand::Perplexity(a)) => Config {
                threads: a.model.threads.map(usize::from),
                command: Command::Perplexity(PerplexityConfig {
                    model: a.model.model,
                    file: a.file,
                    max_bytes: a.input_limit.max_prompt_bytes,
                    context: a.context as usize,
                    cache_type: a.cache_type.map(CacheTypeArg::dtype),
                    arith: a.arith.arithmetic(),
                    json: a.json,
                }),
            },
            Some(SubCommand::Chat(a)) => Config {
                threads: a.model.threads.map(usize::from),
                command: Command::Chat(Box::new(a.into_config()?)),
            },
            None => {
                let mut g = self.generate;
                // `--compare all "Once upon a time"`: the strategy list ends at the first value
                // that is not a strategy, and what follows is the prompt.
                if let Some(at) = g.compare.iter().position(|v| !is_strategy(v)) {
                    let rest = g.compare.split_off(at);
                    if rest.len() > 1 || g.positional.is_some() || g.prompt.is_some() {
                        return Err(format!(
                            "--compare: '{}' is not a strategy: give greedy, all, beams=N or key=value settings such as temperature=0.7,top_p=0.95 (keys: {KEYS})",
                            rest[0]
                        ));
                    }
                    g.positional = rest.into_iter().next();
                }
                if g.positional.is_some() && g.prompt.is_some() {
                    return Err(
                        "give the prompt once: as an argument or with --prompt (piped stdin or --file may come with either)"
                            .into(),
                    );
                }
                let escape = |s: String| if g.no_escape { s } else { unescape(&s) };
                let prompt = PromptSource {
                    text: g.positional.or(g.prompt).map(escape),
                    file: g.file,
                    max_bytes: g.input_limit.max_prompt_bytes,
                };
                let stop: Vec<String> = g.stop.into_iter().map(escape).collect();
                let system = g.system.map(escape);
                let logprobs = g.sampling.logprobs.map(|n| n as usize);
                let explain = g.sampling.explain.map(|n| n as usize);
                let sampling = g.sampling.into_config();
                let speculative = g.speculative.into_config()?;
                if g.vote && g.samples.is_some_and(|n| n < 2) {
                    return Err(
                        "--vote needs --samples 2 or more: a single sample has no majority to find"
                            .into(),
                    );
                }
                if explain.is_some() && speculative.as_ref().is_some_and(|s| s.rejection) {
                    return Err(
                        "--explain shows the sampler chain's draw, which --draft-verify rejection replaces for drafted tokens; use --draft-verify match"
                            .into(),
                    );
                }
                let compare = if g.compare.is_empty() {
                    None
                } else {
                    Some(parse_strategies(&g.compare, &sampling)?)
                };
                Config {
                    threads: g.model.threads.map(usize::from),
                    command: Command::Generate(Box::new(GenerateConfig {
                        model: g.model.model,
                        prompt,
                        max_tokens: g.max_tokens,
                        ignore_eos: g.ignore_eos,
                        special: g.special,
                        ctx_size: g.ctx_size.map(|c| c as usize),
                        batch_size: g.batch_size as usize,
                        cache_type: g.cache_type.map(CacheTypeArg::dtype),
                        arith: g.arith.arithmetic(),
                        format: match g.format {
                            FormatArg::Text => OutputFormat::Text,
                            FormatArg::Json => OutputFormat::Json,
                            FormatArg::Jsonl => OutputFormat::Jsonl,
                        },
                        verbose: g.verbose,
                        quiet: g.quiet,
                        logprobs,
                        explain,
                        sampling,
                        beam: g.beam.into_config()?,
                        stop,
                        keep_stop: g.keep_stop,
                        each_line: g.each_line,
                        compare,
                        compare_sequential: g.compare_sequential,
                        system,
                        template: g.template.choice(g.raw),
                        print_prompt: g.print_prompt,
                        samples: g.samples.map(|n| n as usize),
                        vote: g.vote.then_some(VoteConfig {
                            answer_regex: g.answer_regex,
                        }),
                        speculative,
                    })),
                }
            }
        })
    }
}

/// The strategies of `--compare all`: greedy, pure sampling, top-k, top-p, min-p, beam search.
pub const PRESET_ALL: [&str; 6] = [
    "greedy",
    "temperature=1",
    "top_k=40",
    "top_p=0.95",
    "min_p=0.1",
    "beams=4",
];

const KEYS: &str = "temperature, top_k, top_p, min_p, typical_p, beams, length_penalty, spec";

/// Whether a `--compare` value is meant as a strategy (`all`, `greedy`, or `key=value`
/// settings without spaces) rather than the prompt that follows the list. A value that looks
/// like settings but has a mistake stays a strategy, so that it is reported.
fn is_strategy(v: &str) -> bool {
    let v = v.trim();
    v == "all" || v == "greedy" || (v.contains('=') && !v.contains(char::is_whitespace))
}

/// Parses the `--compare` arguments. A sampling spec starts from pure sampling (temperature 1,
/// no filters) and sets only what it names; penalties, logit bias and the seed come from `base`.
pub fn parse_strategies(specs: &[String], base: &SamplingConfig) -> Result<Vec<Strategy>, String> {
    let mut expanded: Vec<String> = Vec::new();
    for s in specs {
        if s.trim().is_empty() {
            return Err(
                "--compare: a strategy is empty; give greedy, all, beams=N or key=value settings"
                    .into(),
            );
        }
        if s.trim() == "all" {
            expanded.extend(PRESET_ALL.iter().map(|p| p.to_string()));
        } else {
            expanded.push(s.trim().to_string());
        }
    }
    if expanded.is_empty() {
        return Err("--compare needs at least one strategy (or `all`)".into());
    }
    expanded.iter().map(|s| parse_one(s, base)).collect()
}

fn parse_one(spec: &str, base: &SamplingConfig) -> Result<Strategy, String> {
    let bad = |why: String| format!("--compare strategy '{spec}': {why}");
    let mut cfg = SamplingConfig {
        temperature: 1.0,
        top_k: None,
        top_p: 1.0,
        min_p: 0.0,
        typical_p: 1.0,
        ..base.clone()
    };
    let mut beams: Option<usize> = None;
    let mut length_penalty = 1.0f32;
    let mut speculative = None;
    for part in spec.split(',').filter(|p| !p.trim().is_empty()) {
        if part.trim() == "greedy" {
            cfg.temperature = 0.0;
            continue;
        }
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| bad(format!("expected key=value or `greedy`; keys: {KEYS}")))?;
        let k = k.trim().replace('-', "_");
        let num = |v: &str| -> Result<f32, String> {
            v.trim()
                .parse::<f32>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| bad(format!("'{v}' is not a number")))
        };
        match k.as_str() {
            "temperature" | "temp" => cfg.temperature = num(v)?,
            "top_k" => {
                cfg.top_k = Some(
                    v.trim()
                        .parse::<usize>()
                        .map_err(|_| bad("top_k must be a whole number ≥ 1".into()))?,
                )
            }
            "top_p" => cfg.top_p = num(v)?,
            "typical_p" => cfg.typical_p = num(v)?,
            "min_p" => cfg.min_p = num(v)?,
            "beams" => match v.trim().parse::<usize>() {
                Ok(n) if n >= 1 => beams = Some(n),
                _ => return Err(bad("beams must be a whole number ≥ 1".into())),
            },
            "length_penalty" => length_penalty = num(v)?,
            "spec" => {
                speculative = Some(match v.trim() {
                    "lookup" => SpecChoice::Lookup,
                    "draft" => SpecChoice::Draft,
                    _ => {
                        return Err(bad(
                            "spec is `lookup` or `draft` (with --model-draft)".into()
                        ))
                    }
                })
            }
            other => return Err(bad(format!("unknown key '{other}'; keys: {KEYS}"))),
        }
    }
    crate::sampling::validate(&cfg).map_err(|e| bad(format!("{e:#}")))?;
    let kind = match beams {
        Some(n) => {
            if cfg.temperature != 1.0 || cfg.top_k.is_some() || cfg.top_p != 1.0 || cfg.min_p != 0.0
            {
                return Err(bad(
                    "beam search cannot be combined with sampling keys".into()
                ));
            }
            StrategyKind::Beam(BeamConfig {
                num_beams: n,
                num_return: 1,
                length_penalty,
                early_stopping: EarlyStopping::Heuristic,
                no_repeat_ngram: None,
            })
        }
        None => StrategyKind::Sample(cfg),
    };
    if speculative.is_some() && matches!(kind, StrategyKind::Beam(_)) {
        return Err(bad(
            "beam search cannot speculate; spec= is for sampling strategies".into(),
        ));
    }
    Ok(Strategy {
        label: spec.into(),
        kind,
        speculative,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_and_presets() {
        let base = SamplingConfig::default();
        let all = parse_strategies(&["all".into()], &base).unwrap();
        assert_eq!(all.len(), 6);
        let StrategyKind::Sample(c) = &all[3].kind else {
            panic!()
        };
        assert_eq!(
            (c.temperature, c.top_k, c.top_p, c.min_p),
            (1.0, None, 0.95, 0.0)
        );
        let s = parse_strategies(
            &["temperature=0.7,top_p=0.9".into(), "beams=3".into()],
            &base,
        )
        .unwrap();
        let StrategyKind::Sample(c) = &s[0].kind else {
            panic!()
        };
        assert_eq!((c.temperature, c.top_p), (0.7, 0.9));
        assert!(matches!(&s[1].kind, StrategyKind::Beam(b) if b.num_beams == 3));
        for bad in [
            "nucleus",
            "top_p=2",
            "colour=1",
            "beams=0",
            "beams=2,top_k=3",
        ] {
            let e = parse_strategies(&[bad.into()], &base).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }
}
