//! [`RpcL1`]: the [`L1`] trait over Ethereum JSON-RPC (anvil, geth, reth, testnets) with alloy's HTTP provider and
//! a local signer, and [`LogFollower`]: confirmed, reorg-aware, resumable event following over any [`L1`].
//!
//! # Sending
//!
//! [`L1::send`] runs these steps; only the broadcast is serialised per handle, everything else runs concurrently:
//!
//! 1. **Pre-flight.** `eth_estimateGas` (or `eth_call` with the caller's gas limit). A transaction that would revert
//!    is not sent and returns [`L1Error::Reverted`] with the revert data, exactly as the embedded chain reports it,
//!    so the typed clients decode the same custom errors. No nonce is taken before this step succeeds.
//! 2. **Fees.** EIP-1559 (type 2): `maxFeePerGas` and `maxPriorityFeePerGas` from `eth_feeHistory` (alloy's
//!    estimator), capped by [`RpcConfig::max_fee_per_gas`].
//! 3. **Nonce and broadcast**, under the handle's nonce lock. The nonce is fetched once (`pending` count) and then
//!    counted locally; it is consumed only when the node accepts the transaction. On `nonce too low`, `already
//!    known` or `replacement transaction underpriced`, the handle first asks the node for this very transaction
//!    (a retried broadcast whose first attempt got through is refused like that, and must not be signed again
//!    under a new nonce); if the node does not have it, another client used the nonce: the handle re-reads the
//!    pending nonce and signs again. A broadcast that still fails on transport after the retries leaves the outcome
//!    unknown: the send fails and the next one re-reads the nonce from the node.
//! 4. **Inclusion, replacement.** The receipt is polled every [`RpcConfig::poll_interval`]. When no version of the
//!    transaction is mined within [`RpcConfig::bump_after`], the same nonce is re-signed with both fees raised by at
//!    least [`RpcConfig::fee_bump_permille`] (at least 12.5 %, above geth's 10 % replacement rule) and at least the
//!    current estimate, up to [`RpcConfig::max_bumps`] times; every version's hash is watched. If the account's
//!    nonce moves past ours without any of our versions mined (two rounds in a row), a transaction we did not send
//!    took it and the send fails with [`L1Error::Rejected`].
//! 5. **Confirmations.** The receipt is returned once its block has [`RpcConfig::confirmations`] confirmations
//!    (1 = mined); a receipt that disappears in a reorg is waited for again (the transaction normally returns to the
//!    mempool; the replacement path re-broadcasts it otherwise).
//! 7. **Blobs.** A [`TxRequest`] with a sidecar is sent as a type-3 transaction: its versioned hashes go into the
//!    pre-flight (so `blobhash` works in the estimate), `maxFeePerBlobGas` is twice the node's `eth_blobBaseFee`
//!    (at least 1 wei), and the sidecar is sent in [`RpcConfig::blob_sidecar`]'s form: cell proofs (EIP-7594, what
//!    post-Fusaka networks accept) by default, or the v0 blob proofs. A replacement doubles all three fees (the
//!    blob pools' replacement rule). [`L1::blobs`] reads the blobs back from [`RpcConfig::beacon_url`] (beacon API
//!    `GET /eth/v1/beacon/blobs/{block}`) when set, else with anvil's `anvil_getBlobsByTransactionHash`.
//! 6. **A mined revert** (possible when the state changed between pre-flight and inclusion) returns
//!    [`L1Error::Reverted`] with the gas used and the revert data recovered by `debug_traceTransaction` (call
//!    tracer) or, where that is not offered, by replaying the call at the parent block ([`L1Error::Halted`] for an
//!    exceptional halt such as out of gas); the nonce is used, the next send is unaffected.
//!
//! A handle's nonce counter is shared by its clones. Two handles (or processes) sending from one key are outside the
//! model: they recover through the nonce-too-low resync, but may each wait for a replacement round.
//!
//! # Reads and retries
//!
//! Every request is retried with exponential backoff ([`RetryConfig`]) on connection errors, timeouts, HTTP 429/5xx
//! and rate-limit error responses; other errors are returned at once. Error messages never contain the private key,
//! and the URL's path, query and credentials (where providers put API keys) are redacted from them.
//!
//! # Development nodes
//!
//! [`L1::advance_time`] is `evm_increaseTime` + `evm_mine`; [`L1::mine`] is `evm_mine`. Nodes without these
//! methods answer [`L1Error::Unsupported`]. [`RpcL1::snapshot`], [`RpcL1::revert_to`] and
//! [`RpcL1::set_automine`] wrap anvil's `evm_snapshot`, `evm_revert` and `evm_setAutomine`.

mod errors;
pub mod follower;

pub use follower::{
    BlockRef, Cursor, CursorError, CursorStore, Delivery, FileCursorStore, FollowerConfig,
    FollowerError, LogFollower, LogId, MemoryCursorStore,
};

use crate::l1::{Blob, BlobTransactionSidecar};
use crate::l1::{BlockInfo, L1, L1Error, L1Log, LogFilter, Receipt, TxInfo, TxRequest};
use alloy::consensus::{
    SignableTransaction, Transaction as _, TxEip1559, TxEip4844, TxEip4844Variant,
    TxEip4844WithSidecar, TxEnvelope,
};
use alloy::eips::eip4844::env_settings::EnvKzgSettings;
use alloy::eips::eip7594::BlobTransactionSidecarVariant;
use alloy::eips::{BlockId, BlockNumberOrTag, eip2718::Encodable2718};
use alloy::network::{TransactionResponse, TxSignerSync};
use alloy::primitives::{Address, B256, Bytes, TxKind, U256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::{
    Block, Filter, Log as RpcLog, TransactionInput, TransactionReceipt, TransactionRequest,
};
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::{TransportError, TransportResult, http::reqwest::Url};
use errors::{BroadcastError, Redactor};
use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Retry policy for transient transport failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryConfig {
    /// Retries after the first attempt (0 disables retrying).
    pub max_retries: u32,
    /// Delay before the first retry; doubled each time.
    pub initial_backoff: Duration,
    /// Longest delay between two attempts (also caps a server's `Retry-After`).
    pub max_backoff: Duration,
}

impl Default for RetryConfig {
    /// 8 retries, 200 ms doubling to at most 10 s (about 35 s in all).
    fn default() -> Self {
        Self {
            max_retries: 8,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// The form in which blob sidecars are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BlobSidecarFormat {
    /// v0 (EIP-4844): one KZG proof per blob. Pre-Fusaka networks; anvil accepts it too.
    Eip4844,
    /// v1 (EIP-7594, PeerDAS): 128 cell proofs per blob. What post-Fusaka transaction pools accept.
    #[default]
    Eip7594,
}

/// Parameters of an [`RpcL1`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcConfig {
    /// Confirmations a receipt needs before [`L1::send`] returns (1: mined; values below 1 count as 1).
    pub confirmations: u64,
    /// How often receipts and blocks are polled.
    pub poll_interval: Duration,
    /// How long a broadcast version may stay unmined before it is replaced with higher fees.
    pub bump_after: Duration,
    /// Most replacements per transaction (after that the newest version is re-broadcast as is).
    pub max_bumps: u32,
    /// Fee increase per replacement, in per mille of the previous fees; at least 125 (12.5 %) is used.
    pub fee_bump_permille: u64,
    /// Highest `maxFeePerGas` the client will sign, wei (`None`: no cap).
    pub max_fee_per_gas: Option<u128>,
    /// Gas limit margin on top of `eth_estimateGas`, percent.
    pub gas_margin_percent: u64,
    /// Give up waiting for inclusion and confirmations after this long (the transaction may still be mined later).
    pub mine_timeout: Duration,
    /// Largest block range of one `eth_getLogs` request ([`L1::logs`] splits longer ranges).
    pub max_log_range: u64,
    /// Transport retries.
    pub retry: RetryConfig,
    /// Sidecar form of blob transactions.
    pub blob_sidecar: BlobSidecarFormat,
    /// Beacon node API base URL (`http://host:5052`) to read blobs from; `None`: anvil's
    /// `anvil_getBlobsByTransactionHash`.
    pub beacon_url: Option<String>,
}

impl Default for RpcConfig {
    /// Values for a public network: 1 confirmation, 1 s polling, replacement after 45 s, 10 bumps of 12.5 %, a 20 %
    /// gas margin, a 15 min timeout, 5,000-block log ranges.
    fn default() -> Self {
        Self {
            confirmations: 1,
            poll_interval: Duration::from_secs(1),
            bump_after: Duration::from_secs(45),
            max_bumps: 10,
            fee_bump_permille: 125,
            max_fee_per_gas: None,
            gas_margin_percent: 20,
            mine_timeout: Duration::from_secs(15 * 60),
            max_log_range: 5_000,
            retry: RetryConfig::default(),
            blob_sidecar: BlobSidecarFormat::default(),
            beacon_url: None,
        }
    }
}

impl RpcConfig {
    /// Values for a local development node (anvil): 50 ms polling, replacement after 5 s, a 2 min timeout.
    pub fn local() -> Self {
        Self {
            poll_interval: Duration::from_millis(50),
            bump_after: Duration::from_secs(5),
            mine_timeout: Duration::from_secs(120),
            ..Self::default()
        }
    }
}

struct Inner {
    provider: RootProvider,
    signer: PrivateKeySigner,
    chain_id: u64,
    config: RpcConfig,
    redact: Redactor,
    /// The next nonce to use; `None`: read the pending nonce from the node first.
    nonce: Arc<tokio::sync::Mutex<Option<u64>>>,
}

/// An [`L1`] over JSON-RPC bound to one local signer. Cheap to clone (clones share the nonce counter). See the
/// module docs for the sending, retry and confirmation rules.
#[derive(Clone)]
pub struct RpcL1 {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RpcL1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key; not the URL either (it may carry an API key).
        f.debug_struct("RpcL1")
            .field("sender", &self.sender())
            .field("chain_id", &self.inner.chain_id)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// An unsigned transaction of either type [`RpcL1`] sends.
#[derive(Clone)]
enum Unsigned {
    /// Type 2.
    Eip1559(TxEip1559),
    /// Type 3 with its sidecar (in the network form).
    Eip4844(Box<TxEip4844WithSidecar<BlobTransactionSidecarVariant>>),
}

impl Unsigned {
    fn nonce(&self) -> u64 {
        match self {
            Self::Eip1559(t) => t.nonce,
            Self::Eip4844(t) => t.tx.nonce,
        }
    }

    fn set_nonce(&mut self, nonce: u64) {
        match self {
            Self::Eip1559(t) => t.nonce = nonce,
            Self::Eip4844(t) => t.tx.nonce = nonce,
        }
    }

    /// `(maxFeePerGas, maxPriorityFeePerGas)`.
    fn fees(&self) -> (u128, u128) {
        match self {
            Self::Eip1559(t) => (t.max_fee_per_gas, t.max_priority_fee_per_gas),
            Self::Eip4844(t) => (t.tx.max_fee_per_gas, t.tx.max_priority_fee_per_gas),
        }
    }

    fn set_fees(&mut self, max_fee: u128, priority: u128) {
        match self {
            Self::Eip1559(t) => {
                t.max_fee_per_gas = max_fee;
                t.max_priority_fee_per_gas = priority;
            }
            Self::Eip4844(t) => {
                t.tx.max_fee_per_gas = max_fee;
                t.tx.max_priority_fee_per_gas = priority;
            }
        }
    }

    fn is_blob(&self) -> bool {
        matches!(self, Self::Eip4844(_))
    }
}

/// One broadcast transaction and its replacements (same nonce).
struct InFlight {
    /// The newest version (nonce, gas, fees).
    tx: Unsigned,
    /// Its encoded form, for re-broadcasting.
    raw: Bytes,
    /// Hashes of every version broadcast, oldest first.
    hashes: Vec<B256>,
    /// The previous replacement round found the nonce used with none of `hashes` mined.
    foreign_nonce_seen: bool,
}

impl RpcL1 {
    /// Connects to the HTTP(S) endpoint `url` and signs with `signer` (the key stays in memory, is never logged, and
    /// is not part of any error or `Debug` output). Reads the chain id (with retries).
    ///
    /// `https` endpoints need a TLS backend in alloy's reqwest; see `shared/notes/eth-stack.md` (pitfall 8) and use
    /// [`RpcL1::with_provider`] with a provider built on a TLS-enabled `reqwest::Client`.
    pub async fn connect(
        url: &str,
        signer: PrivateKeySigner,
        config: RpcConfig,
    ) -> Result<Self, L1Error> {
        let url: Url = url
            .parse()
            .map_err(|e| L1Error::Backend(format!("invalid RPC URL: {e}")))?;
        let redact = Redactor::new(&url);
        Self::build(RootProvider::new_http(url), signer, config, redact).await
    }

    /// Uses an existing provider (any transport, TLS or authentication layers included).
    pub async fn with_provider(
        provider: RootProvider,
        signer: PrivateKeySigner,
        config: RpcConfig,
    ) -> Result<Self, L1Error> {
        Self::build(provider, signer, config, Redactor::none()).await
    }

    async fn build(
        provider: RootProvider,
        signer: PrivateKeySigner,
        config: RpcConfig,
        redact: Redactor,
    ) -> Result<Self, L1Error> {
        let chain_id = retry(&config.retry, || provider.get_chain_id())
            .await
            .map_err(|e| errors::backend(&e, &redact))?;
        Ok(Self {
            inner: Arc::new(Inner {
                provider,
                signer,
                chain_id,
                config,
                redact,
                nonce: Arc::new(tokio::sync::Mutex::new(None)),
            }),
        })
    }

    /// A handle on the same node and chain signing with `signer` (its own nonce counter; no request is made).
    pub fn with_signer(&self, signer: PrivateKeySigner) -> Self {
        Self {
            inner: Arc::new(Inner {
                provider: self.inner.provider.clone(),
                signer,
                chain_id: self.inner.chain_id,
                config: self.inner.config.clone(),
                redact: self.inner.redact.clone(),
                nonce: Arc::new(tokio::sync::Mutex::new(None)),
            }),
        }
    }

    /// A handle with the same node, signer and nonce counter but other parameters.
    pub fn with_config(&self, config: RpcConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                provider: self.inner.provider.clone(),
                signer: self.inner.signer.clone(),
                chain_id: self.inner.chain_id,
                config,
                redact: self.inner.redact.clone(),
                nonce: Arc::clone(&self.inner.nonce),
            }),
        }
    }

    /// The parameters.
    pub fn config(&self) -> &RpcConfig {
        &self.inner.config
    }

    /// The underlying provider (no fillers, no wallet), for requests the trait does not cover.
    pub fn provider(&self) -> &RootProvider {
        &self.inner.provider
    }

    /// Forgets the local nonce: the next send reads the pending nonce from the node. Needed after state was rolled
    /// back behind the client's back ([`RpcL1::revert_to`], a node restart).
    pub async fn resync_nonce(&self) {
        *self.inner.nonce.lock().await = None;
    }

    /// Sends a raw JSON-RPC request (with retries); errors are [`L1Error::Backend`], or [`L1Error::Unsupported`]
    /// (with `what`) when the node does not know the method.
    pub async fn request<P, R>(
        &self,
        method: &'static str,
        params: P,
        what: &'static str,
    ) -> Result<R, L1Error>
    where
        P: alloy::rpc::json_rpc::RpcSend + Clone,
        R: alloy::rpc::json_rpc::RpcRecv,
    {
        let provider = &self.inner.provider;
        retry(&self.inner.config.retry, || {
            let params = params.clone();
            async move {
                provider
                    .raw_request::<P, R>(Cow::Borrowed(method), params)
                    .await
            }
        })
        .await
        .map_err(|e| {
            if errors::is_unsupported(&e) {
                L1Error::Unsupported(what)
            } else {
                self.backend(&e)
            }
        })
    }

    /// `evm_snapshot` (anvil, hardhat): an id for [`RpcL1::revert_to`].
    pub async fn snapshot(&self) -> Result<U256, L1Error> {
        self.request(
            "evm_snapshot",
            (),
            "evm_snapshot needs a development node (anvil)",
        )
        .await
    }

    /// `evm_revert` to a [`RpcL1::snapshot`] (the chain's head goes back: a reorganisation for followers); resyncs
    /// this handle's nonce. Other handles must call [`RpcL1::resync_nonce`].
    pub async fn revert_to(&self, snapshot: U256) -> Result<bool, L1Error> {
        let ok = self
            .request(
                "evm_revert",
                (snapshot,),
                "evm_revert needs a development node (anvil)",
            )
            .await?;
        self.resync_nonce().await;
        Ok(ok)
    }

    /// `evm_setAutomine` (anvil): mine one block per transaction, or only on [`L1::mine`].
    pub async fn set_automine(&self, automine: bool) -> Result<(), L1Error> {
        let _: serde_json::Value = self
            .request(
                "evm_setAutomine",
                (automine,),
                "evm_setAutomine needs a development node (anvil)",
            )
            .await?;
        Ok(())
    }

    /// The receipt of transaction `hash` once mined, converted like [`L1::send`]'s (reverted transactions
    /// included; `None` while pending or unknown).
    pub async fn receipt(&self, hash: B256) -> Result<Option<Receipt>, L1Error> {
        match self.fetch_receipt(hash).await? {
            Some(r) if r.block_number.is_some() => Ok(Some(self.convert_receipt(&r).await?)),
            _ => Ok(None),
        }
    }

    fn backend(&self, e: &TransportError) -> L1Error {
        errors::backend(e, &self.inner.redact)
    }

    fn retry_config(&self) -> &RetryConfig {
        &self.inner.config.retry
    }

    fn request_for(&self, tx: &TxRequest) -> TransactionRequest {
        TransactionRequest {
            from: Some(self.sender()),
            to: Some(tx.to.map_or(TxKind::Create, TxKind::Call)),
            value: Some(tx.value),
            input: TransactionInput::new(tx.input.clone()),
            gas: tx.gas_limit,
            blob_versioned_hashes: tx.blobs.as_ref().map(|s| s.versioned_hashes().collect()),
            ..TransactionRequest::default()
        }
    }

    /// `maxFeePerBlobGas` to offer: twice the current blob base fee, at least 1 wei.
    async fn blob_fee(&self) -> Result<u128, L1Error> {
        let p = &self.inner.provider;
        let base = retry(self.retry_config(), || p.get_blob_base_fee())
            .await
            .map_err(|e| self.backend(&e))?;
        Ok(base.saturating_mul(2).max(1))
    }

    /// The sidecar in the configured network form.
    fn network_sidecar(
        &self,
        sidecar: BlobTransactionSidecar,
    ) -> Result<BlobTransactionSidecarVariant, L1Error> {
        Ok(match self.inner.config.blob_sidecar {
            BlobSidecarFormat::Eip4844 => BlobTransactionSidecarVariant::Eip4844(sidecar),
            BlobSidecarFormat::Eip7594 => BlobTransactionSidecarVariant::Eip7594(
                sidecar
                    .try_into_7594(EnvKzgSettings::Default.get())
                    .map_err(|e| L1Error::Rejected(format!("cannot compute cell proofs: {e}")))?,
            ),
        })
    }

    async fn block_number(&self) -> Result<u64, L1Error> {
        let p = &self.inner.provider;
        retry(self.retry_config(), || p.get_block_number())
            .await
            .map_err(|e| self.backend(&e))
    }

    async fn fetch_block(&self, id: BlockId) -> Result<Option<Block>, L1Error> {
        let p = &self.inner.provider;
        retry(self.retry_config(), || async move { p.get_block(id).await })
            .await
            .map_err(|e| self.backend(&e))
    }

    async fn fetch_receipt(&self, hash: B256) -> Result<Option<TransactionReceipt>, L1Error> {
        let p = &self.inner.provider;
        retry(self.retry_config(), || p.get_transaction_receipt(hash))
            .await
            .map_err(|e| self.backend(&e))
    }

    async fn nonce_at(&self, block: BlockId) -> Result<u64, L1Error> {
        let p = &self.inner.provider;
        let sender = self.sender();
        retry(self.retry_config(), || async move {
            p.get_transaction_count(sender).block_id(block).await
        })
        .await
        .map_err(|e| self.backend(&e))
    }

    /// Current EIP-1559 fees, capped.
    async fn fees(&self) -> Result<(u128, u128), L1Error> {
        let p = &self.inner.provider;
        let est = retry(self.retry_config(), || async move {
            p.estimate_eip1559_fees().await
        })
        .await
        .map_err(|e| self.backend(&e))?;
        let mut max_fee = est.max_fee_per_gas;
        let mut priority = est.max_priority_fee_per_gas;
        if let Some(cap) = self.inner.config.max_fee_per_gas {
            max_fee = max_fee.min(cap);
        }
        priority = priority.min(max_fee);
        max_fee = max_fee.max(priority);
        Ok((max_fee, priority))
    }

    /// Step 1: the gas limit, or the revert.
    async fn preflight(&self, tx: &TxRequest) -> Result<u64, L1Error> {
        let req = self.request_for(tx);
        let p = &self.inner.provider;
        let redact = &self.inner.redact;
        match tx.gas_limit {
            Some(gas) => {
                retry(self.retry_config(), || {
                    let req = req.clone();
                    async move { p.call(req).block(BlockId::latest()).await }
                })
                .await
                .map_err(|e| errors::execution(&e, redact))?;
                Ok(gas)
            }
            None => {
                let estimate = retry(self.retry_config(), || {
                    let req = req.clone();
                    async move { p.estimate_gas(req).await }
                })
                .await
                .map_err(|e| errors::execution(&e, redact))?;
                let margin = estimate.saturating_mul(self.inner.config.gas_margin_percent) / 100;
                Ok(estimate.saturating_add(margin))
            }
        }
    }

    fn sign(&self, tx: &mut Unsigned) -> Result<(Bytes, B256), L1Error> {
        let failed = |e: alloy::signers::Error| L1Error::Backend(format!("signing failed: {e}"));
        let envelope = match tx {
            Unsigned::Eip1559(t) => {
                let signature = self.inner.signer.sign_transaction_sync(t).map_err(failed)?;
                TxEnvelope::from(t.clone().into_signed(signature))
            }
            Unsigned::Eip4844(t) => {
                let mut variant = TxEip4844Variant::TxEip4844WithSidecar((**t).clone());
                let signature = self
                    .inner
                    .signer
                    .sign_transaction_sync(&mut variant)
                    .map_err(failed)?;
                TxEnvelope::from(variant.into_signed(signature))
            }
        };
        Ok((envelope.encoded_2718().into(), *envelope.tx_hash()))
    }

    /// `eth_sendRawTransaction` with retries, classified.
    async fn broadcast(&self, raw: &Bytes) -> Result<(), BroadcastError> {
        let p = &self.inner.provider;
        retry(self.retry_config(), || async move {
            p.send_raw_transaction(raw).await.map(|_| ())
        })
        .await
        .map_err(errors::broadcast)
    }

    /// Step 3: takes a nonce, signs and broadcasts; the nonce is consumed only when the node accepts.
    async fn broadcast_new(&self, mut tx: Unsigned) -> Result<InFlight, L1Error> {
        const RESYNCS: usize = 4;
        let mut next = self.inner.nonce.lock().await;
        let mut last = String::new();
        for _ in 0..RESYNCS {
            let nonce = match *next {
                Some(n) => n,
                None => self.nonce_at(BlockId::pending()).await?,
            };
            tx.set_nonce(nonce);
            let (raw, hash) = self.sign(&mut tx)?;
            let accepted = match self.broadcast(&raw).await {
                Ok(()) => true,
                Err(
                    refusal @ (BroadcastError::AlreadyKnown
                    | BroadcastError::NonceTooLow
                    | BroadcastError::ReplacementUnderpriced),
                ) => {
                    // A retried broadcast whose first attempt got through (and was perhaps mined at once) is refused
                    // like this too: the nonce is ours if the node has this very transaction. Re-signing it under
                    // another nonce would send it twice.
                    let p = &self.inner.provider;
                    match retry(self.retry_config(), || p.get_transaction_by_hash(hash)).await {
                        Ok(known) => known.is_some(),
                        Err(_) if matches!(refusal, BroadcastError::AlreadyKnown) => true,
                        Err(e) => {
                            *next = None;
                            return Err(self.backend(&e));
                        }
                    }
                }
                Err(BroadcastError::Rejected(reason)) => {
                    // Refused for another reason: the nonce stays free.
                    *next = Some(nonce);
                    return Err(L1Error::Rejected(reason));
                }
                Err(BroadcastError::Unknown(e)) => {
                    // The node may have it: read the nonce from the node next time.
                    *next = None;
                    return Err(self.backend(&e));
                }
            };
            if accepted {
                *next = Some(nonce + 1);
                return Ok(InFlight {
                    tx,
                    raw,
                    hashes: vec![hash],
                    foreign_nonce_seen: false,
                });
            }
            last = format!("nonce {nonce} is taken");
            *next = None;
        }
        Err(L1Error::Rejected(format!(
            "no free nonce after {RESYNCS} resyncs ({last})"
        )))
    }

    /// Step 4: replaces the newest version with higher fees (or re-broadcasts it when no bump is left). Only a
    /// nonce taken by someone else is an error; a node that cannot be reached just skips this round.
    async fn replace(&self, flight: &mut InFlight, bumps: &mut u32) -> Result<(), L1Error> {
        // Someone else's transaction took the nonce? (Two rounds in a row, so that a node whose receipt index lags
        // its state is not mistaken for one.)
        let Ok(mined) = self.nonce_at(BlockId::latest()).await else {
            return Ok(());
        };
        if mined > flight.tx.nonce() && self.find_receipt(&flight.hashes).await.is_none() {
            if flight.foreign_nonce_seen {
                self.resync_nonce().await;
                return Err(L1Error::Rejected(format!(
                    "nonce {} was used by a transaction this client did not send",
                    flight.tx.nonce()
                )));
            }
            flight.foreign_nonce_seen = true;
            return Ok(());
        }
        flight.foreign_nonce_seen = false;
        let cfg = &self.inner.config;
        if *bumps >= cfg.max_bumps {
            let _ = self.broadcast(&flight.raw).await;
            return Ok(());
        }
        let Ok((est_max, est_priority)) = self.fees().await else {
            let _ = self.broadcast(&flight.raw).await;
            return Ok(());
        };
        // Blob pools replace only at twice the fees (blob fee included).
        let min_permille = if flight.tx.is_blob() { 1000 } else { 125 };
        let permille = cfg.fee_bump_permille.max(min_permille) as u128;
        let bump = |old: u128| {
            old.saturating_add((old.saturating_mul(permille)).div_ceil(1000))
                .max(old.saturating_add(1))
        };
        let (old_max, old_priority) = flight.tx.fees();
        let mut max_fee = bump(old_max).max(est_max);
        let priority = bump(old_priority).max(est_priority);
        if let Some(cap) = cfg.max_fee_per_gas {
            max_fee = max_fee.min(cap);
        }
        if max_fee <= old_max || priority > max_fee {
            // At the cap: nothing higher to offer; keep the current version alive.
            let _ = self.broadcast(&flight.raw).await;
            return Ok(());
        }
        let mut tx = flight.tx.clone();
        tx.set_fees(max_fee, priority);
        if let Unsigned::Eip4844(t) = &mut tx {
            let current = self.blob_fee().await.unwrap_or(0);
            t.tx.max_fee_per_blob_gas = bump(t.tx.max_fee_per_blob_gas).max(current);
        }
        let (raw, hash) = self.sign(&mut tx)?;
        *bumps += 1;
        match self.broadcast(&raw).await {
            Ok(()) | Err(BroadcastError::AlreadyKnown) => {
                flight.tx = tx;
                flight.raw = raw;
                flight.hashes.push(hash);
            }
            Err(BroadcastError::ReplacementUnderpriced) => {
                // The node wants more: the next round bumps from these fees.
                flight.tx = tx;
            }
            // Mined meanwhile (the receipt shows up next poll), refused, or unreachable: keep waiting.
            Err(_) => {}
        }
        Ok(())
    }

    /// The receipt of whichever version was mined.
    async fn find_receipt(&self, hashes: &[B256]) -> Option<TransactionReceipt> {
        for hash in hashes.iter().rev() {
            if let Ok(Some(r)) = self.fetch_receipt(*hash).await
                && r.block_number.is_some()
            {
                return Some(r);
            }
        }
        None
    }

    /// Steps 4 and 5.
    async fn wait_confirmed(&self, flight: &mut InFlight) -> Result<TransactionReceipt, L1Error> {
        let cfg = &self.inner.config;
        let confirmations = cfg.confirmations.max(1);
        let started = Instant::now();
        let mut last_broadcast = Instant::now();
        let mut bumps = 0;
        loop {
            if let Some(receipt) = self.find_receipt(&flight.hashes).await {
                let mined_in = receipt.block_number.unwrap_or_default();
                if let Ok(latest) = self.block_number().await
                    && latest.saturating_add(1).saturating_sub(mined_in) >= confirmations
                {
                    return Ok(receipt);
                }
                last_broadcast = Instant::now();
            } else if last_broadcast.elapsed() >= cfg.bump_after {
                self.replace(flight, &mut bumps).await?;
                last_broadcast = Instant::now();
            }
            if started.elapsed() >= cfg.mine_timeout {
                self.resync_nonce().await;
                return Err(L1Error::Backend(format!(
                    "transaction {} (nonce {}) not mined with {confirmations} confirmation(s) within {:?}",
                    flight.hashes.last().copied().unwrap_or_default(),
                    flight.tx.nonce(),
                    cfg.mine_timeout
                )));
            }
            tokio::time::sleep(cfg.poll_interval).await;
        }
    }

    /// Step 6: why a mined transaction failed: [`L1Error::Reverted`] with its revert data, or [`L1Error::Halted`].
    async fn mined_failure(
        &self,
        receipt: &TransactionReceipt,
        req: TransactionRequest,
    ) -> L1Error {
        let gas_used = receipt.gas_used;
        let trace: Result<serde_json::Value, _> = self
            .request(
                "debug_traceTransaction",
                (
                    receipt.transaction_hash,
                    serde_json::json!({"tracer": "callTracer", "tracerConfig": {"onlyTopCall": true}}),
                ),
                "debug_traceTransaction",
            )
            .await;
        if let Ok(trace) = trace {
            let error = trace.get("error").and_then(|e| e.as_str()).unwrap_or("");
            if !error.is_empty() && !error.to_lowercase().contains("revert") {
                return L1Error::Halted {
                    reason: error.to_string(),
                    gas_used,
                };
            }
            let data = trace
                .get("output")
                .and_then(|o| o.as_str())
                .and_then(|o| o.parse::<Bytes>().ok())
                .unwrap_or_default();
            return L1Error::Reverted { data, gas_used };
        }
        // No tracer: replay at the parent block (exact when nothing before it in its block changed the outcome).
        let replay = match receipt.block_number.and_then(|n| n.checked_sub(1)) {
            Some(parent) => {
                self.inner
                    .provider
                    .call(req)
                    .block(BlockId::Number(BlockNumberOrTag::Number(parent)))
                    .await
            }
            None => Ok(Bytes::new()),
        };
        match replay.map_err(|e| errors::execution(&e, &self.inner.redact)) {
            Err(L1Error::Reverted { data, .. }) => L1Error::Reverted { data, gas_used },
            Err(L1Error::Halted { reason, .. }) => L1Error::Halted { reason, gas_used },
            _ => L1Error::Reverted {
                data: Bytes::new(),
                gas_used,
            },
        }
    }

    async fn send_tx(&self, tx: TxRequest) -> Result<Receipt, L1Error> {
        let gas_limit = self.preflight(&tx).await?;
        let (max_fee, priority) = self.fees().await?;
        let unsigned = match &tx.blobs {
            None => Unsigned::Eip1559(TxEip1559 {
                chain_id: self.inner.chain_id,
                nonce: 0,
                gas_limit,
                max_fee_per_gas: max_fee,
                max_priority_fee_per_gas: priority,
                to: tx.to.map_or(TxKind::Create, TxKind::Call),
                value: tx.value,
                access_list: Default::default(),
                input: tx.input.clone(),
            }),
            Some(sidecar) => {
                let to = tx.to.ok_or_else(|| {
                    L1Error::Rejected("a blob transaction cannot create a contract".into())
                })?;
                let blob = TxEip4844 {
                    chain_id: self.inner.chain_id,
                    nonce: 0,
                    gas_limit,
                    max_fee_per_gas: max_fee,
                    max_priority_fee_per_gas: priority,
                    to,
                    value: tx.value,
                    access_list: Default::default(),
                    blob_versioned_hashes: sidecar.versioned_hashes().collect(),
                    max_fee_per_blob_gas: self.blob_fee().await?,
                    input: tx.input.clone(),
                };
                let sidecar = self.network_sidecar(sidecar.clone())?;
                Unsigned::Eip4844(Box::new(TxEip4844WithSidecar::from_tx_and_sidecar(
                    blob, sidecar,
                )))
            }
        };
        let mut flight = self.broadcast_new(unsigned).await?;
        let receipt = self.wait_confirmed(&mut flight).await?;
        if !receipt.status() {
            let mut req = self.request_for(&tx);
            req.gas = Some(gas_limit);
            return Err(self.mined_failure(&receipt, req).await);
        }
        self.convert_receipt(&receipt).await
    }

    async fn block_timestamp(
        &self,
        hash: B256,
        cache: &mut HashMap<B256, u64>,
    ) -> Result<u64, L1Error> {
        if let Some(ts) = cache.get(&hash) {
            return Ok(*ts);
        }
        let block = self
            .fetch_block(BlockId::Hash(hash.into()))
            .await?
            .ok_or_else(|| L1Error::Backend(format!("block {hash} is not known (reorg?)")))?;
        cache.insert(hash, block.header.timestamp);
        Ok(block.header.timestamp)
    }

    async fn convert_log(
        &self,
        log: RpcLog,
        cache: &mut HashMap<B256, u64>,
    ) -> Result<L1Log, L1Error> {
        let missing = |what| L1Error::Backend(format!("node returned a mined log without {what}"));
        let block_hash = log.block_hash.ok_or_else(|| missing("a block hash"))?;
        let block_timestamp = match log.block_timestamp {
            Some(ts) => ts,
            None => self.block_timestamp(block_hash, cache).await?,
        };
        Ok(L1Log {
            block_number: log.block_number.ok_or_else(|| missing("a block number"))?,
            block_hash,
            block_timestamp,
            tx_hash: log
                .transaction_hash
                .ok_or_else(|| missing("a transaction hash"))?,
            log_index: log.log_index.ok_or_else(|| missing("a log index"))?,
            inner: log.inner,
        })
    }

    async fn convert_receipt(&self, r: &TransactionReceipt) -> Result<Receipt, L1Error> {
        let missing =
            |what| L1Error::Backend(format!("node returned a mined receipt without {what}"));
        let block_hash = r.block_hash.ok_or_else(|| missing("a block hash"))?;
        let mut cache = HashMap::new();
        let block_timestamp = self.block_timestamp(block_hash, &mut cache).await?;
        let mut logs = Vec::new();
        for log in r.inner.logs() {
            logs.push(self.convert_log(log.clone(), &mut cache).await?);
        }
        Ok(Receipt {
            tx_hash: r.transaction_hash,
            block_number: r.block_number.ok_or_else(|| missing("a block number"))?,
            block_hash,
            block_timestamp,
            gas_used: r.gas_used,
            contract_address: r.contract_address,
            logs,
        })
    }

    async fn dev_mine(&self) -> Result<BlockInfo, L1Error> {
        let _: serde_json::Value = self
            .request(
                "evm_mine",
                (),
                "mining on demand needs a development node (anvil): evm_mine",
            )
            .await?;
        self.latest_block().await
    }
}

impl RpcL1 {
    /// The blobs of `hash` from a beacon node: `GET {url}/eth/v1/beacon/blobs/{block}?versioned_hashes=…` (the
    /// block id is the transaction's execution block number, as anvil's emulation takes it; a consensus client
    /// wants the slot, which this client does not derive yet).
    async fn beacon_blobs(&self, url: &str, hash: B256) -> Result<Option<Vec<Blob>>, L1Error> {
        let Some(tx) = self.transaction(hash).await? else {
            return Ok(None);
        };
        if tx.blob_versioned_hashes.is_empty() {
            return Ok(None);
        }
        let query: Vec<String> = tx
            .blob_versioned_hashes
            .iter()
            .map(|h| format!("versioned_hashes={h}"))
            .collect();
        let endpoint = format!(
            "{}/eth/v1/beacon/blobs/{}?{}",
            url.trim_end_matches('/'),
            tx.block_number,
            query.join("&")
        );
        let fail = |e: String| L1Error::Backend(format!("beacon API: {e}"));
        let response = alloy::transports::http::reqwest::get(&endpoint)
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        if response.status().as_u16() == 404 {
            return Ok(None);
        }
        let body: serde_json::Value = response
            .error_for_status()
            .map_err(|e| fail(e.without_url().to_string()))?
            .json()
            .await
            .map_err(|e| fail(e.without_url().to_string()))?;
        let data = body
            .get("data")
            .and_then(|d| d.as_array())
            .ok_or_else(|| fail("no data array in the answer".into()))?;
        let mut raw = Vec::with_capacity(data.len());
        for item in data {
            let hex = item
                .as_str()
                .or_else(|| item.get("blob").and_then(|b| b.as_str()))
                .ok_or_else(|| fail("a blob is not a hex string".into()))?;
            raw.push(
                hex.parse::<Bytes>()
                    .map_err(|e| fail(format!("bad blob: {e}")))?,
            );
        }
        Ok(Some(to_blobs(raw.iter().map(|b| b.as_ref()))?))
    }
}

/// Blobs from their raw bytes, filled in place on the heap (no 128 KiB value on the stack per blob).
fn to_blobs<'a>(raw: impl ExactSizeIterator<Item = &'a [u8]>) -> Result<Vec<Blob>, L1Error> {
    let mut blobs = vec![Blob::ZERO; raw.len()];
    for (blob, bytes) in blobs.iter_mut().zip(raw) {
        if bytes.len() != blob.len() {
            return Err(L1Error::Backend(format!(
                "a blob of {} bytes (blobs have {})",
                bytes.len(),
                blob.len()
            )));
        }
        blob.copy_from_slice(bytes);
    }
    Ok(blobs)
}

fn block_info(block: &Block) -> BlockInfo {
    BlockInfo {
        number: block.header.number,
        timestamp: block.header.timestamp,
        hash: block.header.hash,
    }
}

fn rpc_filter(filter: &LogFilter, from: u64, to: u64) -> Filter {
    let mut f = Filter::new().from_block(from).to_block(to);
    if !filter.addresses.is_empty() {
        f = f.address(filter.addresses.clone());
    }
    let [t0, t1, t2, t3] = &filter.topics;
    if !t0.is_empty() {
        f = f.event_signature(t0.clone());
    }
    if !t1.is_empty() {
        f = f.topic1(t1.clone());
    }
    if !t2.is_empty() {
        f = f.topic2(t2.clone());
    }
    if !t3.is_empty() {
        f = f.topic3(t3.clone());
    }
    f
}

/// Runs `op` until it succeeds, fails with a non-transient error, or the retries are spent.
async fn retry<T, F, Fut>(config: &RetryConfig, mut op: F) -> TransportResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = TransportResult<T>>,
{
    let mut delay = config.initial_backoff;
    let mut attempt = 0;
    loop {
        match op().await {
            Err(e) if attempt < config.max_retries && errors::is_transient(&e) => {
                let wait = errors::retry_after(&e)
                    .unwrap_or(delay)
                    .min(config.max_backoff);
                tokio::time::sleep(wait).await;
                delay = delay.saturating_mul(2).min(config.max_backoff);
                attempt += 1;
            }
            result => return result,
        }
    }
}

impl L1 for RpcL1 {
    fn sender(&self) -> Address {
        self.inner.signer.address()
    }

    async fn chain_id(&self) -> Result<u64, L1Error> {
        Ok(self.inner.chain_id)
    }

    async fn latest_block(&self) -> Result<BlockInfo, L1Error> {
        self.fetch_block(BlockId::latest())
            .await?
            .map(|b| block_info(&b))
            .ok_or_else(|| L1Error::Backend("node has no latest block".into()))
    }

    async fn block(&self, number: u64) -> Result<Option<BlockInfo>, L1Error> {
        Ok(self
            .fetch_block(BlockId::Number(BlockNumberOrTag::Number(number)))
            .await?
            .map(|b| block_info(&b)))
    }

    async fn balance(&self, who: Address) -> Result<U256, L1Error> {
        let p = &self.inner.provider;
        retry(self.retry_config(), || async move {
            p.get_balance(who).latest().await
        })
        .await
        .map_err(|e| self.backend(&e))
    }

    async fn send(&self, tx: TxRequest) -> Result<Receipt, L1Error> {
        self.send_tx(tx).await
    }

    async fn call(&self, tx: TxRequest) -> Result<Bytes, L1Error> {
        let req = self.request_for(&tx);
        let p = &self.inner.provider;
        retry(self.retry_config(), || {
            let req = req.clone();
            async move { p.call(req).block(BlockId::latest()).await }
        })
        .await
        .map_err(|e| errors::execution(&e, &self.inner.redact))
    }

    async fn logs(&self, filter: &LogFilter) -> Result<Vec<L1Log>, L1Error> {
        let to = match filter.to_block {
            Some(to) => to,
            None => self.block_number().await?,
        };
        let mut out = Vec::new();
        let mut cache = HashMap::new();
        let span = self.inner.config.max_log_range.max(1);
        let mut from = filter.from_block;
        while from <= to {
            let end = to.min(from.saturating_add(span - 1));
            let f = rpc_filter(filter, from, end);
            let p = &self.inner.provider;
            let logs = retry(self.retry_config(), || p.get_logs(&f))
                .await
                .map_err(|e| self.backend(&e))?;
            for log in logs.into_iter().filter(|l| !l.removed) {
                out.push(self.convert_log(log, &mut cache).await?);
            }
            match end.checked_add(1) {
                Some(next) => from = next,
                None => break,
            }
        }
        Ok(out)
    }

    async fn transaction(&self, hash: B256) -> Result<Option<TxInfo>, L1Error> {
        let p = &self.inner.provider;
        let Some(tx) = retry(self.retry_config(), || p.get_transaction_by_hash(hash))
            .await
            .map_err(|e| self.backend(&e))?
        else {
            return Ok(None);
        };
        let Some(block_number) = tx.block_number else {
            return Ok(None);
        };
        Ok(Some(TxInfo {
            hash,
            from: tx.from(),
            to: tx.to(),
            value: tx.value(),
            input: tx.input().clone(),
            blob_versioned_hashes: tx
                .blob_versioned_hashes()
                .map(<[B256]>::to_vec)
                .unwrap_or_default(),
            block_number,
        }))
    }

    async fn blobs(&self, hash: B256) -> Result<Option<Vec<Blob>>, L1Error> {
        match &self.inner.config.beacon_url {
            Some(url) => self.beacon_blobs(url, hash).await,
            None => {
                // As heap bytes: a 128 KiB `Blob` deserialized by value passes through several stack frames.
                let blobs: Option<Vec<Bytes>> = self
                    .request(
                        "anvil_getBlobsByTransactionHash",
                        (hash,),
                        "reading blobs needs a beacon API URL or anvil (anvil_getBlobsByTransactionHash)",
                    )
                    .await?;
                match blobs.filter(|b| !b.is_empty()) {
                    Some(raw) => Ok(Some(to_blobs(raw.iter().map(|b| b.as_ref()))?)),
                    None => Ok(None),
                }
            }
        }
    }

    async fn advance_time(&self, seconds: u64) -> Result<BlockInfo, L1Error> {
        const WHAT: &str = "advance_time needs a development node (anvil): evm_increaseTime";
        let _: serde_json::Value = self.request("evm_increaseTime", (seconds,), WHAT).await?;
        // Nothing was mined by the call above: this is still the block the new time counts from.
        let before = self.latest_block().await?;
        let mined = self.dev_mine().await?;
        let target = before.timestamp.saturating_add(seconds);
        if mined.timestamp >= target {
            return Ok(mined);
        }
        // Blocks had run ahead of the node's clock; pin the next one.
        let _: serde_json::Value = self
            .request("evm_setNextBlockTimestamp", (target,), WHAT)
            .await?;
        self.dev_mine().await
    }

    async fn mine(&self) -> Result<BlockInfo, L1Error> {
        self.dev_mine().await
    }
}
