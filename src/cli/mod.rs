//! Command-line definitions (clap) and dispatch.

mod generate;
mod model;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// verinfer: optimistic verifiable inference. dApps call an OpenAI-compatible API; bonded executors run a
/// bitwise-deterministic integer LLM; results are committed to Ethereum and can be challenged.
#[derive(Debug, Parser)]
#[command(name = "verinfer", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch, inspect and measure models.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// Run one request through the VIR program and print text, token ids and the trace root.
    Generate(generate::GenerateArgs),
}

/// Parses the command line, runs the command, and maps errors to a non-zero exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Model(cmd) => model::run(cmd),
        Command::Generate(args) => generate::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
