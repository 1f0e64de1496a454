//! [`LogFollower`]: follows the logs matching a [`LogFilter`] over any [`L1`], delivering only logs with enough
//! confirmations, surviving restarts through a caller-provided [`CursorStore`], and detecting reorganisations.
//!
//! # Delivery semantics
//!
//! - **At least once, in chain order.** [`LogFollower::poll`] returns a [`Delivery`] without moving the persisted
//!   position; [`LogFollower::commit`] saves the position after it. A process that stops between the two receives
//!   the same logs again after a restart; a log is never skipped. Consumers deduplicate by [`LogId`] (block number,
//!   log index), which is unique on one chain history.
//! - **Confirmations.** A log in block `b` is delivered once the latest block is at least
//!   `b + confirmations - 1` ([`FollowerConfig::confirmations`]; 1 = as soon as mined).
//! - **Reorganisations.** Before reading further, the follower checks that the last block it delivered (the
//!   cursor's tip) still has the hash it saw. When it does not (a reorg deeper than the confirmation depth, or a
//!   development node reverted to a snapshot), it walks back through the block hashes it remembered
//!   ([`FollowerConfig::history`]: range ends and every block that had logs) to the newest block that is still
//!   canonical, and returns [`Delivery::Reorg`]. Once committed, logs are delivered again from the block after that
//!   one. A consumer must drop whatever it derived from logs in blocks `>= resume_from` (their [`LogId`]s may now
//!   name other logs). When no remembered block is canonical any more, the follower restarts from its start block.
//! - **Consistency of one range.** The logs of a range are checked against the canonical hashes of their blocks
//!   after they were read, and the range end and the previous tip are checked again; a chain that moved meanwhile
//!   yields no delivery this time (the next poll sees the new state).
//! - Ranges without logs advance the cursor in memory; the position is persisted with the next commit, or at the
//!   latest every [`FollowerConfig::max_range`] blocks, so an idle follower re-scans at most that much after a
//!   restart.

use crate::l1::{L1, L1Error, L1Log, LogFilter};
use alloy::primitives::B256;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A block number with its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockRef {
    /// Block number.
    pub number: u64,
    /// Block hash.
    pub hash: B256,
}

/// Identity of a log on one chain history: its block and its index in the block (for deduplication).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogId {
    /// Block number.
    pub block_number: u64,
    /// Index of the log in its block.
    pub log_index: u64,
}

impl LogId {
    /// The id of `log`.
    pub fn of(log: &L1Log) -> Self {
        Self {
            block_number: log.block_number,
            log_index: log.log_index,
        }
    }
}

/// Where a follower stands: the next block to read, and the hashes of blocks it delivered (newest last; the last one
/// is the tip checked for reorganisations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    next_block: u64,
    checkpoints: Vec<BlockRef>,
}

/// A [`Cursor`] encoding that cannot be decoded.
#[derive(Debug, thiserror::Error)]
#[error("invalid cursor encoding: {0}")]
pub struct CursorError(&'static str);

const CURSOR_MAGIC: &[u8; 4] = b"vlf1";

impl Cursor {
    /// A cursor that starts reading at `block`.
    pub fn start(block: u64) -> Self {
        Self {
            next_block: block,
            checkpoints: Vec::new(),
        }
    }

    /// The next block to read.
    pub fn next_block(&self) -> u64 {
        self.next_block
    }

    /// The last delivered block, checked for reorganisations.
    pub fn tip(&self) -> Option<BlockRef> {
        self.checkpoints.last().copied()
    }

    /// The remembered blocks, oldest first.
    pub fn checkpoints(&self) -> &[BlockRef] {
        &self.checkpoints
    }

    /// A compact binary form for a cursor store: `vlf1`, next block (u64 BE), count (u32 BE), then per checkpoint
    /// number (u64 BE) and hash (32 bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 40 * self.checkpoints.len());
        out.extend_from_slice(CURSOR_MAGIC);
        out.extend_from_slice(&self.next_block.to_be_bytes());
        out.extend_from_slice(&(self.checkpoints.len() as u32).to_be_bytes());
        for cp in &self.checkpoints {
            out.extend_from_slice(&cp.number.to_be_bytes());
            out.extend_from_slice(cp.hash.as_slice());
        }
        out
    }

    /// Decodes [`Cursor::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Result<Self, CursorError> {
        let rest = bytes
            .strip_prefix(CURSOR_MAGIC)
            .ok_or(CursorError("bad magic"))?;
        let (next, rest) = rest.split_first_chunk::<8>().ok_or(CursorError("short"))?;
        let (count, mut rest) = rest.split_first_chunk::<4>().ok_or(CursorError("short"))?;
        let count = u32::from_be_bytes(*count) as usize;
        if rest.len() != count.saturating_mul(40) {
            return Err(CursorError("length does not match the checkpoint count"));
        }
        let mut checkpoints = Vec::with_capacity(count);
        while let Some((number, tail)) = rest.split_first_chunk::<8>() {
            let (hash, tail) = tail.split_first_chunk::<32>().ok_or(CursorError("short"))?;
            checkpoints.push(BlockRef {
                number: u64::from_be_bytes(*number),
                hash: B256::from(*hash),
            });
            rest = tail;
        }
        if checkpoints.windows(2).any(|w| w[0].number >= w[1].number) {
            return Err(CursorError("checkpoints out of order"));
        }
        Ok(Self {
            next_block: u64::from_be_bytes(*next),
            checkpoints,
        })
    }
}

/// Where a [`LogFollower`] persists its [`Cursor`] (a database row, a file, ...).
pub trait CursorStore: Send {
    /// The store's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The saved cursor, if any.
    fn load(&mut self) -> impl Future<Output = Result<Option<Cursor>, Self::Error>> + Send;

    /// Replaces the saved cursor (durably, before returning).
    fn save(&mut self, cursor: &Cursor) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// A cursor store in memory, shared by its clones (tests, and followers whose consumer keeps its own state).
#[derive(Debug, Clone, Default)]
pub struct MemoryCursorStore {
    cursor: Arc<Mutex<Option<Cursor>>>,
}

impl MemoryCursorStore {
    /// The saved cursor.
    pub fn get(&self) -> Option<Cursor> {
        self.cursor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl CursorStore for MemoryCursorStore {
    type Error = Infallible;

    async fn load(&mut self) -> Result<Option<Cursor>, Infallible> {
        Ok(self.get())
    }

    async fn save(&mut self, cursor: &Cursor) -> Result<(), Infallible> {
        *self.cursor.lock().unwrap_or_else(|p| p.into_inner()) = Some(cursor.clone());
        Ok(())
    }
}

/// A cursor store in one file ([`Cursor::encode`]), replaced atomically (write to `<file>.tmp`, sync, rename).
/// Uses blocking file I/O (a few hundred bytes per save).
#[derive(Debug, Clone)]
pub struct FileCursorStore {
    path: PathBuf,
}

impl FileCursorStore {
    /// A store in `path` (created on the first save; the directory must exist).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl CursorStore for FileCursorStore {
    type Error = std::io::Error;

    async fn load(&mut self) -> Result<Option<Cursor>, std::io::Error> {
        match std::fs::read(&self.path) {
            Ok(bytes) => Cursor::decode(&bytes)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn save(&mut self, cursor: &Cursor) -> Result<(), std::io::Error> {
        use std::io::Write;
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&cursor.encode())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }
}

/// Parameters of a [`LogFollower`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowerConfig {
    /// Confirmations a block needs before its logs are delivered (1: mined; values below 1 count as 1).
    pub confirmations: u64,
    /// Most blocks read per `logs` request (and per delivery).
    pub max_range: u64,
    /// Remembered block hashes for finding the last agreed block after a reorganisation.
    pub history: usize,
    /// Sleep between polls in [`LogFollower::next`].
    pub poll_interval: Duration,
}

impl Default for FollowerConfig {
    /// 12 confirmations, 2,000-block ranges, 256 remembered blocks, 4 s polling.
    fn default() -> Self {
        Self {
            confirmations: 12,
            max_range: 2_000,
            history: 256,
            poll_interval: Duration::from_secs(4),
        }
    }
}

impl FollowerConfig {
    /// For a local development node: 1 confirmation, 50 ms polling.
    pub fn local() -> Self {
        Self {
            confirmations: 1,
            poll_interval: Duration::from_millis(50),
            ..Self::default()
        }
    }
}

/// What [`LogFollower::poll`] found; pass it to [`LogFollower::commit`] once handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The confirmed matching logs of blocks `from_block..=to_block`, in chain order (possibly none).
    Logs {
        /// The logs.
        logs: Vec<L1Log>,
        /// First block of the range.
        from_block: u64,
        /// Last block of the range.
        to_block: u64,
        /// The cursor after the range.
        cursor: Cursor,
        /// The cursor this delivery continues.
        base: Cursor,
    },
    /// The chain no longer contains the last delivered block: discard everything derived from logs in blocks
    /// `>= resume_from`; they are delivered again from there.
    Reorg {
        /// The delivered tip that was reorganised away.
        old_tip: BlockRef,
        /// The newest remembered block still canonical (`None`: none was; following restarts at the start block).
        last_agreed: Option<BlockRef>,
        /// The block delivery resumes at.
        resume_from: u64,
        /// The cursor after the rewind.
        cursor: Cursor,
        /// The cursor this delivery continues.
        base: Cursor,
    },
}

impl Delivery {
    /// The cursor once this delivery is committed.
    pub fn cursor(&self) -> &Cursor {
        match self {
            Self::Logs { cursor, .. } | Self::Reorg { cursor, .. } => cursor,
        }
    }

    fn base(&self) -> &Cursor {
        match self {
            Self::Logs { base, .. } | Self::Reorg { base, .. } => base,
        }
    }

    /// The logs delivered (none for a reorganisation).
    pub fn logs(&self) -> &[L1Log] {
        match self {
            Self::Logs { logs, .. } => logs,
            Self::Reorg { .. } => &[],
        }
    }
}

/// Errors of a [`LogFollower`].
#[derive(Debug, thiserror::Error)]
pub enum FollowerError {
    /// Reading the chain failed.
    #[error(transparent)]
    L1(#[from] L1Error),
    /// The cursor store failed.
    #[error("cursor store: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The delivery does not continue the follower's current cursor (committed twice, or out of order).
    #[error("stale delivery: it does not continue the follower's cursor")]
    StaleDelivery,
}

/// Follows logs; see the module docs for the guarantees.
#[derive(Debug)]
pub struct LogFollower<L, S> {
    l1: L,
    store: S,
    filter: LogFilter,
    config: FollowerConfig,
    start_block: u64,
    cursor: Cursor,
    /// `next_block` of the cursor last saved.
    saved_next: u64,
}

impl<L: L1, S: CursorStore> LogFollower<L, S> {
    /// A follower of the logs matching `filter` (its `from_block` is the start block; its `to_block` is ignored),
    /// resuming from the cursor in `store` when there is one.
    pub async fn new(
        l1: L,
        filter: LogFilter,
        config: FollowerConfig,
        mut store: S,
    ) -> Result<Self, FollowerError> {
        let start_block = filter.from_block;
        let cursor = store
            .load()
            .await
            .map_err(|e| FollowerError::Store(Box::new(e)))?
            .unwrap_or_else(|| Cursor::start(start_block));
        let saved_next = cursor.next_block;
        Ok(Self {
            l1,
            store,
            filter: LogFilter {
                to_block: None,
                ..filter
            },
            config,
            start_block,
            cursor,
            saved_next,
        })
    }

    /// The current (uncommitted) position.
    pub fn cursor(&self) -> &Cursor {
        &self.cursor
    }

    /// The chain handle.
    pub fn l1(&self) -> &L {
        &self.l1
    }

    /// The cursor store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Waits (polling every [`FollowerConfig::poll_interval`]) for the next [`Delivery`].
    pub async fn next(&mut self) -> Result<Delivery, FollowerError> {
        loop {
            if let Some(delivery) = self.poll().await? {
                return Ok(delivery);
            }
            tokio::time::sleep(self.config.poll_interval).await;
        }
    }

    /// Marks `delivery` handled and persists the cursor after it.
    pub async fn commit(&mut self, delivery: &Delivery) -> Result<(), FollowerError> {
        if delivery.base() != &self.cursor {
            return Err(FollowerError::StaleDelivery);
        }
        self.save(delivery.cursor().clone()).await
    }

    async fn save(&mut self, cursor: Cursor) -> Result<(), FollowerError> {
        self.store
            .save(&cursor)
            .await
            .map_err(|e| FollowerError::Store(Box::new(e)))?;
        self.saved_next = cursor.next_block;
        self.cursor = cursor;
        Ok(())
    }

    async fn hash_of(&self, number: u64) -> Result<Option<B256>, L1Error> {
        Ok(self.l1.block(number).await?.map(|b| b.hash))
    }

    /// One step: a reorganisation, the next range that has logs, or `None` when there is nothing confirmed to
    /// deliver yet (or the chain moved while reading; poll again).
    pub async fn poll(&mut self) -> Result<Option<Delivery>, FollowerError> {
        loop {
            if let Some(tip) = self.cursor.tip()
                && self.hash_of(tip.number).await? != Some(tip.hash)
            {
                return Ok(Some(self.rewind(tip).await?));
            }
            let latest = self.l1.latest_block().await?.number;
            let confirmations = self.config.confirmations.max(1);
            let Some(safe) = (latest + 1).checked_sub(confirmations) else {
                return Ok(None);
            };
            let from = self.cursor.next_block;
            if from > safe {
                return Ok(None);
            }
            let to = safe.min(from.saturating_add(self.config.max_range.max(1) - 1));
            let Some(delivery) = self.read_range(from, to).await? else {
                return Ok(None);
            };
            if !delivery.logs().is_empty() {
                return Ok(Some(delivery));
            }
            // Nothing in this range: move on without bothering the consumer; persist now and then.
            let cursor = delivery.cursor().clone();
            if cursor.next_block.saturating_sub(self.saved_next) >= self.config.max_range.max(1) {
                self.save(cursor).await?;
            } else {
                self.cursor = cursor;
            }
        }
    }

    /// Reads `from..=to`; `None` when the chain moved meanwhile.
    async fn read_range(&self, from: u64, to: u64) -> Result<Option<Delivery>, FollowerError> {
        let Some(to_hash) = self.hash_of(to).await? else {
            return Ok(None);
        };
        let filter = LogFilter {
            from_block: from,
            to_block: Some(to),
            ..self.filter.clone()
        };
        let logs = self.l1.logs(&filter).await?;
        let mut blocks = BTreeMap::new();
        for log in &logs {
            if log.block_number < from || log.block_number > to {
                return Ok(None);
            }
            if *blocks.entry(log.block_number).or_insert(log.block_hash) != log.block_hash {
                return Ok(None);
            }
        }
        for (number, hash) in &blocks {
            if self.hash_of(*number).await? != Some(*hash) {
                return Ok(None);
            }
        }
        if self.hash_of(to).await? != Some(to_hash) {
            return Ok(None);
        }
        if let Some(tip) = self.cursor.tip()
            && self.hash_of(tip.number).await? != Some(tip.hash)
        {
            return Ok(None);
        }
        let mut checkpoints = self.cursor.checkpoints.clone();
        checkpoints.extend(
            blocks
                .into_iter()
                .filter(|(n, _)| *n != to)
                .map(|(number, hash)| BlockRef { number, hash }),
        );
        checkpoints.push(BlockRef {
            number: to,
            hash: to_hash,
        });
        let excess = checkpoints.len().saturating_sub(self.config.history.max(1));
        checkpoints.drain(..excess);
        Ok(Some(Delivery::Logs {
            logs,
            from_block: from,
            to_block: to,
            cursor: Cursor {
                next_block: to + 1,
                checkpoints,
            },
            base: self.cursor.clone(),
        }))
    }

    async fn rewind(&self, old_tip: BlockRef) -> Result<Delivery, FollowerError> {
        let mut last_agreed = None;
        for (i, cp) in self.cursor.checkpoints.iter().enumerate().rev() {
            if self.hash_of(cp.number).await? == Some(cp.hash) {
                last_agreed = Some((i, *cp));
                break;
            }
        }
        let cursor = match last_agreed {
            Some((i, cp)) => Cursor {
                next_block: cp.number + 1,
                checkpoints: self.cursor.checkpoints[..=i].to_vec(),
            },
            None => Cursor::start(self.start_block),
        };
        Ok(Delivery::Reorg {
            old_tip,
            last_agreed: last_agreed.map(|(_, cp)| cp),
            resume_from: cursor.next_block,
            cursor,
            base: self.cursor.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_roundtrip() {
        let c = Cursor {
            next_block: 42,
            checkpoints: vec![
                BlockRef {
                    number: 7,
                    hash: B256::repeat_byte(7),
                },
                BlockRef {
                    number: 41,
                    hash: B256::repeat_byte(41),
                },
            ],
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        assert_eq!(
            Cursor::decode(&Cursor::start(5).encode()).unwrap(),
            Cursor::start(5)
        );
        let bytes = c.encode();
        assert!(Cursor::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(Cursor::decode(b"nope").is_err());
    }
}
