//! `verinfer l1 …`: tools for contract integrators and operators that talk to the L1 contracts.

use anyhow::Context;
use clap::Subcommand;

/// L1 contract tools.
#[derive(Debug, Subcommand)]
pub enum L1Command {
    /// Deploy the contracts on a fresh in-process chain, call every rollup, consumer and dispute-game function
    /// (postBatch at several batch sizes, one bisection move, the largest one-step proof of every op kind at
    /// SmolLM2's longest context) and print the gas used and calldata size of each.
    GasReport,
}

/// Runs an `l1` subcommand.
pub fn run(cmd: L1Command) -> anyhow::Result<()> {
    match cmd {
        L1Command::GasReport => gas_report(),
    }
}

fn gas_report() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime
        .block_on(l1_contracts::gas::gas_report())
        .context("measuring gas on the embedded chain")?;
    print!("{report}");
    Ok(())
}
