//! The [`L1`] trait: the chain operations every verinfer role needs (send and simulate transactions, read logs,
//! blocks and balances, move time on development chains), and the plain data types it speaks.
//!
//! The trait is deliberately low level, like an alloy `Provider` bound to one signer: it knows nothing about the
//! verinfer contracts. The typed contract clients ([`crate::Rollup`], [`crate::Consumer`]) are written once on top
//! of it, so every implementation (the in-process [`crate::EmbeddedChain`] today, a JSON-RPC client for anvil, geth or
//! a testnet later) gets the same contract semantics and the same tests.
//!
//! # Async
//!
//! Methods return `impl Future + Send`: the sequencer, executor and challenger are tokio services and the JSON-RPC
//! implementation is naturally async. The embedded chain's futures are ready on first poll (the EVM runs inline), so
//! any executor, including a simple `block_on`, drives them. Use the trait generically (`L: L1`); a role that picks
//! its chain at run time wraps the implementations in an enum.
//!
//! # Semantics every implementation keeps
//!
//! - A handle is bound to one sender ([`L1::sender`]): transactions are sent, and calls simulated, from it.
//! - [`L1::send`] returns only once the transaction is mined. A transaction that would revert is **not** mined and
//!   returns [`L1Error::Reverted`] with the revert data (the embedded chain discards it before mining; an RPC client
//!   sees the revert during gas estimation), so callers can decode the contract's custom error either way.
//! - Logs carry their block number, block hash, transaction hash and log index, so a follower can resume from a
//!   block and detect reorganisations by hash.
//! - A [`TxRequest`] with [`TxRequest::blobs`] is sent as an EIP-4844 (type-3) transaction carrying that sidecar;
//!   the chain checks the sidecar (commitments, KZG proofs) and keeps the blobs, which [`L1::blobs`] returns.

pub use alloy::eips::eip4844::{Blob, BlobTransactionSidecar};
use alloy::primitives::{Address, B256, Bytes, Log, U256};
use alloy::sol_types::SolInterface;
use std::future::Future;

/// A mined block's header fields the roles use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockInfo {
    /// Block number (genesis is 0).
    pub number: u64,
    /// Block timestamp, seconds since the Unix epoch.
    pub timestamp: u64,
    /// Block hash.
    pub hash: B256,
}

/// A transaction to send (or simulate) from the handle's sender.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxRequest {
    /// Callee; `None` creates a contract with `input` as init code.
    pub to: Option<Address>,
    /// Wei sent along.
    pub value: U256,
    /// Calldata (or init code).
    pub input: Bytes,
    /// Gas limit; `None` lets the implementation choose (the embedded chain uses the block gas limit, an RPC
    /// client estimates).
    pub gas_limit: Option<u64>,
    /// EIP-4844 blobs with their KZG commitments and proofs (the v0 form; an RPC client converts it to cell proofs
    /// where the network wants them). `Some` sends a type-3 transaction, which cannot create a contract.
    pub blobs: Option<BlobTransactionSidecar>,
}

impl TxRequest {
    /// A call of `to` with `input`.
    pub fn call(to: Address, input: impl Into<Bytes>) -> Self {
        Self {
            to: Some(to),
            input: input.into(),
            ..Self::default()
        }
    }

    /// A contract creation with `init_code` (bytecode followed by the ABI-encoded constructor arguments).
    pub fn create(init_code: impl Into<Bytes>) -> Self {
        Self {
            input: init_code.into(),
            ..Self::default()
        }
    }

    /// Sets the wei sent along.
    pub fn with_value(mut self, value: U256) -> Self {
        self.value = value;
        self
    }

    /// Sets the gas limit.
    pub fn with_gas_limit(mut self, gas_limit: u64) -> Self {
        self.gas_limit = Some(gas_limit);
        self
    }

    /// Attaches a blob sidecar (a type-3 transaction).
    pub fn with_blobs(mut self, sidecar: BlobTransactionSidecar) -> Self {
        self.blobs = Some(sidecar);
        self
    }
}

/// A log with its position on the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L1Log {
    /// Emitting contract, topics and data (decode with `SolEvent::decode_log(&log.inner)`).
    pub inner: Log,
    /// Block number.
    pub block_number: u64,
    /// Block hash.
    pub block_hash: B256,
    /// Block timestamp.
    pub block_timestamp: u64,
    /// Hash of the emitting transaction.
    pub tx_hash: B256,
    /// Index of the log in its block.
    pub log_index: u64,
}

/// The receipt of a mined, successful transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Transaction hash.
    pub tx_hash: B256,
    /// Block it was mined in.
    pub block_number: u64,
    /// Hash of that block.
    pub block_hash: B256,
    /// Timestamp of that block.
    pub block_timestamp: u64,
    /// Gas used by the transaction, intrinsic gas included.
    pub gas_used: u64,
    /// Address of the created contract, for a creation.
    pub contract_address: Option<Address>,
    /// Logs emitted, in order.
    pub logs: Vec<L1Log>,
}

/// A mined transaction as a follower reads it back (batch data is the input of `postBatch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxInfo {
    /// Transaction hash.
    pub hash: B256,
    /// Sender.
    pub from: Address,
    /// Callee (`None` for a creation).
    pub to: Option<Address>,
    /// Wei sent.
    pub value: U256,
    /// Calldata.
    pub input: Bytes,
    /// Versioned hashes of its EIP-4844 blobs, in order (empty for other transactions).
    pub blob_versioned_hashes: Vec<B256>,
    /// Block it was mined in.
    pub block_number: u64,
}

/// Which logs to return; empty lists match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// First block, inclusive.
    pub from_block: u64,
    /// Last block, inclusive; `None` is the latest block.
    pub to_block: Option<u64>,
    /// Emitting contracts.
    pub addresses: Vec<Address>,
    /// Accepted values of topic 0 (the event signature), 1, 2 and 3.
    pub topics: [Vec<B256>; 4],
}

impl LogFilter {
    /// Logs of `address` from block `from_block` on.
    pub fn new(address: Address, from_block: u64) -> Self {
        Self {
            from_block,
            addresses: vec![address],
            ..Self::default()
        }
    }

    /// Sets the last block (inclusive).
    pub fn to_block(mut self, block: u64) -> Self {
        self.to_block = Some(block);
        self
    }

    /// Only events with signature hash `signature` (topic 0).
    pub fn event(mut self, signature: B256) -> Self {
        self.topics[0].push(signature);
        self
    }

    /// Only logs whose topic `index` (1..=3) is `value`.
    pub fn topic(mut self, index: usize, value: B256) -> Self {
        if let Some(t) = self.topics.get_mut(index) {
            t.push(value);
        }
        self
    }

    /// Whether `log`, mined in block `block_number`, passes the filter.
    pub fn matches(&self, log: &Log, block_number: u64) -> bool {
        if block_number < self.from_block || self.to_block.is_some_and(|to| block_number > to) {
            return false;
        }
        if !self.addresses.is_empty() && !self.addresses.contains(&log.address) {
            return false;
        }
        let topics = log.topics();
        self.topics.iter().enumerate().all(|(i, accepted)| {
            accepted.is_empty() || topics.get(i).is_some_and(|t| accepted.contains(t))
        })
    }
}

/// Errors of [`L1`] operations.
#[derive(Debug, thiserror::Error)]
pub enum L1Error {
    /// The transaction (or call) reverted; `data` is the revert data (a custom error, `Error(string)`, or empty).
    #[error(
        "execution reverted (data 0x{}, {gas_used} gas)",
        alloy::primitives::hex::encode(data)
    )]
    Reverted {
        /// Revert data.
        data: Bytes,
        /// Gas used up to the revert.
        gas_used: u64,
    },
    /// Execution halted exceptionally (out of gas, invalid opcode, ...).
    #[error("execution halted: {reason} ({gas_used} gas)")]
    Halted {
        /// The EVM's halt reason.
        reason: String,
        /// Gas used (usually the whole limit).
        gas_used: u64,
    },
    /// The chain refused the transaction before executing it (nonce, balance, gas limit, ...).
    #[error("transaction rejected: {0}")]
    Rejected(String),
    /// The operation is not available on this chain (for example time travel on a public network).
    #[error("not supported by this chain: {0}")]
    Unsupported(&'static str),
    /// The node or its state could not be reached or read.
    #[error("L1 backend error: {0}")]
    Backend(String),
}

impl L1Error {
    /// The revert data, for a revert.
    pub fn revert_data(&self) -> Option<&Bytes> {
        match self {
            Self::Reverted { data, .. } => Some(data),
            _ => None,
        }
    }

    /// The revert decoded as one of a contract's custom errors (for example
    /// `InferenceRollup::InferenceRollupErrors`).
    pub fn decode_revert<E: SolInterface>(&self) -> Option<E> {
        self.revert_data().and_then(|data| E::abi_decode(data).ok())
    }
}

/// A connection to an Ethereum chain bound to one sender. See the module docs for the guarantees.
pub trait L1: Send + Sync {
    /// The address this handle sends transactions from.
    fn sender(&self) -> Address;

    /// The chain id (EIP-155; also the EIP-712 domain's `chainId`).
    fn chain_id(&self) -> impl Future<Output = Result<u64, L1Error>> + Send;

    /// The latest mined block.
    fn latest_block(&self) -> impl Future<Output = Result<BlockInfo, L1Error>> + Send;

    /// Mined block `number`, if it exists.
    fn block(&self, number: u64)
    -> impl Future<Output = Result<Option<BlockInfo>, L1Error>> + Send;

    /// Balance of `who` in wei.
    fn balance(&self, who: Address) -> impl Future<Output = Result<U256, L1Error>> + Send;

    /// Sends `tx` from [`L1::sender`] and waits until it is mined. A transaction that would revert is not mined and
    /// returns [`L1Error::Reverted`].
    fn send(&self, tx: TxRequest) -> impl Future<Output = Result<Receipt, L1Error>> + Send;

    /// Executes `tx` from [`L1::sender`] against the latest state without mining it (`eth_call`) and returns its
    /// output.
    fn call(&self, tx: TxRequest) -> impl Future<Output = Result<Bytes, L1Error>> + Send;

    /// Logs matching `filter`, in chain order.
    fn logs(&self, filter: &LogFilter) -> impl Future<Output = Result<Vec<L1Log>, L1Error>> + Send;

    /// Mined transaction `hash`, if known.
    fn transaction(
        &self,
        hash: B256,
    ) -> impl Future<Output = Result<Option<TxInfo>, L1Error>> + Send;

    /// The blobs of mined blob transaction `hash`, in the order of its versioned hashes (`None` when the
    /// transaction or its blobs are unknown here, for example pruned). The default answers
    /// [`L1Error::Unsupported`] (a chain handle that cannot serve blobs).
    fn blobs(&self, hash: B256) -> impl Future<Output = Result<Option<Vec<Blob>>, L1Error>> + Send {
        let _ = hash;
        async { Err(L1Error::Unsupported("reading blobs")) }
    }

    /// Moves the chain clock `seconds` forward and mines a block at the new time (development chains only;
    /// [`L1Error::Unsupported`] elsewhere).
    fn advance_time(&self, seconds: u64)
    -> impl Future<Output = Result<BlockInfo, L1Error>> + Send;

    /// Mines a block (empty if nothing is pending); development chains only.
    fn mine(&self) -> impl Future<Output = Result<BlockInfo, L1Error>> + Send;
}
