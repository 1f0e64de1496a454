//! Settlement on L1 (DESIGN §3 steps 3 and 5): batching executed jobs, posting batches with `postBatch`, and
//! finalizing them after the challenge window.
//!
//! - [`batcher`]: executed, signed leaves → planned batches (by count, bytes and age), recorded durably with the
//!   exact bytes to post before anything is sent;
//! - [`poster`]: planned batches → L1 (blobs or calldata, [`DaMode`]), in order, exactly once across crashes (the
//!   contract's `prevStateRoot` check plus a search of the chain's `BatchPosted` events);
//! - [`finalizer`]: `finalize` after the window, `LeafInvalidated` / `BatchFinalized` events → job states, and
//!   `SignatureChallenged` on an own batch → `answerSignatureChallenge` from the stored batch data;
//! - [`pipeline`]: the leader's loop over the three (one leader per database: `crate::storage::leader`);
//! - [`cursor`]: the event follower's position in the database.
//!
//! States: batch `planned → posted(l1 id, tx, block) → final`; job `executed → posted(batch, leaf index) → final`,
//! or `invalid` (proven on L1, or rejected by the batcher because its leaf, signature or executor bond does not
//! check out).
//!
//! Everything is generic over `L: l1_contracts::L1` (the embedded revm chain, or JSON-RPC).

pub mod batcher;
pub mod cursor;
mod error;
pub mod finalizer;
pub mod pipeline;
pub mod poster;

pub use batcher::{Batcher, BatcherConfig, Rejection};
pub use cursor::DbCursorStore;
pub use error::SettlementError;
pub use finalizer::{Finalizer, Followed};
pub use pipeline::{L1Pipeline, PipelineConfig, PipelineHandle, TickReport};
pub use poster::{DaMode, Poster};
