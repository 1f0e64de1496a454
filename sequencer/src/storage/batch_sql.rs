//! SQL of [`super::BatchStore`], shared by both backends, and its one implementation, instantiated per backend by
//! [`impl_batch_store!`] (only the leader lock differs: each backend provides `new_leader_lock`).

/// Executed jobs not in a batch yet (`j` = jobs).
macro_rules! unbatched_where {
    () => {
        " WHERE j.state = 'executed' AND j.batch_number IS NULL"
    };
}

/// Columns of a batch row (the data itself is read on its own).
macro_rules! batch_columns {
    () => {
        "number, status, batch_root, leaf_hashes, da_commitment, CAST(length(data) AS BIGINT) AS data_bytes, \
         raw_bytes, prev_state_root, state_root, planned_at, l1_batch_id, l1_tx, l1_block, posted_at, gas_used, \
         finalizes_at, final_tx, finalized_at"
    };
}

pub(super) const UNBATCHED_SUMMARY: &str = concat!(
    "SELECT COUNT(*) AS c, MIN(j.executed_at) AS oldest, \
     CAST(COALESCE(SUM(r.prompt_len), 0) AS BIGINT) AS prompt_tokens, \
     CAST(COALESCE(SUM(length(j.tokens)), 0) AS BIGINT) AS output_bytes \
     FROM jobs j JOIN requests r ON r.id = j.request_id",
    unbatched_where!()
);

pub(super) const UNBATCHED_JOBS: &str = concat!(
    "SELECT j.id, j.request_id, j.choice_index, j.max_tokens, j.temperature_milli, j.top_p_milli, j.seed, \
     j.state, j.executor, j.lease_expires_at, j.attempt, j.tokens, j.finish_reason, j.trace_root, j.op_count, \
     j.executor_address, j.signature, j.output_hash, j.leaf_hash, j.executed_at, j.batch_number, j.leaf_index, \
     j.l1_tx, r.model_root, r.prompt_root, r.prompt_tokens \
     FROM jobs j JOIN requests r ON r.id = j.request_id",
    unbatched_where!(),
    " ORDER BY j.executed_at, j.id LIMIT $1"
);

pub(super) const REJECT_JOB: &str = "UPDATE jobs SET state = 'invalid', updated_at = $1 \
     WHERE id = $2 AND state = 'executed' AND batch_number IS NULL";

pub(super) const BATCH_HEAD: &str =
    "SELECT number, state_root FROM batches ORDER BY number DESC LIMIT 1";

pub(super) const INSERT_BATCH: &str = "INSERT INTO batches (number, status, batch_root, leaf_count, \
     leaf_hashes, data, da_commitment, raw_bytes, prev_state_root, state_root, planned_at) \
     VALUES ($1, 'planned', $2, $3, $4, $5, $6, $7, $8, $9, $10)";

pub(super) const ASSIGN_JOB: &str = "UPDATE jobs SET batch_number = $1, leaf_index = $2, updated_at = $3 \
     WHERE id = $4 AND state = 'executed' AND batch_number IS NULL";

pub(super) const SELECT_BATCH: &str = concat!(
    "SELECT ",
    batch_columns!(),
    " FROM batches WHERE number = $1"
);

pub(super) const SELECT_BATCH_BY_L1: &str = concat!(
    "SELECT ",
    batch_columns!(),
    " FROM batches WHERE l1_batch_id = $1"
);

pub(super) const SELECT_BATCHES: &str = concat!(
    "SELECT ",
    batch_columns!(),
    " FROM batches WHERE status = $1 ORDER BY number LIMIT $2"
);

pub(super) const SELECT_BATCHES_DUE: &str = concat!(
    "SELECT ",
    batch_columns!(),
    " FROM batches WHERE status = 'posted' AND finalizes_at <= $1 ORDER BY number LIMIT $2"
);

pub(super) const SELECT_BATCH_DATA: &str = "SELECT data FROM batches WHERE number = $1";

pub(super) const MARK_POSTED: &str = "UPDATE batches SET status = 'posted', l1_batch_id = $1, \
     prev_state_root = $2, state_root = $3, l1_tx = $4, l1_block = $5, posted_at = $6, gas_used = $7, \
     finalizes_at = $8 WHERE number = $9 AND status = 'planned'";

pub(super) const POST_JOBS: &str = "UPDATE jobs SET state = 'posted', l1_tx = $1, updated_at = $2 \
     WHERE batch_number = $3 AND state = 'executed'";

pub(super) const MARK_FINAL: &str = "UPDATE batches SET status = 'final', final_tx = $1, finalized_at = $2 \
     WHERE number = $3 AND status = 'posted'";

pub(super) const FINAL_JOBS: &str =
    "UPDATE jobs SET state = 'final', updated_at = $1 WHERE batch_number = $2 AND state = 'posted'";

pub(super) const INVALIDATE_LEAF: &str = "UPDATE jobs SET state = 'invalid', updated_at = $1 \
     WHERE batch_number = (SELECT number FROM batches WHERE l1_batch_id = $2) AND leaf_index = $3 \
     AND state IN ('executed', 'posted', 'final')";

pub(super) const LOAD_CURSOR: &str = "SELECT encoded FROM l1_cursors WHERE name = $1";

pub(super) const SAVE_CURSOR: &str = "INSERT INTO l1_cursors (name, encoded) VALUES ($1, $2) \
     ON CONFLICT (name) DO UPDATE SET encoded = excluded.encoded";

/// Concatenated 32-byte hashes.
pub(super) fn encode_hashes(hashes: &[protocol::B256]) -> Vec<u8> {
    hashes.iter().flat_map(|h| h.0).collect()
}

/// Inverse of [`encode_hashes`].
pub(super) fn decode_hashes(bytes: &[u8]) -> Result<Vec<protocol::B256>, super::StorageError> {
    if !bytes.len().is_multiple_of(32) {
        return Err(super::StorageError::Corrupt(format!(
            "leaf hash list of {} bytes is not a multiple of 32",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(32)
        .map(protocol::B256::from_slice)
        .collect())
}

/// Implements [`super::BatchStore`] for a backend struct with `writer()`, `reader()` pools, a `clock` field and a
/// `new_leader_lock(key)` method; job rows are read by the `job_from_row` of [`super::sql::impl_storage!`].
macro_rules! impl_batch_store {
    ($storage:ty, $row:ty) => {
        mod batch_impl {
            use super::*;
            use protocol::B256;
            use sqlx::Row;
            use $crate::storage::batch_sql::{self, decode_hashes, encode_hashes};
            use $crate::storage::leader::LeaderLock;
            use $crate::storage::sql::{from_u64, to_b256, to_u64};
            use $crate::storage::{
                BatchHead, BatchRecord, BatchStatus, NewBatch, PostedInfo, StorageError,
                UnbatchedJob, UnbatchedSummary,
            };

            fn opt_u64(row: &$row, col: &str) -> Result<Option<u64>, StorageError> {
                row.try_get::<Option<i64>, _>(col)?
                    .map(|v| to_u64(v, col))
                    .transpose()
            }

            fn opt_b256(row: &$row, col: &str) -> Result<Option<B256>, StorageError> {
                row.try_get::<Option<Vec<u8>>, _>(col)?
                    .map(|v| to_b256(&v, col))
                    .transpose()
            }

            fn b256(row: &$row, col: &str) -> Result<B256, StorageError> {
                to_b256(&row.try_get::<Vec<u8>, _>(col)?, col)
            }

            fn batch_from_row(row: &$row) -> Result<BatchRecord, StorageError> {
                let status: String = row.try_get("status")?;
                Ok(BatchRecord {
                    number: to_u64(row.try_get("number")?, "number")?,
                    status: BatchStatus::parse(&status)
                        .ok_or_else(|| StorageError::Corrupt(format!("batch status {status:?}")))?,
                    batch_root: b256(row, "batch_root")?,
                    leaf_hashes: decode_hashes(&row.try_get::<Vec<u8>, _>("leaf_hashes")?)?,
                    da_commitment: b256(row, "da_commitment")?,
                    data_bytes: to_u64(row.try_get("data_bytes")?, "data_bytes")?,
                    raw_bytes: to_u64(row.try_get("raw_bytes")?, "raw_bytes")?,
                    prev_state_root: b256(row, "prev_state_root")?,
                    state_root: b256(row, "state_root")?,
                    planned_ms: row.try_get("planned_at")?,
                    l1_batch_id: opt_u64(row, "l1_batch_id")?,
                    l1_tx: opt_b256(row, "l1_tx")?,
                    l1_block: opt_u64(row, "l1_block")?,
                    posted_at: opt_u64(row, "posted_at")?,
                    gas_used: opt_u64(row, "gas_used")?,
                    finalizes_at: opt_u64(row, "finalizes_at")?,
                    final_tx: opt_b256(row, "final_tx")?,
                    finalized_ms: row.try_get("finalized_at")?,
                })
            }

            fn conflict(number: u64) -> impl FnOnce(sqlx::Error) -> StorageError {
                move |e| match &e {
                    sqlx::Error::Database(db) if db.is_unique_violation() => {
                        StorageError::BatchConflict {
                            number,
                            reason: "the batch number is taken".into(),
                        }
                    }
                    _ => StorageError::Database(e),
                }
            }

            #[async_trait::async_trait]
            impl $crate::storage::BatchStore for $storage {
                async fn unbatched_summary(&self) -> Result<UnbatchedSummary, StorageError> {
                    let row = sqlx::query(batch_sql::UNBATCHED_SUMMARY)
                        .fetch_one(self.reader())
                        .await?;
                    Ok(UnbatchedSummary {
                        count: to_u64(row.try_get("c")?, "count")?,
                        oldest_executed_ms: row.try_get("oldest")?,
                        prompt_tokens: to_u64(row.try_get("prompt_tokens")?, "prompt_tokens")?,
                        output_tokens: to_u64(row.try_get("output_bytes")?, "output_bytes")? / 4,
                    })
                }

                async fn unbatched_jobs(
                    &self,
                    limit: u32,
                ) -> Result<Vec<UnbatchedJob>, StorageError> {
                    let rows = sqlx::query(batch_sql::UNBATCHED_JOBS)
                        .bind(i64::from(limit))
                        .fetch_all(self.reader())
                        .await?;
                    rows.iter()
                        .map(|row| {
                            Ok(UnbatchedJob {
                                job: super::shared_impl::job_from_row(row)?,
                                model_root: b256(row, "model_root")?,
                                prompt_root: b256(row, "prompt_root")?,
                                prompt_tokens: $crate::storage::decode_tokens(
                                    &row.try_get::<Vec<u8>, _>("prompt_tokens")?,
                                )?,
                            })
                        })
                        .collect()
                }

                async fn reject_job(&self, job_id: i64) -> Result<bool, StorageError> {
                    let done = sqlx::query(batch_sql::REJECT_JOB)
                        .bind(self.clock.now_ms())
                        .bind(job_id)
                        .execute(self.writer())
                        .await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn batch_head(&self) -> Result<Option<BatchHead>, StorageError> {
                    // From the writer: the next plan must chain on the latest committed batch.
                    let Some(row) = sqlx::query(batch_sql::BATCH_HEAD)
                        .fetch_optional(self.writer())
                        .await?
                    else {
                        return Ok(None);
                    };
                    Ok(Some(BatchHead {
                        number: to_u64(row.try_get("number")?, "number")?,
                        state_root: b256(&row, "state_root")?,
                    }))
                }

                async fn insert_batch(&self, batch: &NewBatch) -> Result<(), StorageError> {
                    let now = self.clock.now_ms();
                    let mut tx = self.writer().begin().await?;
                    sqlx::query(batch_sql::INSERT_BATCH)
                        .bind(from_u64(batch.number))
                        .bind(batch.batch_root.as_slice())
                        .bind(batch.leaf_hashes.len() as i64)
                        .bind(encode_hashes(&batch.leaf_hashes))
                        .bind(batch.data.as_slice())
                        .bind(batch.da_commitment.as_slice())
                        .bind(from_u64(batch.raw_bytes))
                        .bind(batch.prev_state_root.as_slice())
                        .bind(batch.state_root.as_slice())
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(conflict(batch.number))?;
                    for (index, job_id) in batch.job_ids.iter().enumerate() {
                        let done = sqlx::query(batch_sql::ASSIGN_JOB)
                            .bind(from_u64(batch.number))
                            .bind(index as i64)
                            .bind(now)
                            .bind(*job_id)
                            .execute(&mut *tx)
                            .await?;
                        if done.rows_affected() != 1 {
                            // Dropping the transaction rolls it back.
                            return Err(StorageError::BatchConflict {
                                number: batch.number,
                                reason: format!(
                                    "job {job_id} is no longer an unbatched executed job"
                                ),
                            });
                        }
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn batch(&self, number: u64) -> Result<Option<BatchRecord>, StorageError> {
                    sqlx::query(batch_sql::SELECT_BATCH)
                        .bind(from_u64(number))
                        .fetch_optional(self.reader())
                        .await?
                        .as_ref()
                        .map(batch_from_row)
                        .transpose()
                }

                async fn batch_by_l1_id(
                    &self,
                    l1_batch_id: u64,
                ) -> Result<Option<BatchRecord>, StorageError> {
                    sqlx::query(batch_sql::SELECT_BATCH_BY_L1)
                        .bind(from_u64(l1_batch_id))
                        .fetch_optional(self.reader())
                        .await?
                        .as_ref()
                        .map(batch_from_row)
                        .transpose()
                }

                async fn batches(
                    &self,
                    status: BatchStatus,
                    limit: u32,
                ) -> Result<Vec<BatchRecord>, StorageError> {
                    let rows = sqlx::query(batch_sql::SELECT_BATCHES)
                        .bind(status.as_str())
                        .bind(i64::from(limit))
                        .fetch_all(self.writer())
                        .await?;
                    rows.iter().map(batch_from_row).collect()
                }

                async fn batches_due(
                    &self,
                    l1_now: u64,
                    limit: u32,
                ) -> Result<Vec<BatchRecord>, StorageError> {
                    let rows = sqlx::query(batch_sql::SELECT_BATCHES_DUE)
                        .bind(from_u64(l1_now))
                        .bind(i64::from(limit))
                        .fetch_all(self.writer())
                        .await?;
                    rows.iter().map(batch_from_row).collect()
                }

                async fn batch_data(&self, number: u64) -> Result<Option<Vec<u8>>, StorageError> {
                    let row = sqlx::query(batch_sql::SELECT_BATCH_DATA)
                        .bind(from_u64(number))
                        .fetch_optional(self.writer())
                        .await?;
                    Ok(row.map(|r| r.try_get::<Vec<u8>, _>("data")).transpose()?)
                }

                async fn mark_batch_posted(
                    &self,
                    number: u64,
                    info: &PostedInfo,
                ) -> Result<bool, StorageError> {
                    let mut tx = self.writer().begin().await?;
                    let done = sqlx::query(batch_sql::MARK_POSTED)
                        .bind(from_u64(info.l1_batch_id))
                        .bind(info.prev_state_root.as_slice())
                        .bind(info.state_root.as_slice())
                        .bind(info.tx_hash.as_slice())
                        .bind(from_u64(info.block_number))
                        .bind(from_u64(info.posted_at))
                        .bind(info.gas_used.map(from_u64))
                        .bind(from_u64(info.finalizes_at))
                        .bind(from_u64(number))
                        .execute(&mut *tx)
                        .await?;
                    if done.rows_affected() != 1 {
                        return Ok(false);
                    }
                    sqlx::query(batch_sql::POST_JOBS)
                        .bind(info.tx_hash.as_slice())
                        .bind(self.clock.now_ms())
                        .bind(from_u64(number))
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(true)
                }

                async fn mark_batch_final(
                    &self,
                    number: u64,
                    final_tx: Option<B256>,
                ) -> Result<bool, StorageError> {
                    let now = self.clock.now_ms();
                    let mut tx = self.writer().begin().await?;
                    let done = sqlx::query(batch_sql::MARK_FINAL)
                        .bind(final_tx.map(|t| t.to_vec()))
                        .bind(now)
                        .bind(from_u64(number))
                        .execute(&mut *tx)
                        .await?;
                    if done.rows_affected() != 1 {
                        return Ok(false);
                    }
                    sqlx::query(batch_sql::FINAL_JOBS)
                        .bind(now)
                        .bind(from_u64(number))
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(true)
                }

                async fn invalidate_leaf(
                    &self,
                    l1_batch_id: u64,
                    leaf_index: u64,
                ) -> Result<bool, StorageError> {
                    let done = sqlx::query(batch_sql::INVALIDATE_LEAF)
                        .bind(self.clock.now_ms())
                        .bind(from_u64(l1_batch_id))
                        .bind(from_u64(leaf_index))
                        .execute(self.writer())
                        .await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn load_cursor(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
                    let row = sqlx::query(batch_sql::LOAD_CURSOR)
                        .bind(name)
                        .fetch_optional(self.writer())
                        .await?;
                    Ok(row
                        .map(|r| r.try_get::<Vec<u8>, _>("encoded"))
                        .transpose()?)
                }

                async fn save_cursor(&self, name: &str, cursor: &[u8]) -> Result<(), StorageError> {
                    sqlx::query(batch_sql::SAVE_CURSOR)
                        .bind(name)
                        .bind(cursor)
                        .execute(self.writer())
                        .await?;
                    Ok(())
                }

                fn leader_lock(&self, key: i64) -> Box<dyn LeaderLock> {
                    self.new_leader_lock(key)
                }
            }
        }
    };
}

pub(super) use impl_batch_store;
