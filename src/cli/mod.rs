//! Command-line flags (clap) and their help text. [`resolve`] turns them, range-checked, into a
//! resolved [`Config`](crate::config::Config) in one step. No I/O here beyond what clap does.

mod resolve;
mod set;
mod values;

pub use set::{apply_setting, current_settings, SETTINGS};

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use values::{
    closed_unit, finite, logit_bias, max_tokens, non_empty, non_negative, open_unit, positive,
    sampler_list, seed, top_k, SamplerList, SeedArg, TopKArg,
};

/// Generate text from a local Llama-style model (GGUF or safetensors) on candle.
#[derive(Debug, Parser)]
#[command(name = "gen", version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<SubCommand>,
    #[command(flatten)]
    generate: GenerateArgs,
}

/// The command line with llama.cpp's two-letter `-md` (a draft model) read as
/// `--model-draft`: clap's short flags are one letter.
fn args_with_llama_cpp_spellings() -> impl Iterator<Item = std::ffi::OsString> {
    std::env::args_os().map(|a| {
        if a == "-md" {
            "--model-draft".into()
        } else {
            a
        }
    })
}

impl Cli {
    /// Parses the process's arguments (clap's usage errors exit with code 2).
    pub fn from_args() -> Self {
        Self::parse_from(args_with_llama_cpp_spellings())
    }
}

#[derive(Debug, Subcommand)]
enum SubCommand {
    /// Write a Hugging Face-layout folder (safetensors + config + tokenizer) from a GGUF file,
    /// or a GGUF file from a Hugging Face Llama folder (as convert_hf_to_gguf.py does).
    Convert(ConvertArgs),
    /// Print the token ids of a text.
    Tokenize(TokenizeArgs),
    /// Perplexity of a text file, computed as llama.cpp's llama-perplexity does.
    Perplexity(PerplexityArgs),
    /// Talk to the model turn after turn, its KV cache kept between turns (`/help` inside).
    /// With stdin not a terminal, every line (or JSONL message) is a user turn.
    Chat(Box<ChatArgs>),
    /// Write a GGUF model (or a Hugging Face Llama folder) as another quantization type, byte
    /// for byte as llama.cpp's llama-quantize does (no importance matrix).
    Quantize(QuantizeArgs),
}

/// Whose arithmetic a GGUF file's products reproduce.
#[derive(Debug, Args, Clone, Copy)]
struct ArithArgs {
    /// Multiply Q4_0 and Q4_K weights as llama.cpp does with its --no-repack (the plain
    /// kernels) instead of as it does by default on AVX2 (weights repacked into 8×8 interleaved
    /// rows, which sum in another order): the logits of llama.cpp run that way. Other types are
    /// not affected.
    #[arg(long = "no-repack")]
    no_repack: bool,
}

impl ArithArgs {
    fn arithmetic(self) -> crate::kernels::ggml::Arithmetic {
        crate::kernels::ggml::Arithmetic {
            repack: !self.no_repack,
        }
    }
}

/// Where the model comes from.
#[derive(Debug, Args, Clone)]
struct ModelArgs {
    /// Model: a folder (config.json + tokenizer.json + *.safetensors), a .gguf or .safetensors
    /// file, or a Hugging Face Hub id `org/name[@revision]`. Default: $GEN_MODEL, else the model
    /// fetched by models/fetch.sh.
    #[arg(short = 'm', long, env = "GEN_MODEL")]
    model: Option<String>,
    /// CPU threads (default: all cores).
    #[arg(short = 't', long, value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
}

#[derive(Debug, Args)]
struct GenerateArgs {
    /// The prompt (alternatively --prompt, --file or stdin).
    #[arg(value_name = "PROMPT")]
    positional: Option<String>,
    /// The prompt text. Escapes \n \r \t \' \" \\ and \xHH are processed (as llama.cpp
    /// does), also in --stop and --system; --no-escape turns that off.
    #[arg(short = 'p', long)]
    prompt: Option<String>,
    /// Process escapes in the prompt, --stop and --system (the default; as llama.cpp's -e).
    #[arg(short = 'e', long, overrides_with = "no_escape")]
    escape: bool,
    /// Take the prompt, --stop and --system literally: a backslash is a backslash.
    #[arg(long)]
    no_escape: bool,
    /// Every input line (stdin or --file) is a prompt of its own; a line holding a JSON object
    /// `{"prompt": ..., "seed": ..., "max_tokens": ..., "temperature": ..., "stop": ...}`
    /// overrides settings for that prompt. The model loads once; outputs keep input order.
    #[arg(long)]
    each_line: bool,
    /// Run several decoding strategies on the same prompt and show them side by side: `greedy`,
    /// `beams=N`, or comma-separated settings from pure sampling (temperature 1, no filters):
    /// `temperature=0.7,top_p=0.95`, `min_p=0.1`, `top_k=40`, `typical_p=0.9`; or `all`
    /// (greedy, pure sampling, top-k, top-p, min-p, beams=4). The prompt is prefilled once and
    /// every strategy continues from a copy of its KV cache with its own RNG from --seed. The
    /// list ends at the first value that is not a strategy, which is then the prompt
    /// (`--compare all "Once upon a time"`). `spec=lookup` or `spec=draft` (with --model-draft)
    /// runs a sampling strategy with speculative decoding, alone: `greedy greedy,spec=lookup`
    /// shows the same text at two speeds.
    #[arg(long, value_name = "STRATEGY", num_args = 1..,
          conflicts_with_all = ["beams", "each_line", "explain", "logprobs", "samplers", "greedy"])]
    compare: Vec<String>,
    /// With --compare: run the strategies one after another instead of the sampling ones as
    /// one batch. Slower, but each strategy's tok/s is then its own speed; in a batch it is the
    /// tokens each made over the time the shared batch ran.
    #[arg(long, requires = "compare")]
    compare_sequential: bool,
    /// Generate N samples of the prompt (OpenAI's `n`, transformers' num_return_sequences):
    /// prefilled once, decoded as one batch. Sample i draws from seed S+i (S = --seed, else a
    /// random one, reported), so `--seed S+i` alone reproduces it. Text mode prints numbered
    /// blocks once all are done.
    #[arg(long, value_name = "N", visible_alias = "num-return-sequences",
          value_parser = clap::value_parser!(u32).range(1..=4096),
          conflicts_with_all = ["beams", "compare", "each_line", "explain", "lookup", "model_draft"])]
    samples: Option<u32>,
    /// With --samples: self-consistency voting. Each sample's final answer (`\boxed{...}`,
    /// else "the answer is ...", else the last number), normalised, is counted; the majority
    /// answer, its share and the tally are printed (ties: the answer of the earliest sample).
    #[arg(long, requires = "samples")]
    vote: bool,
    /// With --vote: a sample's answer is the last match of this regex (its first capture group
    /// when it has one) instead of the default rules.
    #[arg(long, value_name = "RE", requires = "vote", value_parser = values::answer_regex)]
    answer_regex: Option<String>,
    #[command(flatten)]
    speculative: SpeculativeArgs,
    /// A system message, when the model has a chat template.
    #[arg(long, value_name = "TEXT")]
    system: Option<String>,
    /// Send the prompt as plain text to continue, without the model's chat template.
    #[arg(long, conflicts_with_all = ["system", "chat_template_file"])]
    raw: bool,
    #[command(flatten)]
    template: TemplateArgs,
    /// Print the exact text the model would be fed (the prompt as the chat template renders
    /// it, special tokens as text) on stdout and exit without generating. A BOS token the
    /// tokenizer adds is not text: --format json shows it among the token ids.
    #[arg(long)]
    print_prompt: bool,
    /// Read the prompt from a file (`-` for stdin).
    #[arg(short = 'f', long, value_name = "PATH")]
    file: Option<PathBuf>,
    #[command(flatten)]
    input_limit: InputLimitArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// Maximum number of tokens to generate; -1 = no limit (until the end of the sequence or
    /// a full context, as llama.cpp).
    #[arg(short = 'n', long = "max-tokens", visible_alias = "n-predict", value_name = "N",
          default_value = "256", value_parser = max_tokens, allow_negative_numbers = true)]
    max_tokens: usize,
    /// Stop when the generated text contains STR (repeatable; llama.cpp's -r/--reverse-prompt).
    /// The match is not printed; text that could be the start of a match is held back until it
    /// is known not to be.
    #[arg(long, short = 'r', visible_alias = "reverse-prompt", value_name = "STR",
          allow_hyphen_values = true, value_parser = non_empty)]
    stop: Vec<String>,
    /// Print the stop string that ended generation.
    #[arg(long, requires = "stop")]
    keep_stop: bool,
    /// Keep generating past the end-of-sequence token (for benchmarks).
    #[arg(long)]
    ignore_eos: bool,
    /// Show control tokens (`<|im_end|>`, ...) in the text; by default they are left out of
    /// it, as in llama.cpp (their ids are always in the JSON).
    #[arg(long)]
    special: bool,
    /// Context size in tokens (prompt + generated); default: the model's.
    #[arg(short = 'c', long = "ctx-size", value_parser = clap::value_parser!(u32).range(1..))]
    ctx_size: Option<u32>,
    /// What the KV cache stores keys and values as: f16 (half the memory and half the reading
    /// per token; llama.cpp's default) or f32 (transformers'). Default: f16 for GGUF weights,
    /// f32 for safetensors.
    #[arg(long = "cache-type", value_enum, value_name = "TYPE")]
    cache_type: Option<CacheTypeArg>,
    #[command(flatten)]
    arith: ArithArgs,
    /// Prompt tokens per prefill forward pass.
    #[arg(short = 'b', long = "batch-size", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = FormatArg::Text)]
    format: FormatArg,
    /// Print the model's details on stderr before generating.
    #[arg(short = 'v', long)]
    verbose: bool,
    /// Print nothing on stderr but errors (no stats line).
    #[arg(short = 'q', long, conflicts_with = "verbose")]
    quiet: bool,
    // Last: their help headings apply to the flags after them.
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    beam: BeamArgs,
}

/// Beam search (transformers' `num_beams` semantics; see docs/SAMPLING.md).
#[derive(Debug, Args)]
#[command(next_help_heading = "Beam search")]
struct BeamArgs {
    /// Beam search with N beams, run as one batch (1 = greedy). Deterministic, so it cannot be
    /// combined with the sampling flags (temperature, top-k/p, min-p, typical, seed, samplers);
    /// penalties, --logit-bias and --no-repeat-ngram apply to its log-probabilities. Its final
    /// text is not known early: while it runs, only the prefix all beams already share is
    /// streamed, the rest comes at the end.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..),
          conflicts_with_all = ["temperature", "greedy", "top_k", "top_p", "min_p", "typical_p", "samplers", "seed", "logprobs", "explain", "min_keep", "lookup", "model_draft"])]
    beams: Option<u32>,
    /// Print the N best finished hypotheses with their scores (N ≤ --beams).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..), requires = "beams")]
    num_return: u32,
    /// Finished hypotheses score sum_logprobs / length^P; P > 0 favours longer ones.
    #[arg(long, value_name = "P", default_value_t = 1.0, value_parser = finite, allow_negative_numbers = true, requires = "beams")]
    length_penalty: f32,
    /// When to stop: `true` once --beams hypotheses are finished; `false` when no running beam
    /// can beat the worst finished one at the current length; `never` at the longest length.
    #[arg(long, value_enum, default_value_t = EarlyStoppingArg::False, requires = "beams")]
    early_stopping: EarlyStoppingArg,
    /// Never repeat an n-gram of this size (prompt included), as transformers' no_repeat_ngram_size.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), requires = "beams")]
    no_repeat_ngram: Option<u32>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EarlyStoppingArg {
    True,
    False,
    Never,
}

/// The sampler chain's flags. Defaults are llama.cpp's (what llama-cli and ollama users get);
/// see docs/SAMPLING.md for what each sampler means.
#[derive(Debug, Args)]
#[command(next_help_heading = "Sampling")]
struct SamplingArgs {
    /// Temperature: logits are divided by T. 0 = greedy (argmax). Must be ≥ 0.
    #[arg(long, visible_alias = "temp", default_value_t = 0.8, value_parser = non_negative, allow_negative_numbers = true)]
    temperature: f32,
    /// Greedy decoding: shorthand for --temperature 0.
    #[arg(long, conflicts_with = "temperature")]
    greedy: bool,
    /// Keep only the K most likely tokens (K ≥ 1, or `off`).
    #[arg(long, value_name = "K|off", default_value = "40", value_parser = top_k)]
    top_k: TopKArg,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches P, in (0, 1]; 1 = off.
    #[arg(long, value_name = "P", default_value_t = 0.95, value_parser = open_unit, allow_negative_numbers = true)]
    top_p: f32,
    /// Keep tokens at least M times as likely as the most likely one, in [0, 1]; 0 = off.
    #[arg(long, value_name = "M", default_value_t = 0.05, value_parser = closed_unit, allow_negative_numbers = true)]
    min_p: f32,
    /// Locally typical sampling with mass P, in (0, 1]; 1 = off.
    #[arg(long, value_name = "P", default_value_t = 1.0, value_parser = open_unit, allow_negative_numbers = true)]
    typical_p: f32,
    /// Repetition penalty θ > 0 on tokens in the last --repeat-last-n tokens; 1 = off.
    #[arg(long, value_name = "θ", default_value_t = 1.0, value_parser = positive, allow_negative_numbers = true)]
    repeat_penalty: f32,
    /// Window of the penalties in tokens, prompt included; -1 = everything, 0 = penalties off.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(i64).range(-1..), allow_negative_numbers = true)]
    repeat_last_n: i64,
    /// Subtract α × (times the token occurs in the window) from its logit; 0 = off.
    #[arg(long, value_name = "α", default_value_t = 0.0, value_parser = finite, allow_negative_numbers = true)]
    frequency_penalty: f32,
    /// Subtract α from the logit of every token that occurs in the window; 0 = off.
    #[arg(long, value_name = "α", default_value_t = 0.0, value_parser = finite, allow_negative_numbers = true)]
    presence_penalty: f32,
    /// Add BIAS to token ID's logit (repeatable); BIAS `-inf` bans the token.
    #[arg(long, value_name = "ID=BIAS", value_parser = logit_bias, allow_hyphen_values = true)]
    logit_bias: Vec<(u32, f32)>,
    /// Seed of the random number generator (ChaCha8). Default (or -1, as in llama.cpp): a
    /// random seed, reported by --verbose and in JSON.
    #[arg(short = 's', long, value_parser = seed, allow_negative_numbers = true)]
    seed: Option<SeedArg>,
    /// Sampler order, comma-separated, any subset of: penalties, logit-bias, temperature, top-k,
    /// top-p, min-p, typical. Samplers left out are off. Default: all, in that order.
    #[arg(long, value_name = "LIST", value_parser = sampler_list)]
    samplers: Option<SamplerList>,
    /// Every filter keeps at least this many tokens.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    min_keep: u32,
    /// Report each generated token's log-probability and the N most likely alternatives under
    /// the model's unfiltered distribution (JSON; a table on stderr in text mode).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=100))]
    logprobs: Option<u32>,
    /// Show, for each step, the N most likely tokens' probabilities after every sampler stage,
    /// which stage removed which, and what was drawn (a table on stderr, or in the JSON).
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "8", value_parser = clap::value_parser!(u32).range(1..=100))]
    explain: Option<u32>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    /// Only the generated text, streamed.
    Text,
    /// One JSON object (an array with --each-line).
    Json,
    /// One JSON object per line (per prompt with --each-line).
    Jsonl,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CacheTypeArg {
    F32,
    F16,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DtypeArg {
    F32,
    F16,
    Bf16,
    /// GGUF output only.
    #[value(name = "q8_0")]
    Q8_0,
    /// GGUF output only: bf16 when the weights are bf16, else f16.
    Auto,
}

#[derive(Debug, Args)]
struct ConvertArgs {
    /// The GGUF file to convert into a Hugging Face folder, or a Hugging Face Llama folder
    /// (safetensors, config.json, tokenizer.json) to convert into one GGUF file, as llama.cpp's
    /// convert_hf_to_gguf.py does.
    input: PathBuf,
    /// The folder to write (created if missing; an existing folder that is not empty needs
    /// --force), or, from a folder, the GGUF file to write (an existing one needs --force).
    output: PathBuf,
    /// Write into an existing folder that already holds files, replacing those gen writes
    /// (or replace an existing GGUF file).
    #[arg(long)]
    force: bool,
    /// Data type of the written weights [default: f32 for a folder, auto for a GGUF file].
    #[arg(long, value_enum)]
    dtype: Option<DtypeArg>,
}

#[derive(Debug, Args)]
struct QuantizeArgs {
    /// The GGUF model to read, or a Hugging Face Llama folder (converted as
    /// convert_hf_to_gguf.py --outtype f32 does, then quantized).
    input: PathBuf,
    /// The GGUF file to write. An existing file needs --force (llama-quantize would replace
    /// it silently).
    output: PathBuf,
    /// The file type, as llama-quantize names it (case is ignored; Q3_K, Q4_K and Q5_K are
    /// the _M mixes, as there).
    #[arg(value_enum, ignore_case = true, value_name = "TYPE")]
    file_type: QuantTypeArg,
    /// Replace OUTPUT when it exists.
    #[arg(long)]
    force: bool,
    /// Print each tensor's name, shape and types on stderr (instead of a progress bar on a
    /// terminal).
    #[arg(short = 'v', long)]
    verbose: bool,
    /// CPU threads (default: all cores).
    #[arg(short = 't', long, value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
}

/// llama-quantize's type names; Q3_K, Q4_K and Q5_K are its aliases of the _M mixes.
#[derive(Debug, Clone, Copy, ValueEnum)]
#[allow(non_camel_case_types)]
enum QuantTypeArg {
    #[value(name = "Q4_0")]
    Q4_0,
    #[value(name = "Q4_1")]
    Q4_1,
    #[value(name = "Q5_0")]
    Q5_0,
    #[value(name = "Q5_1")]
    Q5_1,
    #[value(name = "Q8_0")]
    Q8_0,
    #[value(name = "Q2_K")]
    Q2_K,
    #[value(name = "Q3_K_S")]
    Q3_K_S,
    #[value(name = "Q3_K_M", alias = "Q3_K")]
    Q3_K_M,
    #[value(name = "Q3_K_L")]
    Q3_K_L,
    #[value(name = "Q4_K_S")]
    Q4_K_S,
    #[value(name = "Q4_K_M", alias = "Q4_K")]
    Q4_K_M,
    #[value(name = "Q5_K_S")]
    Q5_K_S,
    #[value(name = "Q5_K_M", alias = "Q5_K")]
    Q5_K_M,
    #[value(name = "Q6_K")]
    Q6_K,
    #[value(name = "F16")]
    F16,
    #[value(name = "BF16")]
    BF16,
    #[value(name = "F32")]
    F32,
}

#[derive(Debug, Args)]
struct ChatArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// A system message at the start of the conversation (`/system` changes it). Escapes are
    /// processed as in -p.
    #[arg(long)]
    system: Option<String>,
    #[command(flatten)]
    template: TemplateArgs,
    /// Most tokens per answer; -1 (the default, as llama-cli and ollama) = until the end of the
    /// turn or a full context.
    #[arg(short = 'n', long = "max-tokens", visible_alias = "n-predict", value_name = "N",
          default_value = "-1", value_parser = max_tokens, allow_negative_numbers = true)]
    max_tokens: usize,
    /// End an answer when it contains STR (repeatable).
    #[arg(long, short = 'r', visible_alias = "reverse-prompt", value_name = "STR",
          allow_hyphen_values = true, value_parser = non_empty)]
    stop: Vec<String>,
    /// Context size in tokens for the whole conversation; default: the model's. When a turn
    /// would not fit, the oldest exchanges after the system prompt are dropped (and said so).
    #[arg(short = 'c', long = "ctx-size", value_parser = clap::value_parser!(u32).range(16..))]
    ctx_size: Option<u32>,
    /// What the KV cache stores keys and values as (see `gen --help`).
    #[arg(long = "cache-type", value_enum, value_name = "TYPE")]
    cache_type: Option<CacheTypeArg>,
    #[command(flatten)]
    arith: ArithArgs,
    /// Prompt tokens per prefill forward pass.
    #[arg(short = 'b', long = "batch-size", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// What a script reading stdout gets: the answers as text (one per turn, each followed by
    /// an empty line), or one JSON object per turn.
    #[arg(long, value_enum, default_value_t = ChatFormatArg::Text)]
    format: ChatFormatArg,
    /// Do not read or write the input history file (in the user's data folder).
    #[arg(long)]
    no_history: bool,
    /// A stats line per turn on stderr (tokens reused from the cache, computed, speeds).
    #[arg(short = 'v', long)]
    verbose: bool,
    #[command(flatten)]
    input_limit: InputLimitArgs,
    #[command(flatten)]
    speculative: SpeculativeArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ChatFormatArg {
    Text,
    Jsonl,
}

/// The chat template, for `gen` and `gen chat`.
#[derive(Debug, Args)]
struct TemplateArgs {
    /// Render prompts with the Jinja chat template in FILE instead of the model's (llama.cpp's
    /// flag; a `chat_template.jinja` from a Hugging Face repo, for instance).
    #[arg(long, value_name = "FILE")]
    chat_template_file: Option<PathBuf>,
}

/// Speculative decoding, for `gen` and `gen chat`.
#[derive(Debug, Args)]
struct SpeculativeArgs {
    /// Speculative decoding with prompt-lookup drafts: the tokens that followed the latest
    /// earlier occurrence of the last n-gram (prompt and text so far) are verified in one
    /// forward pass. The output is the same token for token as without it; only the speed
    /// changes (it pays on text that repeats its input: code edits, extraction, summaries).
    #[arg(long, conflicts_with = "model_draft")]
    lookup: bool,
    /// With --lookup: the longest n-gram matched (shorter ones are tried after it).
    #[arg(long, value_name = "N", default_value_t = 2, requires = "lookup",
          value_parser = clap::value_parser!(u32).range(1..=16))]
    lookup_ngram: u32,
    /// Speculative decoding with a draft model (llama.cpp's -md, also accepted): a small model
    /// with the same vocabulary (a GGUF file or a folder) proposes tokens that the model
    /// verifies in one forward pass. The output is the same token for token as without it.
    #[arg(long, value_name = "MODEL")]
    model_draft: Option<String>,
    /// With --lookup or --model-draft: most tokens proposed per verify pass [default: 10].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    draft_max: Option<u32>,
    /// With --lookup or --model-draft: drafts shorter than N are not verified [default: 0].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=64))]
    draft_min: Option<u32>,
    /// With --model-draft: the draft stops proposing at a token its own softmax gives less
    /// than P [default: 0].
    #[arg(long, value_name = "P", value_parser = closed_unit)]
    draft_p_min: Option<f32>,
    /// How drafted tokens are accepted: `match` (the default) draws each as the plain run does
    /// and keeps it while it equals the draft, so the output is the plain run's; `rejection`
    /// (Leviathan et al.) keeps a token with probability min(1, p/q): the same distribution
    /// and more tokens accepted from a sampled draft, but not the plain run's tokens for a seed.
    #[arg(long, value_enum, value_name = "RULE")]
    draft_verify: Option<DraftVerifyArg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DraftVerifyArg {
    Match,
    Rejection,
}

/// How much text a command reads from a file or stdin.
#[derive(Debug, Args)]
struct InputLimitArgs {
    /// Read at most this many bytes of text from a file or stdin; more is an error.
    #[arg(long, value_name = "BYTES", default_value_t = crate::config::DEFAULT_MAX_PROMPT_BYTES,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_prompt_bytes: u64,
}

#[derive(Debug, Args)]
struct TokenizeArgs {
    /// The text to tokenize (else --file or piped stdin; no escapes are processed).
    text: Option<String>,
    /// Read the text from a file (`-` for stdin); one final newline is not part of it.
    #[arg(short = 'f', long, value_name = "PATH", conflicts_with = "text")]
    file: Option<PathBuf>,
    #[command(flatten)]
    input_limit: InputLimitArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// Print JSON ({"ids": [...], "pieces": [...]}) instead of one `id<TAB>piece` per line.
    #[arg(long)]
    json: bool,
    /// Say on stderr which tokenizer was built (model, pre-tokenizer, size, BOS/EOS).
    #[arg(short = 'v', long)]
    verbose: bool,
}

#[derive(Debug, Args)]
struct PerplexityArgs {
    /// The text file to score.
    file: PathBuf,
    #[command(flatten)]
    input_limit: InputLimitArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// Window size in tokens; each window scores the tokens of its second half.
    #[arg(short = 'c', long = "ctx-size", visible_alias = "context", value_name = "N",
          default_value_t = 512, value_parser = clap::value_parser!(u32).range(4..))]
    context: u32,
    /// What the KV cache stores keys and values as: f16 (half the memory and half the reading
    /// per token; llama.cpp's default) or f32 (transformers'). Default: f16 for GGUF weights,
    /// f32 for safetensors.
    #[arg(long = "cache-type", value_enum, value_name = "TYPE")]
    cache_type: Option<CacheTypeArg>,
    #[command(flatten)]
    arith: ArithArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[cfg(test)]
mod tests {
    /// clap's own consistency checks (every `requires` / `conflicts_with` names a flag that
    /// exists, no two flags share a name), which release builds skip at run time.
    #[test]
    fn the_flags_are_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
