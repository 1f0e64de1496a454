//! Per-key rate limits as token buckets refilled continuously: requests per minute, and tokens per minute counted as
//! prompt tokens + `max_tokens × n` at admission (what OpenAI counts). Buckets are per replica and in memory.

use crate::error::ApiError;
use crate::storage::ApiKeyRecord;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    level: f64,
    at: Instant,
}

impl Bucket {
    fn full(capacity: f64) -> Self {
        Self {
            level: capacity,
            at: Instant::now(),
        }
    }

    /// Refills, then takes `cost` if available; otherwise the seconds until it will be.
    fn take(&mut self, capacity: f64, cost: f64) -> Result<(), u64> {
        let rate = capacity / 60.0;
        let now = Instant::now();
        self.level = (self.level + now.duration_since(self.at).as_secs_f64() * rate).min(capacity);
        self.at = now;
        if self.level >= cost {
            self.level -= cost;
            Ok(())
        } else {
            // A zero limit never refills: answer with a minute.
            Err(((cost - self.level) / rate).ceil().clamp(1.0, 60.0) as u64)
        }
    }
}

/// The buckets of every key.
#[derive(Debug, Default)]
pub struct RateLimiter {
    requests: Mutex<HashMap<i64, Bucket>>,
    tokens: Mutex<HashMap<i64, Bucket>>,
}

impl RateLimiter {
    /// Counts one request against the key's requests-per-minute limit.
    pub fn check_request(&self, key: &ApiKeyRecord) -> Result<(), ApiError> {
        let Some(limit) = key.rpm_limit else {
            return Ok(());
        };
        let capacity = limit as f64;
        let mut map = self.requests.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = map.entry(key.id).or_insert_with(|| Bucket::full(capacity));
        bucket.take(capacity, 1.0).map_err(|retry| {
            ApiError::rate_limited(
                format!(
                    "Rate limit reached for requests per minute (RPM) on key {}: limit {limit}. Please try again in \
                     {retry}s.",
                    key.prefix
                ),
                "requests",
                retry,
            )
        })
    }

    /// Counts `tokens` against the key's tokens-per-minute limit.
    pub fn check_tokens(&self, key: &ApiKeyRecord, tokens: u64) -> Result<(), ApiError> {
        let Some(limit) = key.tpm_limit else {
            return Ok(());
        };
        let capacity = limit as f64;
        if tokens > limit {
            return Err(ApiError::rate_limited(
                format!(
                    "Request too large for key {}: tokens per minute (TPM) limit {limit}, requested {tokens}. Lower \
                     max_tokens or n, or shorten the prompt.",
                    key.prefix
                ),
                "tokens",
                60,
            ));
        }
        let mut map = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = map.entry(key.id).or_insert_with(|| Bucket::full(capacity));
        bucket.take(capacity, tokens as f64).map_err(|retry| {
            ApiError::rate_limited(
                format!(
                    "Rate limit reached for tokens per minute (TPM) on key {}: limit {limit}, requested {tokens}. \
                     Please try again in {retry}s.",
                    key.prefix
                ),
                "tokens",
                retry,
            )
        })
    }
}
