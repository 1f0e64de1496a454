//! Checks of an executor's result at `/executor/v1/complete`, before anything is stored or acknowledged:
//!
//! - the leaf the executor says it signed (when it sends one) equals, field by field, the leaf the sequencer computes
//!   from the stored job (request id, model root, prompt root, params hash) and the reported result (output,
//!   finish reason, trace root, op count, executor);
//! - the signature is canonical and recovers the leaf's executor under the rollup's EIP-712 domain;
//! - that executor is an active bonded executor on L1 (read through [`l1_contracts::Rollup`], cached for a TTL).
//!
//! The seam is [`LeafVerifier`]; [`BondedExecutors`] is the L1 implementation. A sequencer without a verifier (unit
//! tests of the API with no chain) stores results as given; the batcher re-checks everything before posting anyway.

use alloy_sol_types::Eip712Domain;
use async_trait::async_trait;
use l1_contracts::{L1, Role, Rollup};
use protocol::{Address, InferenceLeaf, LeafSignature, leaf_domain};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a result is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No signature was sent.
    #[error("the leaf is not signed: sign the leaf with the executor key and send `signature`")]
    Unsigned,
    /// A field of the leaf the executor signed differs from the job.
    #[error(
        "leaf field `{field}` is {got} but the job's is {expected}: sign the leaf of the leased job (request id, \
         model root, prompt root and params hash come from the lease)"
    )]
    FieldMismatch {
        /// Field name (protocol spelling).
        field: &'static str,
        /// Value sent.
        got: String,
        /// Value of the job.
        expected: String,
    },
    /// The signature is malformed or does not recover the executor.
    #[error("the leaf signature does not recover executor {executor}: {why}")]
    Signature {
        /// The executor named in the request.
        executor: Address,
        /// What went wrong.
        why: String,
    },
    /// The executor has no active bond.
    #[error("executor {0} is not an active bonded executor on L1: register it with a bond first")]
    NotBonded(Address),
    /// The bond could not be read (L1 unreachable); retry later.
    #[error("cannot read the executor bond from L1: {0}")]
    L1(String),
}

/// Verifies executor results (see the module docs).
#[async_trait]
pub trait LeafVerifier: Send + Sync {
    /// The EIP-712 domain leaves are signed under (the rollup's).
    fn domain(&self) -> &Eip712Domain;

    /// Whether `executor` is an active bonded executor (may be cached).
    async fn is_bonded(&self, executor: Address) -> Result<bool, VerifyError>;

    /// Checks `claimed` (when sent) against `leaf`, the signature against `leaf.executor`, then the bond.
    async fn verify(
        &self,
        leaf: &InferenceLeaf,
        claimed: Option<&InferenceLeaf>,
        signature: Option<&LeafSignature>,
    ) -> Result<(), VerifyError> {
        if let Some(claimed) = claimed {
            compare_leaves(claimed, leaf)?;
        }
        let signature = signature.ok_or(VerifyError::Unsigned)?;
        match signature.recover(leaf, self.domain()) {
            Ok(signer) if signer == leaf.executor => {}
            Ok(signer) => {
                return Err(VerifyError::Signature {
                    executor: leaf.executor,
                    why: format!(
                        "it recovers {signer} (the wrong key signed, or it signed a different leaf)"
                    ),
                });
            }
            Err(e) => {
                return Err(VerifyError::Signature {
                    executor: leaf.executor,
                    why: e.to_string(),
                });
            }
        }
        if !self.is_bonded(leaf.executor).await? {
            return Err(VerifyError::NotBonded(leaf.executor));
        }
        Ok(())
    }
}

/// The first field where `claimed` differs from `expected`.
pub fn compare_leaves(
    claimed: &InferenceLeaf,
    expected: &InferenceLeaf,
) -> Result<(), VerifyError> {
    fn check<T: PartialEq + std::fmt::Display>(
        field: &'static str,
        got: &T,
        expected: &T,
    ) -> Result<(), VerifyError> {
        if got == expected {
            Ok(())
        } else {
            Err(VerifyError::FieldMismatch {
                field,
                got: got.to_string(),
                expected: expected.to_string(),
            })
        }
    }
    check("version", &claimed.version, &expected.version)?;
    check("requestId", &claimed.requestId, &expected.requestId)?;
    check("modelRoot", &claimed.modelRoot, &expected.modelRoot)?;
    check("promptRoot", &claimed.promptRoot, &expected.promptRoot)?;
    check("paramsHash", &claimed.paramsHash, &expected.paramsHash)?;
    check("outputHash", &claimed.outputHash, &expected.outputHash)?;
    check(
        "finishReason",
        &claimed.finishReason,
        &expected.finishReason,
    )?;
    check("traceRoot", &claimed.traceRoot, &expected.traceRoot)?;
    check("opCount", &claimed.opCount, &expected.opCount)?;
    check("executor", &claimed.executor, &expected.executor)?;
    Ok(())
}

/// [`LeafVerifier`] over a deployed rollup: domain `(chain id, rollup address)`, bonds from `isActive(Executor, …)`.
/// A positive answer is cached for `ttl`, a negative one for `ttl / 4` (a newly bonded executor is seen soon).
pub struct BondedExecutors<L> {
    rollup: Rollup<L>,
    domain: Eip712Domain,
    ttl: Duration,
    cache: Mutex<HashMap<Address, (bool, Instant)>>,
}

impl<L: L1> std::fmt::Debug for BondedExecutors<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BondedExecutors")
            .field("rollup", &self.rollup.address())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl<L: L1> BondedExecutors<L> {
    /// A verifier for `rollup` on chain `chain_id`.
    pub fn new(rollup: Rollup<L>, chain_id: u64, ttl: Duration) -> Self {
        Self {
            domain: leaf_domain(chain_id, rollup.address()),
            rollup,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Reads the chain id from `rollup`'s chain.
    pub async fn connect(rollup: Rollup<L>, ttl: Duration) -> Result<Self, l1_contracts::L1Error> {
        let chain_id = rollup.l1().chain_id().await?;
        Ok(Self::new(rollup, chain_id, ttl))
    }

    fn cached(&self, executor: Address) -> Option<bool> {
        let cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (active, at) = cache.get(&executor)?;
        let ttl = if *active { self.ttl } else { self.ttl / 4 };
        (at.elapsed() < ttl).then_some(*active)
    }
}

#[async_trait]
impl<L: L1 + 'static> LeafVerifier for BondedExecutors<L> {
    fn domain(&self) -> &Eip712Domain {
        &self.domain
    }

    async fn is_bonded(&self, executor: Address) -> Result<bool, VerifyError> {
        if let Some(active) = self.cached(executor) {
            return Ok(active);
        }
        let active = self
            .rollup
            .is_active(Role::Executor, executor)
            .await
            .map_err(|e| VerifyError::L1(e.to_string()))?;
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(executor, (active, Instant::now()));
        Ok(active)
    }
}
