//! The executor's identity: a secp256k1 key ([`ExecutorKey`]) that signs inference leaves.
//!
//! The key is read from a file (hex, optional `0x`, surrounding whitespace ignored; on unix the file must not be
//! readable by group or others) or from the environment variable [`KEY_ENV`], or generated and written with mode
//! 0600. Its `Debug` and `Display` forms show only the address: the secret is never formatted.

use alloy_primitives::{Address, B256};
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::Eip712Domain;
use protocol::{InferenceLeaf, LeafSignature, SignatureError};
use std::fmt;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Environment variable holding the executor key as hex.
pub const KEY_ENV: &str = "VERINFER_EXECUTOR_KEY";

/// Why a key could not be loaded, written or used.
#[derive(Debug, Error)]
pub enum IdentityError {
    /// The key file could not be read.
    #[error("reading the executor key file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The key file is readable by group or others.
    #[error(
        "the executor key file {path} is readable by other users (mode {mode:03o}); \
         restrict it with `chmod 600 {path}`"
    )]
    Permissions { path: PathBuf, mode: u32 },
    /// The key text is not 32 bytes of hex, or not a valid secp256k1 scalar.
    #[error(
        "the executor key from {source_name} is not a valid secp256k1 private key ({why}); \
         expected 64 hex digits, optionally prefixed with 0x"
    )]
    Invalid { source_name: String, why: String },
    /// The environment variable is not set.
    #[error("{KEY_ENV} is not set: export it with the executor's private key as hex")]
    EnvMissing,
    /// The key file could not be written.
    #[error("writing the executor key file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Refusing to overwrite an existing key file.
    #[error("the executor key file {path} already exists; remove it or choose another path")]
    Exists { path: PathBuf },
    /// Signing failed.
    #[error("signing the inference leaf failed: {0}")]
    Sign(#[from] SignatureError),
}

/// The executor's signing key.
#[derive(Clone)]
pub struct ExecutorKey {
    signer: PrivateKeySigner,
}

impl ExecutorKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self {
            signer: PrivateKeySigner::random(),
        }
    }

    /// Parses a key from hex text (64 hex digits, optional `0x`, surrounding whitespace ignored). `source_name`
    /// names where the text came from in errors; the text itself is never echoed.
    pub fn from_hex(text: &str, source_name: &str) -> Result<Self, IdentityError> {
        let invalid = |why: String| IdentityError::Invalid {
            source_name: source_name.to_string(),
            why,
        };
        let t = text.trim();
        let t = t
            .strip_prefix("0x")
            .or_else(|| t.strip_prefix("0X"))
            .unwrap_or(t);
        if t.len() != 64 {
            return Err(invalid(format!("{} hex digits", t.len())));
        }
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(t.get(2 * i..2 * i + 2).unwrap_or("zz"), 16)
                .map_err(|_| invalid("not hexadecimal".into()))?;
        }
        let signer = PrivateKeySigner::from_bytes(&B256::from(bytes))
            .map_err(|_| invalid("zero or not below the curve order".into()))?;
        Ok(Self { signer })
    }

    /// Loads a key file. On unix, refuses a file readable by group or others.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, IdentityError> {
        let path = path.as_ref();
        let read = |source| IdentityError::Read {
            path: path.to_path_buf(),
            source,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map_err(read)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(IdentityError::Permissions {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        Self::from_hex(&text, &path.display().to_string())
    }

    /// Loads the key from [`KEY_ENV`].
    pub fn from_env() -> Result<Self, IdentityError> {
        let text = std::env::var(KEY_ENV).map_err(|_| IdentityError::EnvMissing)?;
        Self::from_hex(&text, KEY_ENV)
    }

    /// Generates a key and writes it to `path` as `0x`-prefixed hex with mode 0600 (on unix). Refuses to
    /// overwrite an existing file.
    pub fn write_new(path: impl AsRef<Path>) -> Result<Self, IdentityError> {
        use std::io::Write;
        let path = path.as_ref();
        let key = Self::generate();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                IdentityError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                IdentityError::Write {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        let write = |source| IdentityError::Write {
            path: path.to_path_buf(),
            source,
        };
        writeln!(file, "{}", key.signer.to_bytes()).map_err(write)?;
        file.sync_all().map_err(write)?;
        Ok(key)
    }

    /// The executor's address.
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// Signs `leaf` under `domain` (see `protocol::leaf_domain`) with [`protocol::sign_leaf`].
    pub fn sign_leaf(
        &self,
        leaf: &InferenceLeaf,
        domain: &Eip712Domain,
    ) -> Result<LeafSignature, IdentityError> {
        Ok(protocol::sign_leaf(leaf, domain, self.signer.credential())?)
    }

    /// The underlying alloy signer (for sending L1 transactions).
    pub fn signer(&self) -> &PrivateKeySigner {
        &self.signer
    }
}

impl fmt::Debug for ExecutorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutorKey")
            .field("address", &self.address())
            .finish_non_exhaustive()
    }
}

impl fmt::Display for ExecutorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "executor {}", self.address())
    }
}
