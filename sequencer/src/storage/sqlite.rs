//! SQLite backend (embedded default): WAL journal, one writer connection (SQLite has a single writer; serialising
//! writes in the pool avoids `SQLITE_BUSY`) and a few reader connections. Leasing is one `UPDATE … RETURNING`
//! statement, atomic under the single writer.

use super::batch_sql::impl_batch_store;
use super::sql::{self, impl_storage};
use super::{LeasedJob, StorageError};
use crate::clock::SharedClock;
use sqlx::Row;
use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

const LEASE_JOBS: &str = "UPDATE jobs SET state = 'leased', executor = $3, lease_expires_at = $4, \
         attempt = attempt + 1, updated_at = $1 \
     WHERE id IN (SELECT id FROM jobs \
         WHERE state = 'queued' OR (state = 'leased' AND lease_expires_at < $1) ORDER BY id LIMIT $2) \
     RETURNING id, attempt, request_id, choice_index, max_tokens, temperature_milli, top_p_milli, seed, tokens, \
         logprobs_top";

const REQUEST_INPUT: &str = "SELECT model, model_root, prompt_tokens FROM requests WHERE id = $1";

/// The SQLite migrations, embedded in the binary.
pub fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            "init".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0001_init.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            "batches".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0002_batches.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            "logprobs".into(),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0003_logprobs.sql").into_sql_str(),
            false,
        ),
    ])
}

/// Storage in an SQLite file.
#[derive(Clone)]
pub struct SqliteStorage {
    writer: SqlitePool,
    reader: SqlitePool,
    pub(super) clock: SharedClock,
}

impl fmt::Debug for SqliteStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStorage").finish_non_exhaustive()
    }
}

impl SqliteStorage {
    /// Opens (creating if missing) `sqlite:path` or `sqlite://path` and applies the migrations. Commits are
    /// `synchronous = FULL`: an acknowledged request survives a crash of the process or the machine.
    /// `sqlite::memory:` works too (one connection, nothing durable; for tests).
    pub async fn connect(url: &str, clock: SharedClock) -> Result<Self, StorageError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        migrator().run(&writer).await?;
        // An in-memory database exists once per connection: readers must share the writer's.
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options.read_only(true))
                .await?
        };
        Ok(Self {
            writer,
            reader,
            clock,
        })
    }

    pub(super) fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    pub(super) fn reader(&self) -> &SqlitePool {
        &self.reader
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
            .fetch_all(&self.writer)
            .await?;
        let mut inputs: HashMap<Vec<u8>, (String, Vec<u8>, Vec<u8>)> = HashMap::new();
        let mut jobs = Vec::with_capacity(rows.len());
        for row in &rows {
            let request_id: Vec<u8> = row.try_get("request_id")?;
            if !inputs.contains_key(&request_id) {
                let input = sqlx::query(REQUEST_INPUT)
                    .bind(request_id.as_slice())
                    .fetch_one(&self.writer)
                    .await?;
                inputs.insert(
                    request_id.clone(),
                    (
                        input.try_get("model")?,
                        input.try_get("model_root")?,
                        input.try_get("prompt_tokens")?,
                    ),
                );
            }
            let Some((model, model_root, prompt)) = inputs.get(&request_id) else {
                continue;
            };
            jobs.push(leased_from_row(row, model, model_root, prompt, expires)?);
        }
        Ok(jobs)
    }
}

fn leased_from_row(
    row: &SqliteRow,
    model: &str,
    model_root: &[u8],
    prompt: &[u8],
    expires: i64,
) -> Result<LeasedJob, StorageError> {
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
        model.to_string(),
        model_root,
        prompt,
        expires,
    )
}

impl SqliteStorage {
    /// The process owns the database file: it is the only leader.
    fn new_leader_lock(&self, _key: i64) -> Box<dyn super::LeaderLock> {
        Box::new(super::ProcessLock)
    }
}

impl_storage!(SqliteStorage, SqliteRow);
impl_batch_store!(SqliteStorage, SqliteRow);
