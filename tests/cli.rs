//! The `verinfer` binary end to end: `model info`, `generate` (both engines, JSON and text), and argument errors.

use std::path::PathBuf;
use std::process::{Command, Output};

fn verinfer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_verinfer"))
        .args(args)
        .output()
        .expect("runs the binary")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn smollm2() -> String {
    let path = std::env::var_os("VERINFER_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/verinfer/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-model first",
        path.display()
    );
    path.display().to_string()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "stderr: {}", stderr(o));
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

#[test]
fn generate_json_has_the_documented_keys_and_is_deterministic() {
    let args = [
        "generate",
        "--model",
        "tiny",
        "--prompt",
        "hello world",
        "--max-tokens",
        "8",
        "--temperature",
        "0.9",
        "--seed",
        "4",
        "--json",
    ];
    let a = json(&verinfer(&args));
    for key in [
        "text",
        "token_ids",
        "trace_root",
        "op_count",
        "finish_reason",
        "model_root",
    ] {
        assert!(a.get(key).is_some(), "missing {key}: {a}");
    }
    assert_eq!(a["token_ids"].as_array().map(Vec::len), Some(8));
    assert!(
        a["trace_root"]
            .as_str()
            .is_some_and(|r| r.starts_with("0x") && r.len() == 66)
    );
    assert_eq!(json(&verinfer(&args)), a);
    let mut other = args;
    other[10] = "5";
    assert_ne!(json(&verinfer(&other))["token_ids"], a["token_ids"]);
}

#[test]
fn bad_arguments_fail_with_the_flag_named() {
    for (args, needle) in [
        (
            vec![
                "generate",
                "--model",
                "tiny",
                "--prompt",
                "x",
                "--temperature",
                "2.5",
            ],
            "--temperature",
        ),
        (
            vec![
                "generate", "--model", "tiny", "--prompt", "x", "--top-p", "0",
            ],
            "--top-p",
        ),
        (
            vec![
                "generate",
                "--model",
                "tiny",
                "--prompt",
                "x",
                "--max-tokens",
                "0",
            ],
            "--max-tokens",
        ),
        (
            vec![
                "generate",
                "--model",
                "tiny",
                "--prompt",
                "x",
                "--max-tokens",
                "300",
            ],
            "context length",
        ),
        (
            vec![
                "generate",
                "--model",
                "tiny",
                "--prompt",
                "x",
                "--engine",
                "float",
                "--temperature",
                "1",
            ],
            "greedy",
        ),
        (
            vec!["model", "info", "/nonexistent/model.gguf"],
            "/nonexistent/model.gguf",
        ),
    ] {
        let o = verinfer(&args);
        assert!(!o.status.success(), "{args:?} should fail");
        assert!(
            stderr(&o).contains(needle),
            "{args:?}: stderr lacks {needle:?}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn model_info_rejects_a_damaged_file_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.gguf");
    std::fs::write(&path, b"GGUF\x03\x00\x00\x00").expect("writes");
    let o = verinfer(&["model", "info", path.to_str().expect("utf-8 path")]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("truncated"), "{}", stderr(&o));
}

#[test]
fn model_info_reports_smollm2() {
    let o = verinfer(&["model", "info", &smollm2()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("parameters:    134,515,008"), "{out}");
    assert!(out.contains("layers:        30"), "{out}");
    assert!(out.contains("Q4_1: 210"), "{out}");
    assert!(out.contains("model root:    0x"), "{out}");
}

#[test]
fn generate_answers_the_capital_of_france_on_both_engines() {
    let model = smollm2();
    let base = [
        "generate",
        "--model",
        model.as_str(),
        "--chat",
        "--prompt",
        "What is the capital of France?",
    ];
    let o = verinfer(&[&base[..], &["--engine", "reference"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("The capital of France is Paris.\n"),
        "{out}"
    );
    assert!(
        out.contains("token ids:   [504, 3575, 282, 4649, 314, 7042, 30, 2]"),
        "{out}"
    );
    assert!(out.contains("trace root:  0x"), "{out}");
    let f = json(&verinfer(
        &[&base[..], &["--engine", "float", "--json"]].concat(),
    ));
    assert_eq!(f["text"], "The capital of France is Paris.");
    assert_eq!(f["trace_root"], serde_json::Value::Null);
}

#[test]
fn burn_engine_equals_the_reference_through_the_cli() {
    for temperature in ["0", "0.8"] {
        let args = |engine: &'static str| {
            vec![
                "generate",
                "--model",
                "tiny",
                "--prompt",
                "hello world",
                "--max-tokens",
                "10",
                "--temperature",
                temperature,
                "--seed",
                "9",
                "--json",
                "--engine",
                engine,
            ]
        };
        let reference = json(&verinfer(&args("reference")));
        let burn = json(&verinfer(&args("burn")));
        assert_eq!(burn["engine"], "burn");
        for key in [
            "token_ids",
            "trace_root",
            "op_count",
            "finish_reason",
            "text",
        ] {
            assert_eq!(
                burn[key], reference[key],
                "{key} at temperature {temperature}"
            );
        }
    }
}

#[test]
fn cuda_device_without_the_feature_is_a_clear_error() {
    if cfg!(feature = "cuda") {
        return;
    }
    let o = verinfer(&[
        "generate", "--model", "tiny", "--prompt", "x", "--engine", "burn", "--device", "cuda",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--features cuda"), "{}", stderr(&o));
}
