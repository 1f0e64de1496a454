//! `verinfer l1 gas-report` through the binary: it measures on a fresh embedded chain and prints one row per
//! measured call, including every dispute step, and the bisection moves stay within the 150k target.

use std::process::Command;

fn gas_of(report: &str, function: &str) -> Vec<u64> {
    report
        .lines()
        .filter(|line| line.split_whitespace().next() == Some(function))
        .filter_map(|line| {
            let numbers: Vec<u64> = line
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            // gas, gas - DA data, calldata are the last three columns.
            numbers.len().checked_sub(3).map(|i| numbers[i])
        })
        .collect()
}

#[test]
fn gas_report_lists_every_step_with_bisection_moves_under_150k() {
    let out = Command::new(env!("CARGO_BIN_EXE_verinfer"))
        .args(["l1", "gas-report"])
        .output()
        .expect("verinfer runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "gas-report failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    for function in ["postBatch", "finalize", "isFinalized", "open", "claimLeaf"] {
        assert!(
            !gas_of(&stdout, function).is_empty(),
            "no {function} row in:\n{stdout}"
        );
    }
    for function in ["reveal", "choose"] {
        let gas = gas_of(&stdout, function);
        assert!(!gas.is_empty(), "no {function} row in:\n{stdout}");
        assert!(gas.iter().all(|g| *g <= 150_000), "{function}: {gas:?}");
    }
    // One one-step row per op kind of the program (47 kinds measured, incl. sampling ops).
    let one_step = gas_of(&stdout, "proveOneStep");
    assert!(one_step.len() >= 30, "{} proveOneStep rows", one_step.len());
    assert!(one_step.iter().all(|g| *g <= 5_000_000), "{one_step:?}");
}
