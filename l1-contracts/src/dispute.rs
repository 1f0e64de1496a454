//! [`Game`]: bindings and a typed client of the `DisputeGame` contract (`contracts/DisputeGame.sol`), the
//! interactive fraud-proof game on one leaf of a posted, not yet final batch.
//!
//! A bonded challenger opens a dispute (`open`), the leaf's executor reveals the two children of the current node of
//! its trace tree (`reveal`), the challenger picks the child holding the first op they disagree with (`choose`),
//! until one trace leaf `i` is left; the challenger states their own leaf hash for `i` and the disputed output
//! element (`claimLeaf`); then either side re-executes that element on chain (`proveOneStep`, every VIR op: the
//! `OneStepProver` contract reads the op's inputs by Merkle proofs, see [`crate::prover`]). Each side has a chess clock;
//! `timeout` lets the waiting side win. The loser pays: an executor is slashed (whole bond, half to the challenger)
//! and its leaf invalidated; a challenger's bond goes to the executor. Payouts are credits paid by `claim`.
//!
//! [`reveal_children`] gives the executor's answer for a bisection step from its trace leaves.

use crate::error::ContractError;
use crate::l1::{L1, Receipt};
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::sol_types::{SolCall, SolEvent, SolValue};
use protocol::{InferenceLeaf, MerkleTree};

#[allow(missing_docs, clippy::too_many_arguments)]
mod contract {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        DisputeGame,
        "artifacts/DisputeGame.json"
    );
}

#[allow(missing_docs, clippy::too_many_arguments)]
mod prover_contract {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        OneStepProver,
        "artifacts/OneStepProver.json"
    );
}

pub use contract::DisputeGame;
use contract::DisputeGame::DisputeGameErrors;
pub use prover_contract::OneStepProver;

/// Errors of [`Game`] calls (reverts decode to `DisputeGame::DisputeGameErrors`).
pub type GameError = ContractError<DisputeGameErrors>;

/// Constructor parameters of `DisputeGame`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GameConfig {
    /// The rollup whose dispute hooks the game calls.
    pub rollup: Address,
    /// The `OneStepProver` used at the bottom of the game.
    pub prover: Address,
    /// Minimum challenger bond in wei.
    pub min_challenger_bond: U256,
    /// Initial clock per side, seconds.
    pub clock: u64,
    /// Seconds added to a side's clock per move.
    pub extension: u64,
}

impl GameConfig {
    /// Default clocks: 30 minutes per side plus 5 minutes per move.
    pub fn new(rollup: Address, prover: Address, min_challenger_bond: U256) -> Self {
        Self {
            rollup,
            prover,
            min_challenger_bond,
            clock: 30 * 60,
            extension: 5 * 60,
        }
    }

    /// Init code: bytecode followed by the ABI-encoded constructor arguments.
    pub fn init_code(&self) -> Bytes {
        let mut code = DisputeGame::BYTECODE.to_vec();
        code.extend_from_slice(
            &(
                self.rollup,
                self.prover,
                self.min_challenger_bond,
                self.clock,
                self.extension,
            )
                .abi_encode_params(),
        );
        code.into()
    }
}

/// Typed client of one deployed `DisputeGame`.
#[derive(Debug, Clone)]
pub struct Game<L> {
    l1: L,
    address: Address,
}

impl<L: L1> Game<L> {
    /// Deploys a new game from `l1`'s sender (the rollup owner must then call `setDisputeGame` with its address).
    pub async fn deploy(l1: L, config: &GameConfig) -> Result<Self, GameError> {
        let address = crate::error::deploy_contract(&l1, config.init_code()).await?;
        Ok(Self { l1, address })
    }

    /// A client of the game at `address`.
    pub fn at(l1: L, address: Address) -> Self {
        Self { l1, address }
    }

    /// The contract address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The same contract through another handle (another sender).
    pub fn with_l1<M: L1>(&self, l1: M) -> Game<M> {
        Game {
            l1,
            address: self.address,
        }
    }

    /// Sends `call` with `value` wei.
    pub async fn send<C: SolCall>(&self, call: C, value: U256) -> Result<Receipt, GameError> {
        crate::error::send_call(&self.l1, self.address, call, value).await
    }

    /// Runs `call` as an `eth_call` and decodes its return values.
    pub async fn view<C: SolCall>(&self, call: C) -> Result<C::Return, GameError> {
        crate::error::view_call(&self.l1, self.address, call).await
    }

    /// Opens a dispute on leaf `index` of `batch_id` (batch proof `proof`, the request `req` the leaf commits, see
    /// [`crate::prover::request`]) with `bond` wei; returns the dispute id.
    pub async fn open(
        &self,
        batch_id: u64,
        leaf: &InferenceLeaf,
        index: u64,
        proof: &[B256],
        req: &DisputeGame::Request,
        bond: U256,
    ) -> Result<u64, GameError> {
        let receipt = self
            .send(
                DisputeGame::openCall {
                    batchId: U256::from(batch_id),
                    leaf: (*leaf).into(),
                    index: U256::from(index),
                    proof: proof.to_vec(),
                    req: req.clone(),
                },
                bond,
            )
            .await?;
        // The id is the first indexed topic of this game's `DisputeOpened` log.
        let id = receipt
            .logs
            .iter()
            .filter(|l| l.inner.address == self.address)
            .find_map(|l| match l.inner.data.topics() {
                [sig, id, ..] if *sig == DisputeGame::DisputeOpened::SIGNATURE_HASH => Some(*id),
                _ => None,
            })
            .ok_or(ContractError::MissingEvent {
                tx_hash: receipt.tx_hash,
                event: "DisputeOpened",
            })?;
        u64::try_from(U256::from_be_bytes(id.0)).map_err(|_| ContractError::OutOfRange("disputeId"))
    }

    /// The dispute `id`.
    pub async fn dispute(&self, id: u64) -> Result<DisputeGame::Dispute, GameError> {
        self.view(DisputeGame::getDisputeCall { id: U256::from(id) })
            .await
    }

    /// Executor: reveals the children of the current node (from its trace tree).
    pub async fn reveal(&self, id: u64, left: B256, right: B256) -> Result<Receipt, GameError> {
        self.send(
            DisputeGame::revealCall {
                id: U256::from(id),
                left,
                right,
            },
            U256::ZERO,
        )
        .await
    }

    /// Challenger: descends left or right.
    pub async fn choose(&self, id: u64, right: bool) -> Result<Receipt, GameError> {
        self.send(
            DisputeGame::chooseCall {
                id: U256::from(id),
                right,
            },
            U256::ZERO,
        )
        .await
    }

    /// Challenger, at the leaf: its own leaf hash and the disputed element.
    pub async fn claim_leaf(
        &self,
        id: u64,
        claimed_leaf: B256,
        element: u32,
        req: &DisputeGame::Request,
    ) -> Result<Receipt, GameError> {
        self.send(
            DisputeGame::claimLeafCall {
                id: U256::from(id),
                claimedLeaf: claimed_leaf,
                element,
                req: req.clone(),
            },
            U256::ZERO,
        )
        .await
    }

    /// Either side: the one-step proof (see [`crate::prover::one_step_proof`]).
    pub async fn prove_one_step(
        &self,
        id: u64,
        req: &DisputeGame::Request,
        proof: DisputeGame::OneStepProof,
    ) -> Result<Receipt, GameError> {
        self.send(
            DisputeGame::proveOneStepCall {
                id: U256::from(id),
                req: req.clone(),
                p: proof,
            },
            U256::ZERO,
        )
        .await
    }

    /// Anyone: ends a dispute whose moving side ran out of time.
    pub async fn timeout(&self, id: u64) -> Result<Receipt, GameError> {
        self.send(DisputeGame::timeoutCall { id: U256::from(id) }, U256::ZERO)
            .await
    }

    /// Non-interactive fault: leaf `index` of `batch_id` names an executor with no bond; slashes the sequencer.
    pub async fn prove_unbonded_executor(
        &self,
        batch_id: u64,
        leaf: &InferenceLeaf,
        index: u64,
        proof: &[B256],
    ) -> Result<Receipt, GameError> {
        self.send(
            DisputeGame::proveUnbondedExecutorCall {
                batchId: U256::from(batch_id),
                leaf: (*leaf).into(),
                index: U256::from(index),
                proof: proof.to_vec(),
            },
            U256::ZERO,
        )
        .await
    }

    /// Non-interactive fault: output token `step` of the leaf differs from its trace's PickToken of that step
    /// (`pick` and `output_chunk` from [`crate::prover::output_mismatch_openings`]); slashes the executor.
    #[allow(clippy::too_many_arguments)]
    pub async fn prove_output_mismatch(
        &self,
        batch_id: u64,
        leaf: &InferenceLeaf,
        index: u64,
        proof: &[B256],
        req: &DisputeGame::Request,
        step: u32,
        pick: DisputeGame::TraceOpening,
        output_chunk: DisputeGame::Chunks,
    ) -> Result<Receipt, GameError> {
        self.send(
            DisputeGame::proveOutputMismatchCall {
                batchId: U256::from(batch_id),
                leaf: (*leaf).into(),
                index: U256::from(index),
                proof: proof.to_vec(),
                req: req.clone(),
                step,
                pick,
                outputChunk: output_chunk,
            },
            U256::ZERO,
        )
        .await
    }

    /// Credits of `who` waiting for `claim`.
    pub async fn credits(&self, who: Address) -> Result<U256, GameError> {
        self.view(DisputeGame::creditsCall { who }).await
    }
}

impl From<InferenceLeaf> for DisputeGame::InferenceLeaf {
    fn from(l: InferenceLeaf) -> Self {
        Self {
            version: l.version,
            requestId: l.requestId,
            modelRoot: l.modelRoot,
            promptRoot: l.promptRoot,
            paramsHash: l.paramsHash,
            outputHash: l.outputHash,
            finishReason: l.finishReason,
            traceRoot: l.traceRoot,
            opCount: l.opCount,
            executor: l.executor,
        }
    }
}

/// SIGMOID entries per table part contract of `OneStepProver` (16 KiB of table after a leading STOP byte).
pub const SIGMOID_PART_ENTRIES: usize = 1 << 12;

/// Init code that deploys `0x00 ‖ data` as a contract's code (a STOP byte first, so the data never runs).
fn data_contract_init(data: &[u8]) -> Bytes {
    let size = u16::try_from(data.len() + 1)
        .unwrap_or(u16::MAX)
        .to_be_bytes();
    // PUSH2 size, DUP1, PUSH1 12, PUSH1 0, CODECOPY, PUSH1 0, RETURN; then the code.
    let mut code = vec![
        0x61, size[0], size[1], 0x80, 0x60, 0x0c, 0x60, 0x00, 0x39, 0x60, 0x00, 0xf3, 0x00,
    ];
    code.extend_from_slice(data);
    Bytes::from(code)
}

/// Deploys a `OneStepProver` over the `OneStepVerifier` at `verifier`; returns its address. The VIR SIGMOID table
/// (`vir::tables::sigmoid_table`, 128 KiB) is deployed first as 8 code-only contracts the prover reads SwiGlu's
/// lookups from (its constructor recomputes the table's tensor root, `sigmoidRoot`).
pub async fn deploy_prover<L: L1>(l1: &L, verifier: Address) -> Result<Address, GameError> {
    let table: Vec<u8> = vir::tables::sigmoid_table()
        .into_iter()
        .flat_map(i32::to_le_bytes)
        .collect();
    let mut parts = Vec::new();
    for part in table.chunks(4 * SIGMOID_PART_ENTRIES) {
        parts.push(crate::error::deploy_contract(l1, data_contract_init(part)).await?);
    }
    let mut code = OneStepProver::BYTECODE.to_vec();
    code.extend_from_slice(&(verifier, parts).abi_encode_params());
    crate::error::deploy_contract(l1, Bytes::from(code)).await
}

/// The executor's `reveal` for the node covering leaves `[start, start + 2^height)` of its trace tree: the left and
/// right child hashes (zero-padding included). `None` when `height` is 0 or the node is outside the tree.
pub fn reveal_children(tree: &MerkleTree, start: u64, height: u32) -> Option<(B256, B256)> {
    let h = height.checked_sub(1)?;
    let first = start >> h;
    Some((tree.node(h, first)?, tree.node(h, first + 1)?))
}
