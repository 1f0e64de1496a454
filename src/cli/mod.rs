//! Command-line definitions (clap) and dispatch.

mod bench;
mod devnet;
mod executor;
mod generate;
mod keys;
mod l1;
mod model;
mod sequencer;

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
    /// Run a complete local network (L1, sequencer, executors) in one process: the quickest start.
    Devnet(devnet::DevnetArgs),
    /// Run the sequencer: OpenAI-compatible API, executor API and the L1 settlement pipeline.
    Sequencer(sequencer::SequencerArgs),
    /// Run an executor: lease jobs from a sequencer, run them, stream tokens, sign results.
    Executor(executor::ExecutorArgs),
    /// Create, list and revoke API keys in the sequencer's database.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Run one request through the VIR program and print text, token ids and the trace root.
    Generate(generate::GenerateArgs),
    /// L1 contract tools (gas report).
    #[command(subcommand)]
    L1(l1::L1Command),
    /// Measure tokens/s: reference interpreter, burn engine, and batched streams through the scheduler (end to
    /// end and steady-state decode), the trace-hashing share and this CPU's Keccak cost per position.
    Bench(bench::BenchArgs),
}

/// Parses the command line, runs the command, and maps errors to a non-zero exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Model(cmd) => model::run(cmd),
        Command::Generate(args) => generate::run(args),
        Command::Devnet(args) => devnet::run(args),
        Command::Sequencer(args) => sequencer::run(args),
        Command::Executor(args) => executor::run(args),
        Command::Keys(cmd) => keys::run(cmd),
        Command::Bench(args) => bench::run_bench(args),
        Command::L1(cmd) => l1::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
