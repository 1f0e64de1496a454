//! `verinfer bench` end to end on the tiny synthetic model: the JSON report has every figure, all positive.

use std::process::Command;

#[test]
fn bench_json_reports_positive_figures() {
    let out = Command::new(env!("CARGO_BIN_EXE_verinfer"))
        .args([
            "bench",
            "--model",
            "tiny",
            "--tokens",
            "4",
            "--streams",
            "2,4",
            "--json",
        ])
        .output()
        .expect("runs the binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    let num = |path: &str| -> f64 {
        v.pointer(path)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or_else(|| panic!("{path} missing in {v}"))
    };
    for path in [
        "/reference/prefill/tokens_per_s",
        "/reference/decode/tokens_per_s",
        "/engine/prefill/tokens_per_s",
        "/engine/decode/tokens_per_s",
        "/engine/end_to_end/tokens_per_s",
        "/engine/trace_share",
        "/engine_no_trace/decode/tokens_per_s",
        "/batches/0/generated/tokens_per_s",
        "/batches/1/generated/tokens_per_s",
        "/batches/1/trace_share",
        "/ratios/burn_vs_reference_decode",
        "/ratios/burn_vs_reference_prefill",
        "/ratios/batch_vs_single",
        "/ratios/trace_share_single",
        "/ratios/trace_share_batch",
        "/batches/1/decode/tokens_per_s",
        "/ratios/decode_batch_vs_single",
        "/engine/trace_chunks",
        "/hash_cost/scalar_us_per_chunk",
        "/hash_cost/chunks_per_position",
        "/hash_cost/floor_ms_per_position",
        "/hash_cost/batch_ms_per_position",
    ] {
        assert!(num(path) > 0.0, "{path} = {} in {v}", num(path));
    }
    assert_eq!(num("/batches/0/streams"), 2.0);
    assert_eq!(num("/batches/1/streams"), 4.0);
    assert_eq!(num("/max_tokens"), 4.0);
    // The untraced run hashes nothing.
    assert_eq!(num("/engine_no_trace/trace_chunks"), 0.0);
}

#[test]
fn bench_text_names_the_ratios() {
    let out = Command::new(env!("CARGO_BIN_EXE_verinfer"))
        .args([
            "bench",
            "--model",
            "tiny",
            "--tokens",
            "2",
            "--streams",
            "2",
        ])
        .output()
        .expect("runs the binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("burn/reference") && stdout.contains("batch/single"),
        "{stdout}"
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_verinfer"))
        .args(["bench", "--model", "tiny", "--streams", "0"])
        .output()
        .expect("runs the binary");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--streams"));
}
