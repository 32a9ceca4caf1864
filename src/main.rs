//! The `gen` binary: parse flags, run, map errors to exit codes.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = gen::cli::Cli::from_args();
    let config = match cli.into_config() {
        Ok(c) => c,
        Err(msg) => {
            gen::output::error(&anyhow::anyhow!(msg));
            return ExitCode::from(2);
        }
    };
    match gen::app::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if gen::app::is_broken_pipe(&e) => ExitCode::SUCCESS,
        // Ctrl-C: what was generated is already flushed and the stats printed.
        Err(e) if e.is::<gen::app::Interrupted>() => {
            ExitCode::from(if gen::app::terminated() { 143 } else { 130 })
        }
        Err(e) if gen::app::is_usage_error(&e) => {
            gen::output::error(&e);
            ExitCode::from(2)
        }
        Err(e) => {
            gen::output::error(&e);
            ExitCode::from(1)
        }
    }
}
