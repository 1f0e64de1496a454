//! [`OneStep`]: bindings and a typed client of the `OneStepVerifier` contract, the on-chain twin of `vir::ops`.
//!
//! `OneStepVerifier` (`contracts/OneStepVerifier.sol`, helpers in `contracts/vir/`) computes every VIR op of
//! `docs/vir.md` §4 bit for bit like the Rust reference: one output element per call (a range of outputs for the
//! QVec ops, whose group shift needs the whole input anyway), from inputs passed explicitly. Reading those inputs
//! by chunk proofs under trace leaves and the model root is the dispute game's job; the contract offers the
//! commitment helpers for it (`verifyTensorChunk`, `verifyTensorChunkWithLen`, `traceLeaf`, `verifyTraceLeaf`,
//! `descriptorHash`, `samplingKey`).
//!
//! **Encoding.** Tensor inputs are `bytes` in the canonical little-endian form of `docs/vir.md` §5.4 (the bytes the
//! tensor chunks commit to): [`i32_bytes`], [`i64_bytes`], [`i16_bytes`], and [`qvec_bytes`] (`le4(exp) ‖ le2(values)`
//! for one group). Weight rows and blocks are the raw GGUF block bytes. Table entries (EXP, SIGMOID) are passed in by
//! the caller at the index the contract's `*Index` helpers give.
//!
//! All op functions are `pure`: [`OneStep::call`] runs them as `eth_call`s; [`OneStep::gas`] sends one as a
//! transaction to measure its gas.

use crate::error::ContractError;
use crate::l1::{L1, Receipt, TxRequest};
use alloy::primitives::{Address, Bytes};
use alloy::sol_types::SolCall;

// `descriptorHash` has seven arguments: the generated rpc builder takes eight with the instance.
#[allow(missing_docs, clippy::too_many_arguments)]
mod contract {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        OneStepVerifier,
        "artifacts/OneStepVerifier.json"
    );
}

pub use contract::OneStepVerifier;
use contract::OneStepVerifier::OneStepVerifierErrors;

/// Errors of [`OneStep`] calls (reverts decode to `OneStepVerifier::OneStepVerifierErrors`).
pub type OneStepError = ContractError<OneStepVerifierErrors>;

/// Storage kind byte of a Q4_1 matrix (`matrix_leaf`, `docs/vir.md` §7), the contract's `kind` argument.
pub const KIND_Q4_1: u8 = 1;
/// Storage kind byte of a Q8_0 matrix.
pub const KIND_Q8_0: u8 = 2;

/// Typed client of one deployed `OneStepVerifier`.
#[derive(Debug, Clone)]
pub struct OneStep<L> {
    l1: L,
    address: Address,
}

impl<L: L1> OneStep<L> {
    /// Deploys a new verifier from `l1`'s sender.
    pub async fn deploy(l1: L) -> Result<Self, OneStepError> {
        let address = crate::error::deploy_contract(&l1, OneStepVerifier::BYTECODE.clone()).await?;
        Ok(Self { l1, address })
    }

    /// A client of the verifier at `address`.
    pub fn at(l1: L, address: Address) -> Self {
        Self { l1, address }
    }

    /// The contract address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The chain handle.
    pub fn l1(&self) -> &L {
        &self.l1
    }

    /// Runs `call` without a transaction (`eth_call`) and decodes its return values.
    pub async fn call<C: SolCall>(&self, call: C) -> Result<C::Return, OneStepError> {
        crate::error::view_call(&self.l1, self.address, call).await
    }

    /// Sends `call` as a transaction (the functions are pure: nothing changes) and returns its receipt, whose
    /// `gas_used` includes the intrinsic gas ([`intrinsic_gas`] of the calldata).
    pub async fn gas<C: SolCall>(&self, call: C) -> Result<Receipt, OneStepError> {
        self.l1
            .send(TxRequest::call(self.address, call.abi_encode()))
            .await
            .map_err(ContractError::from_l1)
    }
}

/// Intrinsic gas of a call transaction with `calldata` (Cancun): 21,000 plus 16 per non-zero and 4 per zero byte.
pub fn intrinsic_gas(calldata: &[u8]) -> u64 {
    21_000
        + calldata
            .iter()
            .map(|&b| if b == 0 { 4 } else { 16 })
            .sum::<u64>()
}

/// Canonical bytes of an i32 tensor: `le4(x_0) ‖ le4(x_1) ‖ …`.
pub fn i32_bytes(values: &[i32]) -> Bytes {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Canonical bytes of an i64 tensor: `le8(x_0) ‖ …`.
pub fn i64_bytes(values: &[i64]) -> Bytes {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Little-endian int16 values (the value part of a QVec): `le2(v_0) ‖ …`.
pub fn i16_bytes(values: &[i16]) -> Bytes {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Canonical bytes of a QVec: every exponent, then every value (`docs/vir.md` §5.4).
pub fn qvec_bytes(exps: &[i32], values: &[i16]) -> Bytes {
    exps.iter()
        .flat_map(|e| e.to_le_bytes())
        .chain(values.iter().flat_map(|v| v.to_le_bytes()))
        .collect()
}
