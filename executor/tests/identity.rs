//! The executor key: file and environment loading, permission and format errors that name the fix, generation
//! with mode 0600, signatures that recover to the key's address, and formatting that never shows the secret.

use alloy_primitives::{Address, B256};
use protocol::{FinishReason, InferenceLeaf, LEAF_VERSION, leaf_domain};
use verinfer_executor::{ExecutorKey, IdentityError};

const HEX: &str = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

fn leaf(executor: Address) -> InferenceLeaf {
    InferenceLeaf {
        version: LEAF_VERSION,
        requestId: B256::repeat_byte(1),
        modelRoot: B256::repeat_byte(2),
        promptRoot: B256::repeat_byte(3),
        paramsHash: B256::repeat_byte(4),
        outputHash: B256::repeat_byte(5),
        finishReason: FinishReason::Length as u8,
        traceRoot: B256::repeat_byte(6),
        opCount: 1234,
        executor,
    }
}

#[test]
fn parses_hex_with_prefix_and_whitespace() {
    let a = ExecutorKey::from_hex(HEX, "test").expect("plain");
    let b = ExecutorKey::from_hex(&format!("  0x{HEX}\n"), "test").expect("prefixed");
    assert_eq!(a.address(), b.address());
    for bad in [
        "",
        "0x12",
        &HEX[1..],
        &format!("{}g", &HEX[1..]),
        &"0".repeat(64),
    ] {
        let err = ExecutorKey::from_hex(bad, "VERINFER_EXECUTOR_KEY").expect_err(bad);
        let msg = err.to_string();
        assert!(matches!(err, IdentityError::Invalid { .. }), "{msg}");
        assert!(
            msg.contains("VERINFER_EXECUTOR_KEY") && msg.contains("64 hex digits"),
            "{msg}"
        );
    }
}

#[test]
fn formatting_never_shows_the_secret() {
    let key = ExecutorKey::from_hex(HEX, "test").expect("key");
    for text in [format!("{key:?}"), format!("{key}"), format!("{key:#?}")] {
        assert!(!text.to_lowercase().contains(HEX), "{text}");
        assert!(!text.to_lowercase().contains(&HEX[..16]), "{text}");
        let address = key.address().to_string().to_lowercase();
        assert!(text.to_lowercase().contains(&address), "{text}");
    }
}

#[test]
fn signature_recovers_to_the_address() {
    let key = ExecutorKey::generate();
    let domain = leaf_domain(31337, Address::repeat_byte(0x42));
    let leaf = leaf(key.address());
    let sig = key.sign_leaf(&leaf, &domain).expect("signs");
    assert_eq!(
        sig.recover(&leaf, &domain).expect("recovers"),
        key.address()
    );
    let other = leaf_domain(1, Address::repeat_byte(0x42));
    assert_ne!(sig.recover(&leaf, &other).ok(), Some(key.address()));
}

#[test]
fn files_are_written_private_and_loaded_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("executor.key");
    let key = ExecutorKey::write_new(&path).expect("writes");
    let err = ExecutorKey::write_new(&path).expect_err("exists");
    assert!(matches!(err, IdentityError::Exists { .. }), "{err}");
    assert_eq!(
        ExecutorKey::from_file(&path).expect("loads").address(),
        key.address()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = ExecutorKey::from_file(&path).expect_err("world-readable");
        let msg = err.to_string();
        assert!(
            matches!(err, IdentityError::Permissions { mode: 0o644, .. }),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("chmod 600 {}", path.display())),
            "{msg}"
        );
    }
    let missing = dir.path().join("missing.key");
    let err = ExecutorKey::from_file(&missing).expect_err("missing");
    assert!(err.to_string().contains("missing.key"), "{err}");
}

#[test]
fn loads_from_the_environment() {
    // The only test in this binary that touches the variable.
    unsafe { std::env::set_var(verinfer_executor::identity::KEY_ENV, format!("0x{HEX}")) };
    let key = ExecutorKey::from_env().expect("env key");
    assert_eq!(
        key.address(),
        ExecutorKey::from_hex(HEX, "t").expect("key").address()
    );
    unsafe { std::env::remove_var(verinfer_executor::identity::KEY_ENV) };
    assert!(matches!(
        ExecutorKey::from_env(),
        Err(IdentityError::EnvMissing)
    ));
}
