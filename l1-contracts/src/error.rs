//! [`ContractError`]: errors of the typed contract clients, with reverts decoded to the contract's custom errors.

use crate::l1::{L1, L1Error, Receipt, TxRequest};
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::sol_types::{SolCall, SolInterface};

/// An error of a typed contract client; `E` is the contract's custom-error enum (for example
/// `InferenceRollup::InferenceRollupErrors`).
#[derive(Debug, thiserror::Error)]
pub enum ContractError<E: std::fmt::Debug> {
    /// The contract reverted with one of its custom errors.
    #[error("contract reverted: {0:?}")]
    Revert(E),
    /// Any other chain error (including reverts whose data is not one of `E`).
    #[error(transparent)]
    L1(L1Error),
    /// Return data or a log could not be decoded.
    #[error("cannot decode {what}: {source}")]
    Decode {
        /// What was decoded.
        what: &'static str,
        /// The decoder's error.
        #[source]
        source: alloy::sol_types::Error,
    },
    /// A successful transaction lacks the event that reports its result.
    #[error("transaction {tx_hash} emitted no {event} event")]
    MissingEvent {
        /// The transaction.
        tx_hash: B256,
        /// The expected event.
        event: &'static str,
    },
    /// A contract creation returned no address.
    #[error("contract creation returned no address")]
    NoContractAddress,
    /// A value returned by the contract does not fit the Rust type.
    #[error("{0} returned by the contract is out of range")]
    OutOfRange(&'static str),
    /// No `BatchPosted` event for this batch id.
    #[error("batch {0} was never posted")]
    UnknownBatch(u64),
    /// The transaction that posted a batch is not a direct `postBatch` call to the rollup (its calldata cannot be
    /// read as the batch data).
    #[error("batch {batch_id}: transaction {tx_hash} is not a direct postBatch call")]
    NotPostBatch {
        /// The batch.
        batch_id: u64,
        /// Its posting transaction.
        tx_hash: B256,
    },
    /// The posted data does not hash to the batch's DA commitment.
    #[error("batch {batch_id}: data hashes to {computed}, DA commitment is {expected}")]
    DaMismatch {
        /// The batch.
        batch_id: u64,
        /// The commitment in the `BatchPosted` event.
        expected: B256,
        /// `keccak256` of the calldata, or of the versioned hashes of the blobs.
        computed: B256,
    },
    /// The batch's blobs could not be packed or decoded.
    #[error("blob data: {0}")]
    Blobs(#[from] crate::blobs::BlobError),
    /// The chain no longer serves (or never had) the blobs of a blob batch.
    #[error("batch {batch_id}: the blobs of transaction {tx_hash} are not available")]
    BlobsUnavailable {
        /// The batch.
        batch_id: u64,
        /// Its posting transaction.
        tx_hash: B256,
    },
}

/// Deploys `init_code` from `l1`'s sender and returns the new contract's address (shared by every typed client).
pub async fn deploy_contract<L: L1, E: SolInterface + std::fmt::Debug>(
    l1: &L,
    init_code: impl Into<Bytes>,
) -> Result<Address, ContractError<E>> {
    let receipt = l1
        .send(TxRequest::create(init_code))
        .await
        .map_err(ContractError::from_l1)?;
    receipt
        .contract_address
        .ok_or(ContractError::NoContractAddress)
}

/// Runs `call` on the contract at `address` as an `eth_call` and decodes its return values.
pub async fn view_call<L: L1, C: SolCall, E: SolInterface + std::fmt::Debug>(
    l1: &L,
    address: Address,
    call: C,
) -> Result<C::Return, ContractError<E>> {
    let out = l1
        .call(TxRequest::call(address, call.abi_encode()))
        .await
        .map_err(ContractError::from_l1)?;
    decode_returns::<C, _>(&out)
}

/// Sends `call` with `value` wei to the contract at `address` and waits for the receipt.
pub async fn send_call<L: L1, C: SolCall, E: SolInterface + std::fmt::Debug>(
    l1: &L,
    address: Address,
    call: C,
    value: U256,
) -> Result<Receipt, ContractError<E>> {
    l1.send(TxRequest::call(address, call.abi_encode()).with_value(value))
        .await
        .map_err(ContractError::from_l1)
}

impl<E: SolInterface + std::fmt::Debug> ContractError<E> {
    /// Decodes a revert into `E` where possible.
    pub fn from_l1(error: L1Error) -> Self {
        match error.decode_revert::<E>() {
            Some(e) => Self::Revert(e),
            None => Self::L1(error),
        }
    }

    /// The custom error, for a revert.
    pub fn as_revert(&self) -> Option<&E> {
        match self {
            Self::Revert(e) => Some(e),
            _ => None,
        }
    }

    /// The raw revert data, for a revert that did not decode into `E`.
    pub fn undecoded_revert(&self) -> Option<&Bytes> {
        match self {
            Self::L1(e) => e.revert_data(),
            _ => None,
        }
    }
}

/// Decodes the return data of `C`.
pub(crate) fn decode_returns<C: SolCall, E: std::fmt::Debug>(
    out: &[u8],
) -> Result<C::Return, ContractError<E>> {
    C::abi_decode_returns(out).map_err(|source| ContractError::Decode {
        what: C::SIGNATURE,
        source,
    })
}
