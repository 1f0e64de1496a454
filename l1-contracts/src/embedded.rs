//! [`EmbeddedChain`]: an in-process Ethereum chain on revm for the devnet and for tests.
//!
//! revm is only the EVM; this module adds what a node would: accounts and nonces, blocks with numbers, timestamps
//! and hashes, receipts, a log index, transaction lookup, and a clock that tests can move ([`L1::advance_time`]).
//!
//! - **Blocks.** By default every successful transaction is mined in a block of its own (like anvil's automine).
//!   With [`EmbeddedChain::set_automine`]`(false)` transactions accumulate in a pending block (they execute at once,
//!   and calls see their effects) until [`L1::mine`] seals it: one block per batch of transactions. Receipts
//!   returned meanwhile carry the pending block's number and timestamp but a zero block hash; read them again with
//!   [`EmbeddedChain::receipt`] after mining.
//! - **Reverts are not mined.** A transaction that reverts or halts changes nothing (no nonce, no block) and returns
//!   [`L1Error::Reverted`]/[`L1Error::Halted`], which is what an RPC client observes when gas estimation fails.
//! - **Time.** Each block's timestamp is at least its parent's plus one second. [`ChainConfig::clock`] picks the
//!   source: [`Clock::Manual`] (deterministic, starts at a fixed genesis time; for tests) or [`Clock::Wall`] (the
//!   system clock; for the devnet). [`L1::advance_time`] moves either forward.
//! - **Gas.** The base fee and gas price are zero, so ETH moves only by `value`: balances are exact in tests. Gas is
//!   still metered and reported (receipts carry `gas_used`). The EVM runs the Cancun rules, as the contracts are
//!   compiled for (`evmVersion` cancun).
//! - **Blobs.** A [`TxRequest`] with a blob sidecar is executed as an EIP-4844 (type-3) transaction, as anvil does:
//!   the sidecar is checked first (at most [`MAX_BLOBS_PER_TX`] blobs, KZG commitments and proofs verified with
//!   c-kzg and the Ethereum trusted setup; a bad sidecar is [`L1Error::Rejected`] and nothing is mined), the
//!   versioned hashes `0x01 ‖ sha256(commitment)[1..]` are what the contract's `blobhash(i)` returns, and the blobs
//!   are kept and served by [`L1::blobs`]. The blob base fee is zero, like the gas price.
//! - **Hashes.** Transaction and block hashes are deterministic keccak digests of their contents; they are unique
//!   on this chain but are not the hashes a real node would compute (there are no signatures or tries).

use crate::l1::{Blob, BlockInfo, L1, L1Error, L1Log, LogFilter, Receipt, TxInfo, TxRequest};
use alloy::eips::eip4844::env_settings::EnvKzgSettings;
use alloy::primitives::{Address, B256, Bytes, TxKind, U256, keccak256};
use revm::{
    Context, DatabaseRef, ExecuteEvm, MainBuilder, MainContext,
    context::{
        BlockEnv, TxEnv,
        result::{ExecutionResult, Output},
    },
    context_interface::block::BlobExcessGasAndPrice,
    database::{CacheDB, DatabaseCommit, EmptyDB},
    primitives::hardfork::SpecId,
    state::{AccountInfo, EvmState},
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// The EVM rule set of the embedded chain; the contracts are compiled for the same (`evmVersion` cancun).
pub const SPEC: SpecId = SpecId::CANCUN;

/// Gas limit of every block, and the default gas limit of a transaction.
pub const BLOCK_GAS_LIMIT: u64 = 30_000_000;

/// Most blobs per transaction (Cancun: 6 blobs, 786,432 blob gas per block).
pub const MAX_BLOBS_PER_TX: usize = 6;

/// Where block timestamps come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// A virtual clock starting at `genesis` (seconds since the Unix epoch); it moves only by one second per block
    /// and by [`L1::advance_time`]. Deterministic.
    Manual {
        /// Timestamp of block 0.
        genesis: u64,
    },
    /// The system clock plus whatever [`L1::advance_time`] added.
    Wall,
}

/// Parameters of a new [`EmbeddedChain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainConfig {
    /// EIP-155 chain id (anvil's 31337 by default).
    pub chain_id: u64,
    /// Timestamp source.
    pub clock: Clock,
    /// Accounts funded at genesis.
    pub funded: Vec<(Address, U256)>,
}

impl Default for ChainConfig {
    /// Chain id 31337, a manual clock starting at 1,700,000,000, and the [`crate::dev`] accounts with 10,000 ETH
    /// each.
    fn default() -> Self {
        Self {
            chain_id: 31337,
            clock: Clock::Manual {
                genesis: 1_700_000_000,
            },
            funded: crate::dev::accounts()
                .into_iter()
                .map(|a| (a.address, crate::dev::DEV_BALANCE))
                .collect(),
        }
    }
}

#[derive(Debug, Clone)]
struct Block {
    info: BlockInfo,
    logs: Vec<L1Log>,
}

#[derive(Debug, Default)]
struct Pending {
    /// `(number, timestamp)` of the pending block, fixed by its first transaction.
    env: Option<(u64, u64)>,
    /// Transactions with their logs (block hash still zero).
    txs: Vec<(B256, Vec<L1Log>)>,
}

#[derive(Debug)]
struct Chain {
    db: CacheDB<EmptyDB>,
    chain_id: u64,
    clock: Clock,
    /// Manual clock: the current time. Wall clock: seconds added by `advance_time`.
    clock_value: u64,
    automine: bool,
    blocks: Vec<Block>,
    pending: Pending,
    txs: HashMap<B256, TxInfo>,
    receipts: HashMap<B256, Receipt>,
    /// Blobs of mined blob transactions, by transaction hash.
    blobs: HashMap<B256, Vec<Blob>>,
}

/// An in-process chain on revm. Cheap to clone (shared state); hand out per-sender [`EmbeddedL1`] handles with
/// [`EmbeddedChain::connect`]. See the module docs.
#[derive(Debug, Clone)]
pub struct EmbeddedChain {
    inner: Arc<Mutex<Chain>>,
}

impl Default for EmbeddedChain {
    fn default() -> Self {
        Self::new(ChainConfig::default())
    }
}

impl EmbeddedChain {
    /// A new chain with a genesis block and the configured funded accounts.
    pub fn new(config: ChainConfig) -> Self {
        let mut db = CacheDB::<EmptyDB>::default();
        for (address, balance) in &config.funded {
            db.insert_account_info(*address, AccountInfo::from_balance(*balance));
        }
        let genesis_ts = match config.clock {
            Clock::Manual { genesis } => genesis,
            Clock::Wall => wall_now(),
        };
        let info = BlockInfo {
            number: 0,
            timestamp: genesis_ts,
            hash: block_hash(B256::ZERO, 0, genesis_ts, &[]),
        };
        let chain = Chain {
            db,
            chain_id: config.chain_id,
            clock: config.clock,
            clock_value: match config.clock {
                Clock::Manual { genesis } => genesis,
                Clock::Wall => 0,
            },
            automine: true,
            blocks: vec![Block {
                info,
                logs: Vec::new(),
            }],
            pending: Pending::default(),
            txs: HashMap::new(),
            receipts: HashMap::new(),
            blobs: HashMap::new(),
        };
        Self {
            inner: Arc::new(Mutex::new(chain)),
        }
    }

    /// A handle that sends from `sender` (no key needed: the embedded chain does not check signatures).
    pub fn connect(&self, sender: Address) -> EmbeddedL1 {
        EmbeddedL1 {
            chain: self.clone(),
            sender,
        }
    }

    /// Sets the balance of `who` (like `anvil_setBalance`).
    pub fn set_balance(&self, who: Address, balance: U256) -> Result<(), L1Error> {
        let mut chain = self.lock();
        let mut info = chain.account(who)?;
        info.balance = balance;
        chain.db.insert_account_info(who, info);
        Ok(())
    }

    /// Whether each transaction is mined in its own block (default `true`). When switched off, transactions wait in
    /// the pending block until [`L1::mine`]; switching it back on seals the pending block.
    pub fn set_automine(&self, automine: bool) {
        let mut chain = self.lock();
        chain.automine = automine;
        if automine {
            chain.seal();
        }
    }

    /// The latest mined block.
    pub fn latest_block(&self) -> BlockInfo {
        self.lock().latest().info
    }

    /// The chain id.
    pub fn chain_id(&self) -> u64 {
        self.lock().chain_id
    }

    /// The receipt of mined transaction `hash`.
    pub fn receipt(&self, hash: B256) -> Option<Receipt> {
        self.lock().receipts.get(&hash).cloned()
    }

    fn lock(&self) -> MutexGuard<'_, Chain> {
        // A panic while the lock was held cannot leave a half-applied transaction: state is committed in one step
        // after execution. Keep serving.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An [`EmbeddedChain`] handle bound to one sender; implements [`L1`].
#[derive(Debug, Clone)]
pub struct EmbeddedL1 {
    chain: EmbeddedChain,
    sender: Address,
}

impl EmbeddedL1 {
    /// The chain this handle belongs to.
    pub fn chain(&self) -> &EmbeddedChain {
        &self.chain
    }

    /// The same chain, sending from `sender`.
    pub fn with_sender(&self, sender: Address) -> Self {
        self.chain.connect(sender)
    }
}

impl L1 for EmbeddedL1 {
    fn sender(&self) -> Address {
        self.sender
    }

    async fn chain_id(&self) -> Result<u64, L1Error> {
        Ok(self.chain.chain_id())
    }

    async fn latest_block(&self) -> Result<BlockInfo, L1Error> {
        Ok(self.chain.latest_block())
    }

    async fn block(&self, number: u64) -> Result<Option<BlockInfo>, L1Error> {
        let chain = self.chain.lock();
        Ok(usize::try_from(number)
            .ok()
            .and_then(|n| chain.blocks.get(n))
            .map(|b| b.info))
    }

    async fn balance(&self, who: Address) -> Result<U256, L1Error> {
        Ok(self.chain.lock().account(who)?.balance)
    }

    async fn send(&self, tx: TxRequest) -> Result<Receipt, L1Error> {
        self.chain.lock().send(self.sender, tx)
    }

    async fn call(&self, tx: TxRequest) -> Result<Bytes, L1Error> {
        self.chain.lock().call(self.sender, tx)
    }

    async fn logs(&self, filter: &LogFilter) -> Result<Vec<L1Log>, L1Error> {
        let chain = self.chain.lock();
        let from = usize::try_from(filter.from_block).unwrap_or(usize::MAX);
        Ok(chain
            .blocks
            .iter()
            .skip(from)
            .take_while(|b| filter.to_block.is_none_or(|to| b.info.number <= to))
            .flat_map(|b| b.logs.iter())
            .filter(|log| filter.matches(&log.inner, log.block_number))
            .cloned()
            .collect())
    }

    async fn transaction(&self, hash: B256) -> Result<Option<TxInfo>, L1Error> {
        Ok(self.chain.lock().txs.get(&hash).cloned())
    }

    async fn blobs(&self, hash: B256) -> Result<Option<Vec<Blob>>, L1Error> {
        Ok(self.chain.lock().blobs.get(&hash).cloned())
    }

    async fn advance_time(&self, seconds: u64) -> Result<BlockInfo, L1Error> {
        let mut chain = self.chain.lock();
        chain.seal();
        let latest = chain.latest().info.timestamp;
        match chain.clock {
            Clock::Manual { .. } => {
                chain.clock_value = chain.clock_value.max(latest).saturating_add(seconds);
            }
            Clock::Wall => chain.clock_value = chain.clock_value.saturating_add(seconds),
        }
        Ok(chain.mine_empty())
    }

    async fn mine(&self) -> Result<BlockInfo, L1Error> {
        let mut chain = self.chain.lock();
        if chain.pending.env.is_some() {
            chain.seal();
            Ok(chain.latest().info)
        } else {
            Ok(chain.mine_empty())
        }
    }
}

impl Chain {
    fn latest(&self) -> &Block {
        // `blocks` always holds the genesis block.
        &self.blocks[self.blocks.len() - 1]
    }

    fn account(&self, who: Address) -> Result<AccountInfo, L1Error> {
        Ok(self
            .db
            .basic_ref(who)
            .map_err(|e| L1Error::Backend(e.to_string()))?
            .unwrap_or_default())
    }

    fn now(&self) -> u64 {
        match self.clock {
            Clock::Manual { .. } => self.clock_value,
            Clock::Wall => wall_now().saturating_add(self.clock_value),
        }
    }

    /// Number and timestamp of the pending block, opening it if needed.
    fn pending_env(&mut self) -> (u64, u64) {
        if let Some(env) = self.pending.env {
            return env;
        }
        let parent = self.latest().info;
        let env = (
            parent.number + 1,
            self.now().max(parent.timestamp.saturating_add(1)),
        );
        self.pending.env = Some(env);
        env
    }

    fn mine_empty(&mut self) -> BlockInfo {
        self.pending_env();
        self.seal();
        self.latest().info
    }

    /// Seals the pending block, if any.
    fn seal(&mut self) {
        let Some((number, timestamp)) = self.pending.env.take() else {
            return;
        };
        let txs = std::mem::take(&mut self.pending.txs);
        let parent = self.latest().info.hash;
        let tx_hashes: Vec<B256> = txs.iter().map(|(h, _)| *h).collect();
        let hash = block_hash(parent, number, timestamp, &tx_hashes);
        let info = BlockInfo {
            number,
            timestamp,
            hash,
        };
        let mut logs = Vec::new();
        for (tx_hash, mut tx_logs) in txs {
            for log in &mut tx_logs {
                log.block_hash = hash;
            }
            if let Some(receipt) = self.receipts.get_mut(&tx_hash) {
                receipt.block_hash = hash;
                receipt.logs.clone_from(&tx_logs);
            }
            logs.extend(tx_logs);
        }
        self.blocks.push(Block { info, logs });
    }

    fn tx_env(
        &self,
        from: Address,
        tx: &TxRequest,
        nonce: u64,
        blob_hashes: Vec<B256>,
    ) -> Result<TxEnv, L1Error> {
        let mut builder = TxEnv::builder()
            .caller(from)
            .kind(tx.to.map_or(TxKind::Create, TxKind::Call))
            .value(tx.value)
            .data(tx.input.clone())
            .nonce(nonce)
            .gas_limit(tx.gas_limit.unwrap_or(BLOCK_GAS_LIMIT))
            .gas_price(0)
            .gas_priority_fee(Some(0))
            .chain_id(Some(self.chain_id));
        if tx.blobs.is_some() {
            builder = builder
                .tx_type(Some(3))
                .blob_hashes(blob_hashes)
                .max_fee_per_blob_gas(0);
        }
        builder
            .build()
            .map_err(|e| L1Error::Rejected(format!("{e:?}")))
    }

    /// Runs `tx` in block `(number, timestamp)` on the current state; returns the result and the state diff without
    /// committing it.
    fn execute(
        &mut self,
        from: Address,
        tx: &TxRequest,
        number: u64,
        timestamp: u64,
    ) -> Result<(ExecutionResult, EvmState, u64), L1Error> {
        let nonce = self.account(from)?.nonce;
        let blob_hashes = check_sidecar(tx)?;
        let tx_env = self.tx_env(from, tx, nonce, blob_hashes)?;
        let block = BlockEnv {
            number: U256::from(number),
            timestamp: U256::from(timestamp),
            gas_limit: BLOCK_GAS_LIMIT,
            basefee: 0,
            prevrandao: Some(keccak256(number.to_be_bytes())),
            blob_excess_gas_and_price: Some(BlobExcessGasAndPrice {
                excess_blob_gas: 0,
                blob_gasprice: 0,
            }),
            ..BlockEnv::default()
        };
        let chain_id = self.chain_id;
        // The EVM is built per execution: it is not `Send` (revm keeps an `Rc` buffer), the database is.
        let db = std::mem::take(&mut self.db);
        let mut evm = Context::mainnet()
            .with_db(db)
            .with_block(block)
            .modify_cfg_chained(|cfg| {
                cfg.set_spec_and_mainnet_gas_params(SPEC);
                cfg.chain_id = chain_id;
            })
            .build_mainnet();
        let outcome = evm.transact(tx_env);
        self.db = std::mem::take(&mut evm.ctx.journaled_state.database);
        let outcome = outcome.map_err(|e| L1Error::Rejected(e.to_string()))?;
        Ok((outcome.result, outcome.state, nonce))
    }

    fn send(&mut self, from: Address, tx: TxRequest) -> Result<Receipt, L1Error> {
        let (number, timestamp) = self.pending_env();
        let result = self.execute(from, &tx, number, timestamp);
        let (result, state, nonce) = match result {
            Ok(ok) => ok,
            Err(e) => {
                self.discard_empty_pending();
                return Err(e);
            }
        };
        let gas_used = result.tx_gas_used();
        let (logs, contract_address) = match result {
            ExecutionResult::Success { logs, output, .. } => {
                let created = match output {
                    Output::Create(_, address) => address,
                    Output::Call(_) => None,
                };
                (logs, created)
            }
            ExecutionResult::Revert { output, .. } => {
                self.discard_empty_pending();
                return Err(L1Error::Reverted {
                    data: output,
                    gas_used,
                });
            }
            ExecutionResult::Halt { reason, .. } => {
                self.discard_empty_pending();
                return Err(L1Error::Halted {
                    reason: format!("{reason:?}"),
                    gas_used,
                });
            }
        };
        self.db.commit(state);
        let hash = tx_hash(self.chain_id, from, nonce);
        let first_index = self.pending.txs.iter().map(|(_, l)| l.len()).sum::<usize>() as u64;
        let logs: Vec<L1Log> = logs
            .into_iter()
            .enumerate()
            .map(|(i, inner)| L1Log {
                inner,
                block_number: number,
                block_hash: B256::ZERO,
                block_timestamp: timestamp,
                tx_hash: hash,
                log_index: first_index + i as u64,
            })
            .collect();
        let blob_versioned_hashes: Vec<B256> = tx
            .blobs
            .as_ref()
            .map(|s| s.versioned_hashes().collect())
            .unwrap_or_default();
        if let Some(sidecar) = tx.blobs {
            self.blobs.insert(hash, sidecar.blobs);
        }
        self.txs.insert(
            hash,
            TxInfo {
                hash,
                from,
                to: tx.to,
                value: tx.value,
                input: tx.input,
                blob_versioned_hashes,
                block_number: number,
            },
        );
        self.receipts.insert(
            hash,
            Receipt {
                tx_hash: hash,
                block_number: number,
                block_hash: B256::ZERO,
                block_timestamp: timestamp,
                gas_used,
                contract_address,
                logs: logs.clone(),
            },
        );
        self.pending.txs.push((hash, logs));
        if self.automine {
            self.seal();
        }
        self.receipts
            .get(&hash)
            .cloned()
            .ok_or_else(|| L1Error::Backend("receipt vanished".into()))
    }

    /// Drops a pending block that a failed transaction opened and nothing else uses (automine).
    fn discard_empty_pending(&mut self) {
        if self.automine && self.pending.txs.is_empty() {
            self.pending.env = None;
        }
    }

    fn call(&mut self, from: Address, tx: TxRequest) -> Result<Bytes, L1Error> {
        let (number, timestamp) = match self.pending.env {
            Some(env) => env,
            None => {
                let latest = self.latest().info;
                (latest.number, latest.timestamp)
            }
        };
        let (result, _state, _) = self.execute(from, &tx, number, timestamp)?;
        let gas_used = result.tx_gas_used();
        match result {
            ExecutionResult::Success { output, .. } => Ok(output.into_data()),
            ExecutionResult::Revert { output, .. } => Err(L1Error::Reverted {
                data: output,
                gas_used,
            }),
            ExecutionResult::Halt { reason, .. } => Err(L1Error::Halted {
                reason: format!("{reason:?}"),
                gas_used,
            }),
        }
    }
}

/// The versioned hashes of `tx`'s blob sidecar after checking it as a node's transaction pool would (count, a call
/// and not a creation, commitments and KZG proofs); empty without a sidecar.
fn check_sidecar(tx: &TxRequest) -> Result<Vec<B256>, L1Error> {
    let Some(sidecar) = &tx.blobs else {
        return Ok(Vec::new());
    };
    if tx.to.is_none() {
        return Err(L1Error::Rejected(
            "a blob transaction cannot create a contract".into(),
        ));
    }
    let n = sidecar.blobs.len();
    if n == 0 || n > MAX_BLOBS_PER_TX {
        return Err(L1Error::Rejected(format!(
            "a blob transaction carries 1 to {MAX_BLOBS_PER_TX} blobs, not {n}"
        )));
    }
    if sidecar.commitments.len() != n || sidecar.proofs.len() != n {
        return Err(L1Error::Rejected(format!(
            "blob sidecar with {n} blobs, {} commitments and {} proofs",
            sidecar.commitments.len(),
            sidecar.proofs.len()
        )));
    }
    let hashes: Vec<B256> = sidecar.versioned_hashes().collect();
    sidecar
        .validate(&hashes, EnvKzgSettings::Default.get())
        .map_err(|e| L1Error::Rejected(format!("invalid blob sidecar: {e}")))?;
    Ok(hashes)
}

fn wall_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn tx_hash(chain_id: u64, from: Address, nonce: u64) -> B256 {
    let mut buf = Vec::with_capacity(8 + 20 + 8);
    buf.extend_from_slice(&chain_id.to_be_bytes());
    buf.extend_from_slice(from.as_slice());
    buf.extend_from_slice(&nonce.to_be_bytes());
    keccak256(buf)
}

fn block_hash(parent: B256, number: u64, timestamp: u64, txs: &[B256]) -> B256 {
    let mut buf = Vec::with_capacity(48 + 32 * txs.len());
    buf.extend_from_slice(parent.as_slice());
    buf.extend_from_slice(&number.to_be_bytes());
    buf.extend_from_slice(&timestamp.to_be_bytes());
    for t in txs {
        buf.extend_from_slice(t.as_slice());
    }
    keccak256(buf)
}
