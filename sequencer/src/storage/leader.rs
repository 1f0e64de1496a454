//! Leader election for the batch pipeline: exactly one replica plans, posts and finalizes batches.
//!
//! * Postgres ([`PgAdvisoryLock`]): a session-level `pg_try_advisory_lock(key)` on a connection taken out of the pool
//!   and held by the pipeline task. The lock lives as long as that session: dropping the lock (or the task, or the
//!   process) closes the connection and the server releases it; a replica whose connection broke loses it at once.
//! * SQLite ([`ProcessLock`]): the process that owns the file is the only leader.
//!
//! Leadership is a liveness device, not the safety argument: planning is one transaction that refuses a taken batch
//! number or an already batched job, and the contract refuses a `prevStateRoot` that is not its current one, so two
//! replicas that both believe they lead can neither plan a job twice nor post a batch twice.

use super::StorageError;
use async_trait::async_trait;
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Connection, Row};

/// Default advisory-lock key of the batch leader (`"verinfer"` in ASCII).
pub const DEFAULT_LEADER_KEY: i64 = 0x7665_7269_6e66_6572;

/// One replica's claim on leadership.
#[async_trait]
pub trait LeaderLock: Send {
    /// Takes the lock if free, or checks that it is still held; `true` while this replica leads.
    async fn ensure(&mut self) -> Result<bool, StorageError>;

    /// Gives the lock up.
    async fn release(&mut self);
}

/// Always the leader (SQLite: one process per database file).
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessLock;

#[async_trait]
impl LeaderLock for ProcessLock {
    async fn ensure(&mut self) -> Result<bool, StorageError> {
        Ok(true)
    }

    async fn release(&mut self) {}
}

/// `pg_try_advisory_lock(key)` held on a dedicated session.
pub struct PgAdvisoryLock {
    pool: PgPool,
    key: i64,
    /// The session, and whether it holds the lock.
    session: Option<(PgConnection, bool)>,
}

impl std::fmt::Debug for PgAdvisoryLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgAdvisoryLock")
            .field("key", &self.key)
            .field(
                "held",
                &self.session.as_ref().is_some_and(|(_, held)| *held),
            )
            .finish_non_exhaustive()
    }
}

impl PgAdvisoryLock {
    /// A lock on `key` using connections of `pool`.
    pub fn new(pool: PgPool, key: i64) -> Self {
        Self {
            pool,
            key,
            session: None,
        }
    }
}

#[async_trait]
impl LeaderLock for PgAdvisoryLock {
    async fn ensure(&mut self) -> Result<bool, StorageError> {
        if let Some((conn, held)) = &mut self.session {
            // A live session keeps its lock; a broken one has already lost it.
            match (*held, conn.ping().await) {
                (true, Ok(())) => return Ok(true),
                (false, Ok(())) => {}
                (_, Err(_)) => self.session = None,
            }
        }
        let (conn, held) = match &mut self.session {
            Some(session) => session,
            None => {
                // Out of the pool: the session must outlive any pooled use and end with this lock.
                let conn = self.pool.acquire().await?.detach();
                self.session.insert((conn, false))
            }
        };
        let row = sqlx::query("SELECT pg_try_advisory_lock($1) AS locked")
            .bind(self.key)
            .fetch_one(&mut *conn)
            .await;
        match row.and_then(|r| r.try_get::<bool, _>("locked")) {
            Ok(locked) => {
                *held = locked;
                Ok(locked)
            }
            Err(e) => {
                self.session = None;
                Err(e.into())
            }
        }
    }

    async fn release(&mut self) {
        if let Some((conn, _)) = self.session.take() {
            // Closing the session releases every lock it holds.
            let _ = conn.close().await;
        }
    }
}
