//! verinfer's L1 contracts from Rust.
//!
//! - [`bindings`]: alloy `sol!` bindings generated from the committed solc artifacts (`artifacts/*.json`, built by
//!   `scripts/compile` from `contracts/`): `InferenceRollup` and `ExampleConsumer`, with bytecode, calls, events
//!   and custom errors (`#[sol(rpc)]` instances for alloy providers included).
//! - [`L1`]: the chain operations every role needs, bound to one sender; see [`l1`] for the guarantees.
//! - [`EmbeddedChain`]: an in-process chain on revm (Cancun rules) implementing [`L1`], with blocks, timestamps,
//!   logs and time travel: the devnet and test chain.
//! - [`Rollup`] and [`Consumer`]: typed clients of the two contracts over any [`L1`].
//! - [`RpcL1`](rpc::RpcL1): [`L1`] over JSON-RPC (anvil, geth, testnets) with its own nonce management, fee
//!   bumping, retries and confirmations; [`LogFollower`](rpc::LogFollower): confirmed, reorg-aware, resumable event
//!   following over any [`L1`].
//! - [`anvil`]: starts the pinned npm anvil for tests and the devnet.
//! - [`dispute`]: the `DisputeGame` and `OneStepProver` clients (bisection, clocks, one-step resolution, the
//!   non-interactive unbonded-executor fault); [`prover`]: builds one-step proofs from a trace and a model.
//! - [`blobs`]: batch data in EIP-4844 blobs (packing, KZG sidecar, DA commitment).
//! - [`dev`]: anvil's development accounts; [`gas`]: the gas report.
//!
//! The contracts reproduce `docs/protocol.md` exactly: the EIP-712 leaf hash and domain, the keccak Merkle tree with
//! zero padding and count-checked proofs, `token_ids_root`, and the state chain `keccak256(prev ‖ batchRoot)`; the
//! tests check each against the `protocol` crate.

#![warn(missing_docs, unreachable_pub)]

pub mod anvil;
pub mod bindings;
pub mod blobs;
pub mod consumer;
pub mod dev;
pub mod dispute;
pub mod embedded;
pub mod error;
pub mod gas;
pub mod l1;
pub mod one_step;
mod one_step_gas;
pub mod prover;
pub mod rollup;
pub mod rpc;

pub use consumer::{Consumer, ConsumerError};
pub use embedded::{ChainConfig, Clock, EmbeddedChain, EmbeddedL1};
pub use error::ContractError;
pub use l1::{BlockInfo, L1, L1Error, L1Log, LogFilter, Receipt, TxInfo, TxRequest};
pub use rollup::{
    BatchInfo, BondInfo, BondStatus, LeafStatus, PostedBatch, Role, Rollup, RollupConfig,
    RollupError, RollupEvent, SignatureChallengeInfo, SignatureChallengeStatus, config_hash,
    model_leaf_count, signature_opening,
};
