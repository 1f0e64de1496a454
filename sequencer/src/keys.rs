//! API keys: `sk-` + 64 hex digits of OS randomness, shown once at creation; only the sha256 is stored (a key has
//! 256 bits of entropy, so a fast hash is enough and keeps authentication cheap). Lookups are cached briefly;
//! revocation on this replica takes effect at once, on other replicas within the cache TTL.

use crate::error::ApiError;
use crate::storage::{ApiKeyRecord, KeyStore, NewApiKey, StorageError};
use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Characters of a key kept for display.
pub const PREFIX_LEN: usize = 10;

/// Most cached lookups before the cache is cleared.
const CACHE_MAX: usize = 10_000;

/// A fresh key.
pub fn generate_key() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("sk-{}", hex::encode(bytes)))
}

/// sha256 of a key.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A key as shown once at creation.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CreatedKey {
    /// The key itself; not stored anywhere.
    pub key: String,
    /// The stored record.
    #[serde(flatten)]
    pub record: ApiKeyRecord,
}

/// Creates and stores a key.
pub async fn create_key(
    store: &dyn KeyStore,
    name: &str,
    rpm_limit: Option<u64>,
    tpm_limit: Option<u64>,
    now_ms: i64,
) -> Result<CreatedKey, KeyError> {
    let key = generate_key()?;
    let record = store
        .create_key(&NewApiKey {
            hash: hash_key(&key),
            prefix: key.chars().take(PREFIX_LEN).collect(),
            name: name.to_string(),
            created_ms: now_ms,
            rpm_limit,
            tpm_limit,
        })
        .await?;
    Ok(CreatedKey { key, record })
}

/// Failure to create a key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No randomness.
    #[error("no OS randomness for the key: {0}")]
    Random(#[from] getrandom::Error),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The bearer token of `Authorization: Bearer <token>`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Cached lookups: key hash → (when looked up, the record if any).
type KeyCache = HashMap<[u8; 32], (Instant, Option<ApiKeyRecord>)>;

/// Checks API keys against storage, with a short cache.
#[derive(Debug)]
pub struct Authenticator {
    ttl: Duration,
    cache: Mutex<KeyCache>,
}

impl Authenticator {
    /// An authenticator caching lookups for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The key record of the request's bearer token; 401 when missing, unknown or revoked.
    pub async fn authenticate(
        &self,
        store: &dyn KeyStore,
        headers: &HeaderMap,
    ) -> Result<ApiKeyRecord, ApiError> {
        let Some(key) = bearer(headers) else {
            return Err(ApiError::unauthorized(
                "You didn't provide an API key. You need to provide your API key in an Authorization header using \
                 Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            ));
        };
        let hash = hash_key(key);
        let cached = {
            let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            cache
                .get(&hash)
                .filter(|(at, _)| at.elapsed() < self.ttl)
                .map(|(_, r)| r.clone())
        };
        let record = match cached {
            Some(r) => r,
            None => {
                let r = store.key_by_hash(&hash).await?;
                let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
                cache.insert(hash, (Instant::now(), r.clone()));
                r
            }
        };
        let shown: String = key.chars().take(PREFIX_LEN).collect();
        match record {
            Some(r) if r.revoked_ms.is_none() => Ok(r),
            Some(_) => Err(ApiError::unauthorized(format!(
                "The API key {shown}… has been revoked."
            ))),
            None => Err(ApiError::unauthorized(format!(
                "Incorrect API key provided: {shown}…."
            ))),
        }
    }

    /// Forgets every cached lookup (after a key is created or revoked here).
    pub fn invalidate(&self) {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}
