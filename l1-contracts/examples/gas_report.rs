//! Prints gas per `InferenceRollup` / `ExampleConsumer` function, measured on the embedded chain.
//!
//! `cargo run -p verinfer-l1-contracts --example gas_report`

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let report = runtime.block_on(verinfer_l1_contracts::gas::gas_report())?;
    print!("{report}");
    println!(
        "postBatch, size-independent part (any leaf count, 1 KiB data, without the data calldata): {} gas \
         (target 120,000); larger data adds its calldata plus the hashing shown above",
        report.post_batch_fixed()
    );
    println!(
        "postBatchBlobs, any size from 1 KiB to six blobs: at most {} gas (target 120,000)",
        report.post_batch_blobs_max()
    );
    Ok(())
}
