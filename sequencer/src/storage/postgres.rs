//! Postgres backend (production): one pool, leases taken with `SELECT … FOR UPDATE SKIP LOCKED` so any number of
//! sequencer replicas can serve one queue.

use super::batch_sql::impl_batch_store;
use super::sql::{self, impl_storage};
use super::{LeasedJob, StorageError};
use crate::clock::SharedClock;
use sqlx::Row;
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use std::fmt;
use std::time::Duration;

const LEASE_JOBS: &str = "WITH picked AS ( \
         SELECT id FROM jobs \
         WHERE state = 'queued' OR (state = 'leased' AND lease_expires_at < $1) \
         ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) \
     UPDATE jobs AS j SET state = 'leased', executor = $3, lease_expires_at = $4, attempt = j.attempt + 1, \
         updated_at = $1 \
     FROM picked, requests AS r \
     WHERE j.id = picked.id AND r.id = j.request_id \
     RETURNING j.id, j.attempt, j.request_id, j.choice_index, j.max_tokens, j.temperature_milli, j.top_p_milli, \
         j.seed, j.tokens, j.logprobs_top, r.model, r.model_root, r.prompt_tokens";

/// The Postgres migrations, embedded in the binary.
pub fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "init".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0001_init.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            "batches".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0002_batches.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            "logprobs".into(),
            MigrationType::Simple,
            include_str!("../../migrations/postgres/0003_logprobs.sql").into_sql_str(),
            false,
        ),
    ])
}

/// Storage on Postgres.
#[derive(Clone)]
pub struct PgStorage {
    pool: PgPool,
    pub(super) clock: SharedClock,
}

impl fmt::Debug for PgStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStorage").finish_non_exhaustive()
    }
}

impl PgStorage {
    /// Connects (`postgres://user@host:port/db`) and applies the migrations.
    pub async fn connect(url: &str, clock: SharedClock) -> Result<Self, StorageError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        Self::from_pool(pool, clock).await
    }

    /// Uses an existing pool; applies the migrations.
    pub async fn from_pool(pool: PgPool, clock: SharedClock) -> Result<Self, StorageError> {
        migrator().run(&pool).await?;
        Ok(Self { pool, clock })
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(super) fn writer(&self) -> &PgPool {
        &self.pool
    }

    pub(super) fn reader(&self) -> &PgPool {
        &self.pool
    }

    async fn lease_jobs(
        &self,
        executor: &str,
        max_jobs: u32,
        now: i64,
        expires: i64,
    ) -> Result<Vec<LeasedJob>, StorageError> {
        let rows = sqlx::query(LEASE_JOBS)
            .bind(now)
            .bind(i64::from(max_jobs))
            .bind(executor)
            .bind(expires)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| leased_from_row(row, expires))
            .collect()
    }
}

fn leased_from_row(row: &PgRow, expires: i64) -> Result<LeasedJob, StorageError> {
    let params = sql::to_params(
        row.try_get("choice_index")?,
        row.try_get("max_tokens")?,
        row.try_get("temperature_milli")?,
        row.try_get("top_p_milli")?,
        row.try_get("seed")?,
    )?;
    sql::leased_job(
        row.try_get("id")?,
        row.try_get("attempt")?,
        &row.try_get::<Vec<u8>, _>("request_id")?,
        params,
        &row.try_get::<Vec<u8>, _>("tokens")?,
        row.try_get::<Option<i64>, _>("logprobs_top")?,
        row.try_get("model")?,
        &row.try_get::<Vec<u8>, _>("model_root")?,
        &row.try_get::<Vec<u8>, _>("prompt_tokens")?,
        expires,
    )
}

impl PgStorage {
    /// `pg_try_advisory_lock(key)` on a session of its own.
    fn new_leader_lock(&self, key: i64) -> Box<dyn super::LeaderLock> {
        Box::new(super::PgAdvisoryLock::new(self.pool.clone(), key))
    }
}

impl_storage!(PgStorage, PgRow);
impl_batch_store!(PgStorage, PgRow);
