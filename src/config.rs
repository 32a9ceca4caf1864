//! Plain resolved settings, free of clap, so tests and benches can build them directly.

pub use crate::sampling::SamplingConfig;
use candle_core::DType;
use std::path::PathBuf;

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
}

/// Where the prompt text comes from. Piped stdin comes first, then `text` (as `llm` does);
/// `file` replaces stdin (`-` names stdin explicitly).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PromptSource {
    /// `--prompt` or the positional argument.
    pub text: Option<String>,
    /// `--file`; `-` is stdin.
    pub file: Option<PathBuf>,
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

/// Settings for text generation.
#[derive(Debug, Clone)]
pub struct GenerateConfig {
    /// `--model` as given; `None` means the default model.
    pub model: Option<String>,
    pub prompt: PromptSource,
    pub max_tokens: usize,
    pub ignore_eos: bool,
    pub ctx_size: Option<usize>,
    pub batch_size: usize,
    /// `--cache-type`: what the KV cache stores; `None` is the model format's default.
    pub cache_type: Option<candle_core::DType>,
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
    /// Send the prompt as plain text, without the chat template (`--raw`).
    pub raw: bool,
    /// `--compare`: run these strategies on the same prompt instead of one.
    pub compare: Option<Vec<crate::compare::Strategy>>,
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
}

/// Settings for beam search.
#[derive(Debug, Clone, PartialEq)]
pub struct BeamConfig {
    pub num_beams: usize,
    pub num_return: usize,
    pub length_penalty: f32,
    pub early_stopping: crate::decode::EarlyStopping,
    pub no_repeat_ngram: Option<usize>,
}

/// Settings for `gen convert`.
#[derive(Debug, Clone)]
pub struct ConvertConfig {
    pub input: PathBuf,
    pub output: PathBuf,
    pub dtype: DType,
}

/// Settings for `gen tokenize`.
#[derive(Debug, Clone)]
pub struct TokenizeConfig {
    pub model: Option<String>,
    pub text: String,
    pub json: bool,
}

/// Settings for `gen perplexity`.
#[derive(Debug, Clone)]
pub struct PerplexityConfig {
    pub model: Option<String>,
    pub file: PathBuf,
    pub context: usize,
    /// `--cache-type`: what the KV cache stores; `None` is the model format's default.
    pub cache_type: Option<candle_core::DType>,
    pub json: bool,
}

/// The default model's file name, as fetched by `models/fetch.sh`.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Resolves `--model`: the given value, else `models/<default>` under the working directory,
/// else under the source tree `gen` was built from.
pub fn resolve_model_spec(model: Option<&str>) -> String {
    if let Some(m) = model {
        return m.to_string();
    }
    let local = PathBuf::from("models").join(DEFAULT_MODEL_FILE);
    if local.exists() {
        return local.display().to_string();
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(DEFAULT_MODEL_FILE)
        .display()
        .to_string()
}
