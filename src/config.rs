//! Every plain resolved setting, free of clap and of the rest of the crate (it imports nothing
//! from it), so tests and benches build settings directly. Settings flow one way: flags
//! ([`crate::cli`]) → these → the engine's parameters, each built once.

use crate::kernels::ggml::Arithmetic;
use candle_core::DType;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Everything one run of `gen` needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// CPU threads; `None` uses every core.
    pub threads: Option<usize>,
    pub command: Command,
}

/// What to do.
#[derive(Debug, Clone)]
pub enum Command {
    Generate(Box<GenerateConfig>),
    Convert(ConvertConfig),
    Tokenize(TokenizeConfig),
    Perplexity(PerplexityConfig),
    Chat(Box<ChatConfig>),
    Quantize(QuantizeConfig),
}

/// Where the prompt text comes from. Piped stdin comes first, then `text` (as `llm` does);
/// `file` replaces stdin (`-` names stdin explicitly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptSource {
    /// `--prompt` or the positional argument.
    pub text: Option<String>,
    /// `--file`; `-` is stdin.
    pub file: Option<PathBuf>,
    /// At most this many bytes are read from a file or stdin (`--max-prompt-bytes`), so that
    /// `-f /dev/zero` or `yes | gen` is an error at once rather than memory exhausted.
    pub max_bytes: u64,
}

/// The default of `--max-prompt-bytes`: 64 MiB, far more than any model's context holds.
pub const DEFAULT_MAX_PROMPT_BYTES: u64 = 64 << 20;

impl Default for PromptSource {
    fn default() -> Self {
        Self {
            text: None,
            file: None,
            max_bytes: DEFAULT_MAX_PROMPT_BYTES,
        }
    }
}

/// How results are written to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Only the generated text, streamed.
    Text,
    /// One JSON object at the end (an array of them with `--each-line`).
    Json,
    /// One JSON object per line: per prompt with `--each-line`.
    Jsonl,
}

/// Which chat template prompts go through.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TemplateChoice {
    /// The model's own (`tokenizer.chat_template`), when it has one; else plain text.
    #[default]
    Model,
    /// The template in this file (`--chat-template-file`), instead of the model's.
    File(PathBuf),
    /// None: the prompt is sent as plain text (`--raw`).
    Raw,
}

/// Settings for text generation.
#[derive(Debug, Clone)]
pub struct GenerateConfig {
    /// `--model` as given; `None` means the default model.
    pub model: Option<String>,
    pub prompt: PromptSource,
    /// `usize::MAX` for no limit (`-n -1`).
    pub max_tokens: usize,
    pub ignore_eos: bool,
    /// Show control tokens in the text (`--special`).
    pub special: bool,
    pub ctx_size: Option<usize>,
    pub batch_size: usize,
    /// `--cache-type`: what the KV cache stores; `None` is the model format's default.
    pub cache_type: Option<DType>,
    /// `--no-repack`: whose order a GGUF file's products sum in.
    pub arith: Arithmetic,
    pub format: OutputFormat,
    pub verbose: bool,
    pub quiet: bool,
    /// The sampler chain's settings.
    pub sampling: SamplingConfig,
    /// `--logprobs N`: report this many alternatives per token.
    pub logprobs: Option<usize>,
    /// `--explain N`: trace this many top candidates through the chain at every step.
    pub explain: Option<usize>,
    /// Every input line is a prompt of its own (`--each-line`).
    pub each_line: bool,
    /// A system message for the chat template (`--system`).
    pub system: Option<String>,
    /// Which chat template prompts go through (`--raw`, `--chat-template-file`).
    pub template: TemplateChoice,
    /// Print the model input and stop, without generating (`--print-prompt`).
    pub print_prompt: bool,
    /// `--compare`: run these strategies on the same prompt instead of one.
    pub compare: Option<Vec<Strategy>>,
    /// `--compare-sequential`: run the compared sampling strategies one after another instead
    /// of as one batch.
    pub compare_sequential: bool,
    /// Stop strings (`--stop`).
    pub stop: Vec<String>,
    /// Print the matched stop string (`--keep-stop`).
    pub keep_stop: bool,
    /// Beam search instead of sampling (`--beams`); penalties and logit bias come from
    /// `sampling`.
    pub beam: Option<BeamConfig>,
    /// `--samples N`: N samples from one prefill, sample i seeded with seed + i.
    pub samples: Option<usize>,
    /// `--vote` (with `--samples`): how answers are found; `None` is no vote.
    pub vote: Option<VoteConfig>,
    /// `--lookup` or `--model-draft`: speculative decoding.
    pub speculative: Option<SpeculativeConfig>,
}

/// Where speculative drafts come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DraftConfig {
    /// `--lookup`: prompt lookup, matching n-grams of up to this many tokens.
    Lookup { ngram: usize },
    /// `--model-draft`: a draft model, as a `--model` value.
    Model(String),
}

/// Speculative decoding (`--lookup` or `--model-draft`, `--draft-max`, `--draft-min`,
/// `--draft-p-min`, `--draft-verify`).
#[derive(Debug, Clone, PartialEq)]
pub struct SpeculativeConfig {
    pub draft: DraftConfig,
    /// Most tokens proposed per verify pass.
    pub draft_max: usize,
    /// Drafts shorter than this are not verified.
    pub draft_min: usize,
    /// A draft model stops at a token its softmax gives less than this.
    pub p_min: f32,
    /// Leviathan et al.'s rejection sampling instead of sample-and-match.
    pub rejection: bool,
}

/// What `--draft-max` is when not given (transformers' `prompt_lookup_num_tokens`).
pub const DEFAULT_DRAFT_MAX: usize = 10;

/// Self-consistency voting over the samples (`--vote`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteConfig {
    /// `--answer-regex`: the answer is its last match (first group); `None`: the default rules.
    pub answer_regex: Option<String>,
}

/// Settings for `gen chat`: those of generation (model, sampler chain, `--system`, context,
/// stop strings, `max_tokens` per answer, the output format of scripted sessions) and its own.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    pub generate: GenerateConfig,
    /// Keep the input history in the user's data folder (off with `--no-history`).
    pub history: bool,
}

/// Settings for beam search.
#[derive(Debug, Clone, PartialEq)]
pub struct BeamConfig {
    pub num_beams: usize,
    pub num_return: usize,
    pub length_penalty: f32,
    pub early_stopping: EarlyStopping,
    pub no_repeat_ngram: Option<usize>,
}

/// Settings for `gen convert`.
#[derive(Debug, Clone)]
pub struct ConvertConfig {
    /// A GGUF file (written as a folder) or a Hugging Face folder (written as a GGUF file).
    pub input: PathBuf,
    pub output: PathBuf,
    /// `--dtype`; unset: f32 for a folder, the converter's `auto` for a GGUF file.
    pub dtype: Option<ConvertDtype>,
    /// Write into `output` even when it already holds files (`--force`).
    pub force: bool,
}

/// `gen convert --dtype`: the weights' type in the written folder or GGUF file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvertDtype {
    F32,
    F16,
    Bf16,
    /// GGUF output only (convert_hf_to_gguf.py's `--outtype q8_0`).
    Q8_0,
    /// GGUF output only: bf16 when the weights are bf16, else f16 (the converter's default).
    Auto,
}

/// Settings for `gen tokenize`.
#[derive(Debug, Clone)]
pub struct TokenizeConfig {
    pub model: Option<String>,
    /// The text, a file or stdin (the prompt's rules).
    pub text: PromptSource,
    pub json: bool,
    /// `-v`: name the tokenizer that was built on stderr.
    pub verbose: bool,
}

/// Settings for `gen perplexity`.
#[derive(Debug, Clone)]
pub struct PerplexityConfig {
    pub model: Option<String>,
    pub file: PathBuf,
    /// `--max-prompt-bytes`: the most of the file read.
    pub max_bytes: u64,
    pub context: usize,
    /// `--cache-type`: what the KV cache stores; `None` is the model format's default.
    pub cache_type: Option<DType>,
    /// `--no-repack`: whose order a GGUF file's products sum in.
    pub arith: Arithmetic,
    pub json: bool,
}

/// When beam search stops before `max_tokens` (transformers' `early_stopping`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyStopping {
    /// Stop as soon as N hypotheses are finished (`true`).
    Eager,
    /// Stop when the best running beam, length-normalised at the current length, cannot beat
    /// the worst finished hypothesis (`false`, the default).
    Heuristic,
    /// As the heuristic, but normalising at the longest possible length (`never`): the search
    /// only stops when no better hypothesis can exist.
    Never,
}

/// One strategy of `--compare`.
#[derive(Debug, Clone, PartialEq)]
pub struct Strategy {
    /// As the user wrote it (or the preset's name for it).
    pub label: String,
    pub kind: StrategyKind,
    /// `spec=lookup` / `spec=draft`: a sampling strategy run with speculative decoding.
    pub speculative: Option<SpecChoice>,
}

/// Which drafts a `--compare` strategy speculates with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecChoice {
    /// Prompt lookup (the `--lookup` settings when given, else their defaults).
    Lookup,
    /// The `--model-draft` model.
    Draft,
}

/// Sampling with a chain, or beam search.
#[derive(Debug, Clone, PartialEq)]
pub enum StrategyKind {
    Sample(SamplingConfig),
    Beam(BeamConfig),
}

/// How many candidates every filter keeps at least (llama.cpp's and transformers' `min_keep`).
pub const DEFAULT_MIN_KEEP: usize = 1;

/// Which part of the history the penalties look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last n tokens (n ≥ 1).
    Last(usize),
    /// Everything, prompt included.
    All,
}

/// The stages a user can order with `--samplers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StageKind {
    Penalties,
    LogitBias,
    Temperature,
    TopK,
    TopP,
    MinP,
    Typical,
}

impl StageKind {
    /// The default order (docs/SAMPLING.md; the seed documents and transformers): penalties → logit
    /// bias → temperature → top-k → top-p → min-p → typical.
    pub const DEFAULT_ORDER: [StageKind; 7] = [
        StageKind::Penalties,
        StageKind::LogitBias,
        StageKind::Temperature,
        StageKind::TopK,
        StageKind::TopP,
        StageKind::MinP,
        StageKind::Typical,
    ];

    /// The name used by `--samplers`.
    pub fn name(self) -> &'static str {
        match self {
            StageKind::Penalties => "penalties",
            StageKind::LogitBias => "logit-bias",
            StageKind::Temperature => "temperature",
            StageKind::TopK => "top-k",
            StageKind::TopP => "top-p",
            StageKind::MinP => "min-p",
            StageKind::Typical => "typical",
        }
    }
}

impl fmt::Display for StageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for StageKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        let alias = match norm.as_str() {
            "temp" => "temperature",
            "typical-p" => "typical",
            "penalty" | "repeat-penalty" => "penalties",
            other => other,
        };
        StageKind::DEFAULT_ORDER
            .into_iter()
            .find(|k| k.name() == alias)
            .ok_or_else(|| {
                let names: Vec<&str> = StageKind::DEFAULT_ORDER.iter().map(|k| k.name()).collect();
                format!(
                    "unknown sampler '{s}'; valid samplers: {}",
                    names.join(", ")
                )
            })
    }
}

/// Resolved sampling settings (what the flags mean, before building stages).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingConfig {
    /// 0 = greedy.
    pub temperature: f32,
    /// `None` = top-k off.
    pub top_k: Option<usize>,
    pub top_p: f32,
    pub min_p: f32,
    pub typical_p: f32,
    pub repeat_penalty: f32,
    /// `None` (`--repeat-last-n 0`) turns the penalties off.
    pub repeat_window: Option<Window>,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    pub logit_bias: Vec<(u32, f32)>,
    /// `None`: a random seed, chosen at build time and reported.
    pub seed: Option<u64>,
    /// Stage order; stages not listed are not built.
    pub order: Vec<StageKind>,
    pub min_keep: usize,
}

impl Default for SamplingConfig {
    /// llama.cpp's defaults (what `llama-cli` and ollama users get): T 0.8, top-k 40, top-p
    /// 0.95, min-p 0.05, typical off, penalties off with a 64-token window.
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: Some(40),
            top_p: 0.95,
            min_p: 0.05,
            typical_p: 1.0,
            repeat_penalty: 1.0,
            repeat_window: Some(Window::Last(64)),
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            logit_bias: Vec::new(),
            seed: None,
            order: StageKind::DEFAULT_ORDER.to_vec(),
            min_keep: DEFAULT_MIN_KEEP,
        }
    }
}

impl SamplingConfig {
    /// Greedy decoding (`--greedy`): temperature 0 with the default filters, which greedy makes
    /// no-ops.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }
}

/// The default model's file name, as fetched by `models/fetch.sh`.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Settings for `gen quantize`.
#[derive(Debug, Clone)]
pub struct QuantizeConfig {
    /// The GGUF file to read.
    pub input: PathBuf,
    /// The GGUF file to write.
    pub output: PathBuf,
    pub file_type: FileType,
    /// Replace `output` when it exists (`--force`).
    pub force: bool,
    /// A line per tensor on stderr (`-v`).
    pub verbose: bool,
}

/// What `gen quantize` writes: llama.cpp's file types (`llama_ftype`), as llama-quantize
/// names them. `crate::quant` knows what each one means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum FileType {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q3_K_S,
    Q3_K_M,
    Q3_K_L,
    Q4_K_S,
    Q4_K_M,
    Q5_K_S,
    Q5_K_M,
    Q6_K,
    F16,
    BF16,
    F32,
}

impl FileType {
    /// Every file type, in llama-quantize's order.
    pub const ALL: [FileType; 17] = [
        FileType::Q4_0,
        FileType::Q4_1,
        FileType::Q5_0,
        FileType::Q5_1,
        FileType::Q8_0,
        FileType::Q2_K,
        FileType::Q3_K_S,
        FileType::Q3_K_M,
        FileType::Q3_K_L,
        FileType::Q4_K_S,
        FileType::Q4_K_M,
        FileType::Q5_K_S,
        FileType::Q5_K_M,
        FileType::Q6_K,
        FileType::F16,
        FileType::BF16,
        FileType::F32,
    ];

    /// llama-quantize's name for it (`Q4_K_M`).
    pub fn name(self) -> &'static str {
        match self {
            FileType::Q4_0 => "Q4_0",
            FileType::Q4_1 => "Q4_1",
            FileType::Q5_0 => "Q5_0",
            FileType::Q5_1 => "Q5_1",
            FileType::Q8_0 => "Q8_0",
            FileType::Q2_K => "Q2_K",
            FileType::Q3_K_S => "Q3_K_S",
            FileType::Q3_K_M => "Q3_K_M",
            FileType::Q3_K_L => "Q3_K_L",
            FileType::Q4_K_S => "Q4_K_S",
            FileType::Q4_K_M => "Q4_K_M",
            FileType::Q5_K_S => "Q5_K_S",
            FileType::Q5_K_M => "Q5_K_M",
            FileType::Q6_K => "Q6_K",
            FileType::F16 => "F16",
            FileType::BF16 => "BF16",
            FileType::F32 => "F32",
        }
    }
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
