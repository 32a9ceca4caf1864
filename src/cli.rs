//! Command-line flags (clap), their help text and range checks, turned into a resolved
//! [`Config`](crate::config::Config) in one step. No I/O here beyond what clap itself does.

use crate::config::{
    Command, Config, ConvertConfig, GenerateConfig, OutputFormat, PerplexityConfig, PromptSource,
    TokenizeConfig,
};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Generate text from a local Llama-style model (GGUF or safetensors) on candle.
#[derive(Debug, Parser)]
#[command(name = "gen", version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<SubCommand>,
    #[command(flatten)]
    generate: GenerateArgs,
}

#[derive(Debug, Subcommand)]
enum SubCommand {
    /// Write a Hugging Face-layout folder (safetensors + config + tokenizer) from a GGUF file.
    Convert(ConvertArgs),
    /// Print the token ids of a text.
    Tokenize(TokenizeArgs),
    /// Perplexity of a text file, computed as llama.cpp's llama-perplexity does.
    Perplexity(PerplexityArgs),
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
    /// The prompt text.
    #[arg(short = 'p', long)]
    prompt: Option<String>,
    /// Read the prompt from a file (`-` for stdin).
    #[arg(short = 'f', long, value_name = "PATH")]
    file: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    /// Maximum number of tokens to generate.
    #[arg(short = 'n', long = "max-tokens", default_value_t = 256)]
    max_tokens: usize,
    /// Sampling temperature; only 0 (greedy) is implemented so far.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Keep generating past the end-of-sequence token (for benchmarks).
    #[arg(long)]
    ignore_eos: bool,
    /// Context size in tokens (prompt + generated); default: the model's.
    #[arg(short = 'c', long = "ctx-size", value_parser = clap::value_parser!(u32).range(1..))]
    ctx_size: Option<u32>,
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
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DtypeArg {
    F32,
    F16,
    Bf16,
}

#[derive(Debug, Args)]
struct ConvertArgs {
    /// The GGUF file to convert.
    input: PathBuf,
    /// The folder to write (created if missing).
    output: PathBuf,
    /// Data type of the written weights.
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    dtype: DtypeArg,
}

#[derive(Debug, Args)]
struct TokenizeArgs {
    /// The text to tokenize.
    text: String,
    #[command(flatten)]
    model: ModelArgs,
    /// Print JSON ({"ids": [...], "pieces": [...]}) instead of one `id<TAB>piece` per line.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct PerplexityArgs {
    /// The text file to score.
    file: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// Window size in tokens; each window scores the tokens of its second half.
    #[arg(short = 'c', long = "context", default_value_t = 512, value_parser = clap::value_parser!(u32).range(4..))]
    context: u32,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
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
                    dtype: match a.dtype {
                        DtypeArg::F32 => candle_core::DType::F32,
                        DtypeArg::F16 => candle_core::DType::F16,
                        DtypeArg::Bf16 => candle_core::DType::BF16,
                    },
                }),
            },
            Some(SubCommand::Tokenize(a)) => Config {
                threads: a.model.threads.map(usize::from),
                command: Command::Tokenize(TokenizeConfig {
                    model: a.model.model,
                    text: a.text,
                    json: a.json,
                }),
            },
            Some(SubCommand::Perplexity(a)) => Config {
                threads: a.model.threads.map(usize::from),
                command: Command::Perplexity(PerplexityConfig {
                    model: a.model.model,
                    file: a.file,
                    context: a.context as usize,
                    json: a.json,
                }),
            },
            None => {
                let g = self.generate;
                if g.temperature != 0.0 {
                    return Err(format!(
                        "--temperature {} is not supported yet: only greedy decoding (--temperature 0) is implemented",
                        g.temperature
                    ));
                }
                let sources = [g.positional.is_some(), g.prompt.is_some(), g.file.is_some()];
                if sources.iter().filter(|&&s| s).count() > 1 {
                    return Err(
                        "give the prompt once: as an argument, with --prompt, or with --file"
                            .into(),
                    );
                }
                let prompt = match (g.positional.or(g.prompt), g.file) {
                    (Some(text), _) => PromptSource::Text(text),
                    (None, Some(p)) if p.as_os_str() == "-" => PromptSource::Stdin,
                    (None, Some(p)) => PromptSource::File(p),
                    (None, None) => PromptSource::Stdin,
                };
                Config {
                    threads: g.model.threads.map(usize::from),
                    command: Command::Generate(GenerateConfig {
                        model: g.model.model,
                        prompt,
                        max_tokens: g.max_tokens,
                        ignore_eos: g.ignore_eos,
                        ctx_size: g.ctx_size.map(|c| c as usize),
                        batch_size: g.batch_size as usize,
                        format: match g.format {
                            FormatArg::Text => OutputFormat::Text,
                            FormatArg::Json => OutputFormat::Json,
                        },
                        verbose: g.verbose,
                        quiet: g.quiet,
                    }),
                }
            }
        })
    }
}
