//! SQL shared by both backends (SQLite accepts Postgres-style `$N` parameters through sqlx) and the one
//! implementation of the storage traits, instantiated per backend by [`impl_storage!`]. Only leasing differs
//! (`FOR UPDATE SKIP LOCKED` on Postgres); each backend writes its own `lease_jobs`.

/// Columns of a job row, in the order [`impl_storage!`]'s row mapper reads them by name.
macro_rules! job_columns {
    () => {
        "id, request_id, choice_index, max_tokens, temperature_milli, top_p_milli, seed, state, executor, \
         lease_expires_at, attempt, tokens, finish_reason, trace_root, op_count, executor_address, signature, \
         output_hash, leaf_hash, executed_at, batch_number, leaf_index, l1_tx"
    };
}

/// Columns of an API key with its usage.
macro_rules! key_select {
    () => {
        "SELECT k.id, k.prefix, k.name, k.created_at, k.revoked_at, k.rpm_limit, k.tpm_limit, \
         COALESCE(u.requests, 0) AS requests, COALESCE(u.prompt_tokens, 0) AS prompt_tokens, \
         COALESCE(u.completion_tokens, 0) AS completion_tokens \
         FROM api_keys k LEFT JOIN key_usage u ON u.key_id = k.id"
    };
}

pub(super) const INSERT_REQUEST: &str = "INSERT INTO requests (id, kind, model, model_root, key_id, created_at, \
     prompt_tokens, prompt_len, prompt_root, n, options) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

pub(super) const INSERT_JOB: &str = "INSERT INTO jobs (request_id, choice_index, max_tokens, temperature_milli, \
     top_p_milli, seed, state, tokens, updated_at, logprobs_top) VALUES ($1, $2, $3, $4, $5, $6, 'queued', $7, $8, $9)";

pub(super) const ADD_REQUEST_USAGE: &str = "INSERT INTO key_usage (key_id, requests, prompt_tokens, \
     completion_tokens) VALUES ($1, 1, $2, 0) ON CONFLICT (key_id) DO UPDATE SET \
     requests = key_usage.requests + 1, prompt_tokens = key_usage.prompt_tokens + excluded.prompt_tokens";

pub(super) const ADD_COMPLETION_USAGE: &str = "UPDATE key_usage SET completion_tokens = completion_tokens + $1 \
     WHERE key_id = (SELECT key_id FROM requests WHERE id = $2)";

pub(super) const SELECT_REQUEST: &str = "SELECT id, kind, model, model_root, key_id, created_at, prompt_tokens, \
     prompt_root, n, options FROM requests WHERE id = $1";

pub(super) const SELECT_PROGRESS: &str = "SELECT choice_index, state, tokens, finish_reason, logprobs FROM jobs \
     WHERE request_id = $1 ORDER BY choice_index";

pub(super) const SELECT_JOBS: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM jobs WHERE request_id = $1 ORDER BY choice_index"
);

pub(super) const SELECT_JOB: &str = concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = $1");

pub(super) const QUEUE_DEPTH: &str = "SELECT state, COUNT(*) AS c FROM jobs \
     WHERE state IN ('queued', 'leased') GROUP BY state";

pub(super) const HEARTBEAT: &str = "UPDATE jobs SET lease_expires_at = $1, updated_at = $2 \
     WHERE id = $3 AND attempt = $4 AND executor = $5 AND state = 'leased'";

pub(super) const UPDATE_TOKENS: &str = "UPDATE jobs SET tokens = $1, logprobs = $2, updated_at = $3 \
     WHERE id = $4 AND attempt = $5 AND executor = $6 AND state = 'leased' AND length(tokens) = $7";

pub(super) const COMPLETE_JOB: &str = "UPDATE jobs SET state = 'executed', tokens = $1, logprobs = $2, \
     finish_reason = $3, trace_root = $4, op_count = $5, executor_address = $6, signature = $7, output_hash = $8, \
     leaf_hash = $9, executed_at = $10, updated_at = $10, lease_expires_at = NULL \
     WHERE id = $11 AND attempt = $12 AND executor = $13 AND state = 'leased'";

/// The logprobs setting and the stored logprobs of a job.
pub(super) const SELECT_LOGPROBS: &str = "SELECT logprobs_top, logprobs FROM jobs WHERE id = $1";

/// Stored `logprobs_top` (0..=20) as `u8`.
pub(super) fn to_top(v: Option<i64>) -> Result<Option<u8>, super::StorageError> {
    v.map(|v| {
        u8::try_from(v).map_err(|_| {
            super::StorageError::Corrupt(format!("logprobs_top = {v} is out of range"))
        })
    })
    .transpose()
}

pub(super) const CREATE_KEY: &str = "INSERT INTO api_keys (key_hash, prefix, name, created_at, rpm_limit, \
     tpm_limit) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id";

pub(super) const KEY_BY_HASH: &str = concat!(key_select!(), " WHERE k.key_hash = $1");

pub(super) const KEY_BY_ID: &str = concat!(key_select!(), " WHERE k.id = $1");

pub(super) const LIST_KEYS: &str = concat!(key_select!(), " ORDER BY k.id");

pub(super) const REVOKE_KEY: &str =
    "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL";

/// Stored non-negative integer (`i64`) as `u64`.
pub(super) fn to_u64(v: i64, what: &str) -> Result<u64, super::StorageError> {
    u64::try_from(v).map_err(|_| super::StorageError::Corrupt(format!("{what} = {v} is negative")))
}

/// Stored integer as `u32`.
pub(super) fn to_u32(v: i64, what: &str) -> Result<u32, super::StorageError> {
    u32::try_from(v)
        .map_err(|_| super::StorageError::Corrupt(format!("{what} = {v} is out of range")))
}

/// `u64` limits stored as `i64` (saturating).
pub(super) fn from_u64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Stored 32 bytes.
pub(super) fn to_b256(v: &[u8], what: &str) -> Result<protocol::B256, super::StorageError> {
    <[u8; 32]>::try_from(v)
        .map(protocol::B256::from)
        .map_err(|_| super::StorageError::Corrupt(format!("{what} has {} bytes, not 32", v.len())))
}

/// Stored finish reason.
pub(super) fn to_finish(v: i64) -> Result<protocol::FinishReason, super::StorageError> {
    u8::try_from(v)
        .ok()
        .and_then(|b| protocol::FinishReason::try_from(b).ok())
        .ok_or_else(|| super::StorageError::Corrupt(format!("finish_reason = {v}")))
}

/// Stored job state.
pub(super) fn to_state(v: &str) -> Result<super::JobState, super::StorageError> {
    super::JobState::parse(v)
        .ok_or_else(|| super::StorageError::Corrupt(format!("job state {v:?}")))
}

/// Stored request id.
pub(super) fn to_request_id(v: &[u8]) -> Result<crate::ids::RequestId, super::StorageError> {
    crate::ids::RequestId::from_slice(v)
        .ok_or_else(|| super::StorageError::Corrupt(format!("request id of {} bytes", v.len())))
}

/// Sampling parameters from their stored integers.
pub(super) fn to_params(
    choice_index: i64,
    max_tokens: i64,
    temperature_milli: i64,
    top_p_milli: i64,
    seed: i64,
) -> Result<protocol::SamplingParams, super::StorageError> {
    Ok(protocol::SamplingParams {
        max_tokens: to_u32(max_tokens, "max_tokens")?,
        temperature_milli: to_u32(temperature_milli, "temperature_milli")?,
        top_p_milli: to_u32(top_p_milli, "top_p_milli")?,
        // The seed is stored as the bit pattern of the u64.
        seed: seed as u64,
        choice_index: to_u32(choice_index, "choice_index")?,
    })
}

/// Implements [`super::RequestStore`], [`super::KeyStore`] and [`super::JobQueue`] (leasing through the backend's
/// own `lease_jobs`) for a backend struct with `writer()`, `reader()` pools and a `clock` field.
macro_rules! impl_storage {
    ($storage:ty, $row:ty) => {
        mod shared_impl {
            use super::*;
            use protocol::{Address, LeafSignature};
            use sqlx::Row;
            use std::time::Duration;
            use vir::logprobs::TokenLogprobs;
            use $crate::ids::{RequestId, RequestKind};
            use $crate::storage::sql::{self, *};
            use $crate::storage::{
                ApiKeyRecord, ChoiceProgress, JobOutcome, JobRecord, JobState, KeyUsage, LeaseRef,
                LeasedJob, NewApiKey, NewRequest, QueueDepth, StorageError, StoredRequest,
                TokensStored, check_logprobs, decode_logprobs, decode_tokens, encode_logprobs,
                encode_tokens, merge_tokens,
            };

            pub(super) fn job_from_row(row: &$row) -> Result<JobRecord, StorageError> {
                let opt_b256 = |col: &str| -> Result<Option<protocol::B256>, StorageError> {
                    row.try_get::<Option<Vec<u8>>, _>(col)?
                        .map(|v| to_b256(&v, col))
                        .transpose()
                };
                let signature = row
                    .try_get::<Option<Vec<u8>>, _>("signature")?
                    .map(|v| {
                        <[u8; 65]>::try_from(v.as_slice())
                            .map(LeafSignature::from)
                            .map_err(|_| StorageError::Corrupt("signature length".into()))
                    })
                    .transpose()?;
                let executor_address = row
                    .try_get::<Option<Vec<u8>>, _>("executor_address")?
                    .map(|v| {
                        <[u8; 20]>::try_from(v.as_slice())
                            .map(Address::from)
                            .map_err(|_| StorageError::Corrupt("executor address length".into()))
                    })
                    .transpose()?;
                Ok(JobRecord {
                    job_id: row.try_get("id")?,
                    request_id: to_request_id(&row.try_get::<Vec<u8>, _>("request_id")?)?,
                    params: to_params(
                        row.try_get("choice_index")?,
                        row.try_get("max_tokens")?,
                        row.try_get("temperature_milli")?,
                        row.try_get("top_p_milli")?,
                        row.try_get("seed")?,
                    )?,
                    state: to_state(&row.try_get::<String, _>("state")?)?,
                    executor: row.try_get("executor")?,
                    lease_expires_ms: row.try_get("lease_expires_at")?,
                    attempt: to_u32(row.try_get("attempt")?, "attempt")?,
                    tokens: decode_tokens(&row.try_get::<Vec<u8>, _>("tokens")?)?,
                    finish_reason: row
                        .try_get::<Option<i64>, _>("finish_reason")?
                        .map(to_finish)
                        .transpose()?,
                    trace_root: opt_b256("trace_root")?,
                    op_count: row
                        .try_get::<Option<i64>, _>("op_count")?
                        .map(|v| to_u64(v, "op_count"))
                        .transpose()?,
                    executor_address,
                    signature,
                    output_hash: opt_b256("output_hash")?,
                    leaf_hash: opt_b256("leaf_hash")?,
                    executed_ms: row.try_get("executed_at")?,
                    batch_number: row
                        .try_get::<Option<i64>, _>("batch_number")?
                        .map(|v| to_u64(v, "batch_number"))
                        .transpose()?,
                    leaf_index: row
                        .try_get::<Option<i64>, _>("leaf_index")?
                        .map(|v| to_u64(v, "leaf_index"))
                        .transpose()?,
                    l1_tx: opt_b256("l1_tx")?,
                })
            }

            fn key_from_row(row: &$row) -> Result<ApiKeyRecord, StorageError> {
                let opt_u64 = |col: &str| -> Result<Option<u64>, StorageError> {
                    row.try_get::<Option<i64>, _>(col)?
                        .map(|v| to_u64(v, col))
                        .transpose()
                };
                Ok(ApiKeyRecord {
                    id: row.try_get("id")?,
                    prefix: row.try_get("prefix")?,
                    name: row.try_get("name")?,
                    created_ms: row.try_get("created_at")?,
                    revoked_ms: row.try_get("revoked_at")?,
                    rpm_limit: opt_u64("rpm_limit")?,
                    tpm_limit: opt_u64("tpm_limit")?,
                    usage: KeyUsage {
                        requests: to_u64(row.try_get("requests")?, "requests")?,
                        prompt_tokens: to_u64(row.try_get("prompt_tokens")?, "prompt_tokens")?,
                        completion_tokens: to_u64(
                            row.try_get("completion_tokens")?,
                            "completion_tokens",
                        )?,
                    },
                })
            }

            /// Maps a unique-key violation on insert to [`StorageError::DuplicateRequest`].
            fn duplicate(id: RequestId) -> impl FnOnce(sqlx::Error) -> StorageError {
                move |e| match &e {
                    sqlx::Error::Database(db) if db.is_unique_violation() => {
                        StorageError::DuplicateRequest(id)
                    }
                    _ => StorageError::Database(e),
                }
            }

            pub(super) fn lease_ms(lease: Duration) -> i64 {
                i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 4)
            }

            #[async_trait::async_trait]
            impl $crate::storage::RequestStore for $storage {
                async fn insert_request(&self, request: &NewRequest) -> Result<(), StorageError> {
                    let id = request.id;
                    let mut tx = self.writer().begin().await?;
                    sqlx::query(sql::INSERT_REQUEST)
                        .bind(id.0.as_slice())
                        .bind(request.kind.as_str())
                        .bind(request.model.as_str())
                        .bind(request.model_root.as_slice())
                        .bind(request.key_id)
                        .bind(request.created_ms)
                        .bind(encode_tokens(&request.prompt_tokens))
                        .bind(request.prompt_tokens.len() as i64)
                        .bind(request.prompt_root.as_slice())
                        .bind(request.choices.len() as i64)
                        .bind(request.options.as_str())
                        .execute(&mut *tx)
                        .await
                        .map_err(duplicate(id))?;
                    let empty: &[u8] = &[];
                    for params in &request.choices {
                        sqlx::query(sql::INSERT_JOB)
                            .bind(id.0.as_slice())
                            .bind(i64::from(params.choice_index))
                            .bind(i64::from(params.max_tokens))
                            .bind(i64::from(params.temperature_milli))
                            .bind(i64::from(params.top_p_milli))
                            .bind(params.seed as i64)
                            .bind(empty)
                            .bind(request.created_ms)
                            .bind(request.logprobs.map(i64::from))
                            .execute(&mut *tx)
                            .await?;
                    }
                    if let Some(key_id) = request.key_id {
                        sqlx::query(sql::ADD_REQUEST_USAGE)
                            .bind(key_id)
                            .bind(request.prompt_tokens.len() as i64)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn request(
                    &self,
                    id: RequestId,
                ) -> Result<Option<StoredRequest>, StorageError> {
                    let Some(row) = sqlx::query(sql::SELECT_REQUEST)
                        .bind(id.0.as_slice())
                        .fetch_optional(self.reader())
                        .await?
                    else {
                        return Ok(None);
                    };
                    let kind: String = row.try_get("kind")?;
                    Ok(Some(StoredRequest {
                        id: to_request_id(&row.try_get::<Vec<u8>, _>("id")?)?,
                        kind: RequestKind::parse(&kind).ok_or_else(|| {
                            StorageError::Corrupt(format!("request kind {kind:?}"))
                        })?,
                        model: row.try_get("model")?,
                        model_root: to_b256(
                            &row.try_get::<Vec<u8>, _>("model_root")?,
                            "model_root",
                        )?,
                        key_id: row.try_get("key_id")?,
                        created_ms: row.try_get("created_at")?,
                        prompt_tokens: decode_tokens(&row.try_get::<Vec<u8>, _>("prompt_tokens")?)?,
                        prompt_root: to_b256(
                            &row.try_get::<Vec<u8>, _>("prompt_root")?,
                            "prompt_root",
                        )?,
                        n: to_u32(row.try_get("n")?, "n")?,
                        options: row.try_get("options")?,
                    }))
                }

                async fn progress(
                    &self,
                    id: RequestId,
                ) -> Result<Vec<ChoiceProgress>, StorageError> {
                    let rows = sqlx::query(sql::SELECT_PROGRESS)
                        .bind(id.0.as_slice())
                        .fetch_all(self.reader())
                        .await?;
                    rows.iter()
                        .map(|row| {
                            let tokens = decode_tokens(&row.try_get::<Vec<u8>, _>("tokens")?)?;
                            let logprobs =
                                decode_logprobs(&row.try_get::<Vec<u8>, _>("logprobs")?, &tokens)?;
                            Ok(ChoiceProgress {
                                choice_index: to_u32(row.try_get("choice_index")?, "choice_index")?,
                                state: to_state(&row.try_get::<String, _>("state")?)?,
                                tokens,
                                finish_reason: row
                                    .try_get::<Option<i64>, _>("finish_reason")?
                                    .map(to_finish)
                                    .transpose()?,
                                logprobs,
                            })
                        })
                        .collect()
                }

                async fn jobs(&self, id: RequestId) -> Result<Vec<JobRecord>, StorageError> {
                    let rows = sqlx::query(sql::SELECT_JOBS)
                        .bind(id.0.as_slice())
                        .fetch_all(self.reader())
                        .await?;
                    rows.iter().map(job_from_row).collect()
                }

                async fn queue_depth(&self) -> Result<QueueDepth, StorageError> {
                    let rows = sqlx::query(sql::QUEUE_DEPTH)
                        .fetch_all(self.reader())
                        .await?;
                    let mut depth = QueueDepth::default();
                    for row in &rows {
                        let count = to_u64(row.try_get("c")?, "count")?;
                        match to_state(&row.try_get::<String, _>("state")?)? {
                            JobState::Queued => depth.queued = count,
                            JobState::Leased => depth.leased = count,
                            _ => {}
                        }
                    }
                    Ok(depth)
                }
            }

            #[async_trait::async_trait]
            impl $crate::storage::JobQueue for $storage {
                async fn lease(
                    &self,
                    executor: &str,
                    max_jobs: u32,
                    lease: Duration,
                ) -> Result<Vec<LeasedJob>, StorageError> {
                    if max_jobs == 0 {
                        return Ok(Vec::new());
                    }
                    let now = self.clock.now_ms();
                    let mut jobs = self
                        .lease_jobs(executor, max_jobs, now, now.saturating_add(lease_ms(lease)))
                        .await?;
                    jobs.sort_by_key(|j| j.lease.job_id);
                    Ok(jobs)
                }

                async fn heartbeat(
                    &self,
                    executor: &str,
                    leases: &[LeaseRef],
                    lease: Duration,
                ) -> Result<Vec<LeaseRef>, StorageError> {
                    let now = self.clock.now_ms();
                    let expires = now.saturating_add(lease_ms(lease));
                    let mut renewed = Vec::with_capacity(leases.len());
                    for l in leases {
                        let done = sqlx::query(sql::HEARTBEAT)
                            .bind(expires)
                            .bind(now)
                            .bind(l.job_id)
                            .bind(i64::from(l.attempt))
                            .bind(executor)
                            .execute(self.writer())
                            .await?;
                        if done.rows_affected() == 1 {
                            renewed.push(*l);
                        }
                    }
                    Ok(renewed)
                }

                async fn append_tokens(
                    &self,
                    executor: &str,
                    lease: LeaseRef,
                    offset: u32,
                    tokens: &[u32],
                    logprobs: Option<&[TokenLogprobs]>,
                ) -> Result<TokensStored, StorageError> {
                    // Optimistic: read, merge, write only if the stored list did not change meanwhile.
                    for _ in 0..8 {
                        let job = self
                            .job(lease.job_id)
                            .await?
                            .ok_or(StorageError::UnknownJob(lease.job_id))?;
                        check_lease(&job, executor, lease)?;
                        let (top, stored_lp) = self.stored_logprobs(&job).await?;
                        check_logprobs(job.job_id, top, tokens, logprobs)?;
                        let Some(merged) = merge_tokens(job.job_id, &job.tokens, offset, tokens)?
                        else {
                            return Ok(TokensStored {
                                request_id: job.request_id,
                                stored: job.tokens.len(),
                            });
                        };
                        if merged.len() > job.params.max_tokens as usize {
                            return Err(StorageError::TooManyTokens {
                                job_id: job.job_id,
                                len: merged.len(),
                                max_tokens: job.params.max_tokens,
                            });
                        }
                        // The new tokens' logprobs follow those already stored.
                        let merged_lp = match (top, logprobs) {
                            (Some(_), Some(lp)) => {
                                let mut all = stored_lp;
                                let new = job.tokens.len() - offset as usize;
                                all.extend_from_slice(lp.get(new..).unwrap_or_default());
                                encode_logprobs(&all)
                            }
                            _ => Vec::new(),
                        };
                        let done = sqlx::query(sql::UPDATE_TOKENS)
                            .bind(encode_tokens(&merged))
                            .bind(merged_lp)
                            .bind(self.clock.now_ms())
                            .bind(lease.job_id)
                            .bind(i64::from(lease.attempt))
                            .bind(executor)
                            .bind((job.tokens.len() * 4) as i64)
                            .execute(self.writer())
                            .await?;
                        if done.rows_affected() == 1 {
                            return Ok(TokensStored {
                                request_id: job.request_id,
                                stored: merged.len(),
                            });
                        }
                    }
                    Err(StorageError::LeaseLost {
                        job_id: lease.job_id,
                        executor: executor.to_string(),
                        attempt: lease.attempt,
                    })
                }

                async fn complete(
                    &self,
                    executor: &str,
                    lease: LeaseRef,
                    outcome: &JobOutcome,
                ) -> Result<(), StorageError> {
                    let job = self
                        .job(lease.job_id)
                        .await?
                        .ok_or(StorageError::UnknownJob(lease.job_id))?;
                    if job.state.has_result()
                        && job.attempt == lease.attempt
                        && job.executor.as_deref() == Some(executor)
                        && job.leaf_hash == Some(outcome.leaf_hash)
                    {
                        return Ok(()); // a retried completion
                    }
                    check_lease(&job, executor, lease)?;
                    if outcome.tokens.len() > job.params.max_tokens as usize {
                        return Err(StorageError::TooManyTokens {
                            job_id: job.job_id,
                            len: outcome.tokens.len(),
                            max_tokens: job.params.max_tokens,
                        });
                    }
                    if let Some(index) = job
                        .tokens
                        .iter()
                        .zip(outcome.tokens.iter().chain(std::iter::repeat(&u32::MAX)))
                        .position(|(a, b)| a != b)
                    {
                        return Err(StorageError::TokenMismatch {
                            job_id: job.job_id,
                            index,
                        });
                    }
                    let (top, mut all_lp) = self.stored_logprobs(&job).await?;
                    check_logprobs(
                        job.job_id,
                        top,
                        &outcome.tokens,
                        outcome.logprobs.as_deref(),
                    )?;
                    // Tokens streamed earlier keep their stored logprobs.
                    if let (Some(_), Some(lp)) = (top, &outcome.logprobs) {
                        all_lp.extend_from_slice(lp.get(all_lp.len()..).unwrap_or_default());
                    }
                    let now = self.clock.now_ms();
                    let mut tx = self.writer().begin().await?;
                    let done = sqlx::query(sql::COMPLETE_JOB)
                        .bind(encode_tokens(&outcome.tokens))
                        .bind(encode_logprobs(&all_lp))
                        .bind(i64::from(u8::from(outcome.finish_reason)))
                        .bind(outcome.trace_root.as_slice())
                        .bind(sql::from_u64(outcome.op_count))
                        .bind(outcome.executor_address.as_slice())
                        .bind(outcome.signature.map(|s| s.as_bytes().to_vec()))
                        .bind(outcome.output_hash.as_slice())
                        .bind(outcome.leaf_hash.as_slice())
                        .bind(now)
                        .bind(lease.job_id)
                        .bind(i64::from(lease.attempt))
                        .bind(executor)
                        .execute(&mut *tx)
                        .await?;
                    if done.rows_affected() != 1 {
                        return Err(StorageError::LeaseLost {
                            job_id: lease.job_id,
                            executor: executor.to_string(),
                            attempt: lease.attempt,
                        });
                    }
                    sqlx::query(sql::ADD_COMPLETION_USAGE)
                        .bind(outcome.tokens.len() as i64)
                        .bind(job.request_id.0.as_slice())
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn job(&self, job_id: i64) -> Result<Option<JobRecord>, StorageError> {
                    sqlx::query(sql::SELECT_JOB)
                        .bind(job_id)
                        .fetch_optional(self.reader())
                        .await?
                        .as_ref()
                        .map(job_from_row)
                        .transpose()
                }
            }

            impl $storage {
                /// The job's logprobs setting and the logprobs stored for its tokens (at most one per token).
                async fn stored_logprobs(
                    &self,
                    job: &JobRecord,
                ) -> Result<(Option<u8>, Vec<TokenLogprobs>), StorageError> {
                    let row = sqlx::query(sql::SELECT_LOGPROBS)
                        .bind(job.job_id)
                        .fetch_one(self.writer())
                        .await?;
                    let top = sql::to_top(row.try_get("logprobs_top")?)?;
                    let bytes: Vec<u8> = row.try_get("logprobs")?;
                    // Read apart from the tokens: records past them belong to a newer write (whose tokens the
                    // caller's conditional update then finds changed).
                    let stored = decode_logprobs(&bytes, &job.tokens)?;
                    if top.is_some() && stored.len() != job.tokens.len() {
                        return Err(StorageError::Corrupt(format!(
                            "job {}: {} logprobs records for {} tokens",
                            job.job_id,
                            stored.len(),
                            job.tokens.len()
                        )));
                    }
                    Ok((top, stored))
                }
            }

            fn check_lease(
                job: &JobRecord,
                executor: &str,
                lease: LeaseRef,
            ) -> Result<(), StorageError> {
                if job.state == JobState::Leased
                    && job.attempt == lease.attempt
                    && job.executor.as_deref() == Some(executor)
                {
                    Ok(())
                } else {
                    Err(StorageError::LeaseLost {
                        job_id: lease.job_id,
                        executor: executor.to_string(),
                        attempt: lease.attempt,
                    })
                }
            }

            #[async_trait::async_trait]
            impl $crate::storage::KeyStore for $storage {
                async fn create_key(&self, key: &NewApiKey) -> Result<ApiKeyRecord, StorageError> {
                    let row = sqlx::query(sql::CREATE_KEY)
                        .bind(key.hash.as_slice())
                        .bind(key.prefix.as_str())
                        .bind(key.name.as_str())
                        .bind(key.created_ms)
                        .bind(key.rpm_limit.map(sql::from_u64))
                        .bind(key.tpm_limit.map(sql::from_u64))
                        .fetch_one(self.writer())
                        .await?;
                    let id: i64 = row.try_get("id")?;
                    let row = sqlx::query(sql::KEY_BY_ID)
                        .bind(id)
                        .fetch_one(self.writer())
                        .await?;
                    key_from_row(&row)
                }

                async fn key_by_hash(
                    &self,
                    hash: &[u8; 32],
                ) -> Result<Option<ApiKeyRecord>, StorageError> {
                    sqlx::query(sql::KEY_BY_HASH)
                        .bind(hash.as_slice())
                        .fetch_optional(self.reader())
                        .await?
                        .as_ref()
                        .map(key_from_row)
                        .transpose()
                }

                async fn list_keys(&self) -> Result<Vec<ApiKeyRecord>, StorageError> {
                    let rows = sqlx::query(sql::LIST_KEYS).fetch_all(self.reader()).await?;
                    rows.iter().map(key_from_row).collect()
                }

                async fn revoke_key(&self, id: i64) -> Result<bool, StorageError> {
                    let done = sqlx::query(sql::REVOKE_KEY)
                        .bind(self.clock.now_ms())
                        .bind(id)
                        .execute(self.writer())
                        .await?;
                    Ok(done.rows_affected() == 1)
                }
            }
        }
    };
}

pub(super) use impl_storage;

/// Builds a [`super::LeasedJob`] from the columns every backend's lease query returns.
#[allow(clippy::too_many_arguments)]
pub(super) fn leased_job(
    job_id: i64,
    attempt: i64,
    request_id: &[u8],
    params: protocol::SamplingParams,
    tokens: &[u8],
    logprobs_top: Option<i64>,
    model: String,
    model_root: &[u8],
    prompt_tokens: &[u8],
    lease_expires_ms: i64,
) -> Result<super::LeasedJob, super::StorageError> {
    Ok(super::LeasedJob {
        lease: super::LeaseRef {
            job_id,
            attempt: to_u32(attempt, "attempt")?,
        },
        request_id: to_request_id(request_id)?,
        model,
        model_root: to_b256(model_root, "model_root")?,
        prompt_tokens: super::decode_tokens(prompt_tokens)?,
        params,
        tokens: super::decode_tokens(tokens)?,
        logprobs: to_top(logprobs_top)?,
        lease_expires_ms,
    })
}
