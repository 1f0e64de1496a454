//! Gas figures (the full table: `cargo run -p verinfer-l1-contracts --example gas_report`, or this test with
//! `--nocapture`).

use verinfer_l1_contracts::gas::{GasEntry, gas_report};

#[tokio::test]
async fn post_batch_gas() {
    let report = gas_report().await.unwrap();
    println!("{report}");
    let posts: Vec<&GasEntry> = report
        .entries
        .iter()
        .filter(|e| e.function == "postBatch")
        .collect();
    // With 1 KiB of data, every leaf count costs the same (up to the calldata of the count itself), and the
    // steady-state post stays within the 120k target; the very first post also writes stateRoot from zero.
    let small: Vec<u64> = posts
        .iter()
        .filter(|e| e.case.contains(" 1 KiB") && !e.case.contains("first"))
        .map(|e| e.gas_without_data())
        .collect();
    assert_eq!(small.len(), 4);
    let (lo, hi) = (*small.iter().min().unwrap(), *small.iter().max().unwrap());
    assert_eq!(hi, report.post_batch_fixed());
    assert!(hi - lo < 200, "leaf count changes postBatch gas: {small:?}");
    assert!(
        hi <= 120_000,
        "steady-state postBatch costs {hi} gas without the data calldata (target 120k)"
    );
    let first = posts.iter().find(|e| e.case.contains("first")).unwrap();
    assert!(first.gas_without_data() < hi + 20_000);
    // Beyond the calldata, hashing the data costs under one gas per byte.
    let big = posts.iter().find(|e| e.case.contains("128 KiB")).unwrap();
    assert!(big.gas_without_data() - hi < 128 * 1024);
}

#[tokio::test]
async fn post_batch_blobs_gas() {
    let report = gas_report().await.unwrap();
    let posts: Vec<&GasEntry> = report
        .entries
        .iter()
        .filter(|e| e.function == "postBatchBlobs")
        .collect();
    // 1 KiB up to the six blobs of one transaction, at 1 to 2^48-1 leaves.
    assert_eq!(posts.len(), 7);
    assert!(posts.iter().any(|e| e.case.contains("in 1 blob(s)")));
    assert!(posts.iter().any(|e| e.case.contains("in 6 blob(s)")));
    // Every size costs the same (the blob count adds a few hundred gas of BLOBHASH and hashing) and stays within
    // the 120k target, for any batch size.
    let gas: Vec<u64> = posts.iter().map(|e| e.gas_used).collect();
    let (lo, hi) = (*gas.iter().min().unwrap(), *gas.iter().max().unwrap());
    assert_eq!(hi, report.post_batch_blobs_max());
    assert!(
        hi - lo < 1_000,
        "blob posting gas depends on the size: {gas:?}"
    );
    assert!(hi <= 120_000, "postBatchBlobs costs {hi} gas (target 120k)");
    // Calldata mode at 32 KiB costs several times as much.
    let calldata_32k = report
        .entries
        .iter()
        .find(|e| e.function == "postBatch" && e.case.contains(" 32 KiB"))
        .unwrap();
    assert!(calldata_32k.gas_used > 4 * hi);
}

#[tokio::test]
async fn dispute_game_gas_targets() {
    let report = gas_report().await.unwrap();
    let find =
        |f: &str| -> Vec<&GasEntry> { report.entries.iter().filter(|e| e.function == f).collect() };
    // One bisection move ≤ 150k gas.
    for f in ["reveal", "choose"] {
        let e = find(f);
        assert_eq!(e.len(), 1);
        assert!(e[0].gas_used <= 150_000, "{f}: {}", e[0].gas_used);
    }
    // The largest one-step proof of every op kind at SmolLM2's longest context (AttnWeightedSum: 64 VProj values
    // under 64 trace leaves; SwiGlu: gates hitting all 128 SIGMOID chunks, which the report checks): ≤ 5M gas and
    // ≤ 120 KB calldata.
    let steps = find("proveOneStep");
    assert!(steps.len() >= 37, "{}", steps.len());
    for kind in [
        "AttnWeightedSum (64 values",
        "SwiGlu (d_ff 1536, gates hit all 128",
    ] {
        assert!(steps.iter().any(|e| e.case.starts_with(kind)), "{kind}");
    }
    for e in steps {
        assert!(e.gas_used <= 5_000_000, "{}: {} gas", e.case, e.gas_used);
        assert!(
            e.calldata_bytes <= 120_000,
            "{}: {} bytes",
            e.case,
            e.calldata_bytes
        );
    }
}

#[tokio::test]
async fn signature_challenge_gas() {
    let report = gas_report().await.unwrap();
    // The three calls of the signature challenge are in the report, each well under a block's worth and without
    // growing the posting path (`postBatchBlobs` is asserted ≤ 120k above).
    for f in [
        "challengeSignature",
        "answerSignatureChallenge",
        "resolveSignatureChallenge",
    ] {
        let e: Vec<&GasEntry> = report.entries.iter().filter(|e| e.function == f).collect();
        assert_eq!(e.len(), 1, "{f}");
        assert!(e[0].gas_used <= 200_000, "{f}: {} gas", e[0].gas_used);
    }
}
