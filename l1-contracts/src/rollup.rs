//! [`Rollup`]: a typed client of the `InferenceRollup` contract over any [`L1`], with the operations of the
//! sequencer (post, finalize), executors (bonds), challengers (batches, batch data, events, leaf status) and the
//! owner (models, dispute game), plus the dispute-game hooks, the bad-signature fault and the signature challenge.
//!
//! Batches are posted with their data as calldata ([`Rollup::post_batch_calldata`]) or in EIP-4844 blobs
//! ([`Rollup::post_batch_blobs`], constant gas); [`Rollup::batch_data`] reads either back and checks it against the
//! DA commitment.

use crate::bindings::InferenceRollup::{self, InferenceRollupErrors, InferenceRollupEvents};
use crate::blobs;
use crate::error::ContractError;
use crate::l1::{L1, L1Log, LogFilter, Receipt, TxRequest};
use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use alloy::sol_types::{SolCall, SolConstructor, SolEvent, SolEventInterface};
use protocol::{BatchData, InferenceLeaf, LeafSignature, MerkleProof};

/// Errors of [`Rollup`] operations (reverts decode to [`InferenceRollupErrors`]).
pub type RollupError = ContractError<InferenceRollupErrors>;

/// A bonded role (`InferenceRollup.Role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Role {
    /// Posts batches.
    Sequencer = 0,
    /// Executes requests and signs leaves.
    Executor = 1,
}

/// Lifecycle of a bond (`InferenceRollup.BondStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BondStatus {
    /// Not registered (or fully withdrawn).
    None,
    /// Registered; active while the amount is at least the minimum.
    Active,
    /// Withdrawal requested: inactive, still slashable, paid out at `unlock_at`.
    Withdrawing,
}

/// Status of one leaf position (`IInferenceRollup.LeafStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeafStatus {
    /// No such batch or index.
    Unknown,
    /// The batch is not final yet.
    Pending,
    /// Final and valid.
    Final,
    /// Proven wrong by a dispute.
    Invalid,
}

/// Constructor parameters of `InferenceRollup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupConfig {
    /// Smallest active sequencer bond, wei.
    pub min_sequencer_bond: U256,
    /// Smallest active executor bond, wei.
    pub min_executor_bond: U256,
    /// Seconds from `requestWithdrawal` to `withdraw`; at least `challenge_window`.
    pub withdrawal_delay: u64,
    /// Seconds from posting to finality.
    pub challenge_window: u64,
    /// Owner (model registration, dispute game).
    pub owner: Address,
}

impl RollupConfig {
    /// Devnet defaults: 1 ETH bonds, a 60 s challenge window and a 120 s withdrawal delay.
    pub fn devnet(owner: Address) -> Self {
        let eth = U256::from(10u64).pow(U256::from(18u64));
        Self {
            min_sequencer_bond: eth,
            min_executor_bond: eth,
            withdrawal_delay: 120,
            challenge_window: 60,
            owner,
        }
    }

    /// Init code: the contract bytecode followed by the ABI-encoded constructor arguments.
    pub fn init_code(&self) -> Bytes {
        let mut code = InferenceRollup::BYTECODE.to_vec();
        code.extend(
            InferenceRollup::constructorCall {
                minSequencerBond_: self.min_sequencer_bond,
                minExecutorBond_: self.min_executor_bond,
                withdrawalDelay_: self.withdrawal_delay,
                challengeWindow_: self.challenge_window,
                owner_: self.owner,
            }
            .abi_encode(),
        );
        code.into()
    }
}

/// A posted batch as stored by the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    /// Batch id (from 1).
    pub batch_id: u64,
    /// Merkle root over the leaf hashes.
    pub batch_root: B256,
    /// `keccak256(daCommitment ‖ sigRoot)` (both halves are in the batch's `BatchPosted` event).
    pub commitment: B256,
    /// Poster.
    pub sequencer: Address,
    /// Block timestamp of the post.
    pub posted_at: u64,
    /// Number of leaves.
    pub leaf_count: u64,
    /// Whether `finalize` succeeded.
    pub finalized: bool,
}

/// What [`Rollup::post_batch`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostedBatch {
    /// The new batch id.
    pub batch_id: u64,
    /// `stateRoot` after the batch.
    pub state_root: B256,
    /// The DA commitment the contract computed: `keccak256(data)` for calldata, [`blobs::da_commitment`] of the
    /// versioned hashes for blobs.
    pub da_commitment: B256,
    /// The signature root the batch was posted with.
    pub sig_root: B256,
    /// The blobs' versioned hashes (empty for calldata).
    pub blob_versioned_hashes: Vec<B256>,
    /// The mined transaction.
    pub receipt: Receipt,
}

/// A bond as stored by the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BondInfo {
    /// Wei bonded.
    pub amount: U256,
    /// When a requested withdrawal unlocks (0 when none was requested).
    pub unlock_at: u64,
    /// Lifecycle state.
    pub status: BondStatus,
}

/// State of a signature challenge (`InferenceRollup.SignatureChallengeStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureChallengeStatus {
    /// No challenge on this leaf.
    None,
    /// Waiting for the sequencer's answer until `deadline`.
    Pending,
    /// Answered with a signature recovering the executor; the challenger's bond went to the sequencer.
    Answered,
    /// Unanswered past the deadline: the leaf is invalid and the sequencer slashed.
    Resolved,
}

/// A signature challenge as stored by the contract ([`Rollup::signature_challenge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureChallengeInfo {
    /// Who challenged (and gets bond and reward back if unanswered).
    pub challenger: Address,
    /// Block timestamp from which the challenge can be resolved and no longer answered.
    pub deadline: u64,
    /// Lifecycle state.
    pub status: SignatureChallengeStatus,
    /// The leaf's executor: an answer must recover to it.
    pub executor: Address,
    /// The challenger's bond, wei.
    pub bond: U256,
    /// The EIP-712 digest of the leaf (what the executor signed).
    pub digest: B256,
}

/// One decoded contract event with its position on the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupEvent {
    /// Where the log is (block, transaction, index) and its raw form.
    pub log: L1Log,
    /// The decoded event.
    pub event: InferenceRollupEvents,
}

/// Typed client of one deployed `InferenceRollup`.
#[derive(Debug, Clone)]
pub struct Rollup<L> {
    l1: L,
    address: Address,
}

impl<L: L1> Rollup<L> {
    /// Deploys a new rollup from `l1`'s sender.
    pub async fn deploy(l1: L, config: &RollupConfig) -> Result<Self, RollupError> {
        let address = crate::error::deploy_contract(&l1, config.init_code()).await?;
        Ok(Self { l1, address })
    }

    /// A client of the rollup at `address`.
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

    /// The same contract through another handle (another sender).
    pub fn with_l1<M: L1>(&self, l1: M) -> Rollup<M> {
        Rollup {
            l1,
            address: self.address,
        }
    }

    async fn view<C: SolCall>(&self, call: C) -> Result<C::Return, RollupError> {
        crate::error::view_call(&self.l1, self.address, call).await
    }

    async fn send<C: SolCall>(&self, call: C, value: U256) -> Result<Receipt, RollupError> {
        crate::error::send_call(&self.l1, self.address, call, value).await
    }

    // ---- bonds -------------------------------------------------------------------------------------------------

    /// Registers the sender as a sequencer with `bond` wei.
    pub async fn register_sequencer(&self, bond: U256) -> Result<Receipt, RollupError> {
        self.send(InferenceRollup::registerSequencerCall {}, bond)
            .await
    }

    /// Registers the sender as an executor with `bond` wei.
    pub async fn register_executor(&self, bond: U256) -> Result<Receipt, RollupError> {
        self.send(InferenceRollup::registerExecutorCall {}, bond)
            .await
    }

    /// Adds `amount` wei to the sender's active bond of `role`.
    pub async fn top_up(&self, role: Role, amount: U256) -> Result<Receipt, RollupError> {
        self.send(InferenceRollup::topUpCall { role: role.into() }, amount)
            .await
    }

    /// Starts the withdrawal delay of the sender's bond of `role`.
    pub async fn request_withdrawal(&self, role: Role) -> Result<Receipt, RollupError> {
        self.send(
            InferenceRollup::requestWithdrawalCall { role: role.into() },
            U256::ZERO,
        )
        .await
    }

    /// Pays out the sender's bond of `role` after the delay.
    pub async fn withdraw(&self, role: Role) -> Result<Receipt, RollupError> {
        self.send(
            InferenceRollup::withdrawCall { role: role.into() },
            U256::ZERO,
        )
        .await
    }

    /// Pays out the sender's slashing rewards.
    pub async fn claim(&self) -> Result<Receipt, RollupError> {
        self.send(InferenceRollup::claimCall {}, U256::ZERO).await
    }

    /// The bond of `who` in `role`.
    pub async fn bond(&self, role: Role, who: Address) -> Result<BondInfo, RollupError> {
        let b = self
            .view(InferenceRollup::bondOfCall {
                role: role.into(),
                who,
            })
            .await?;
        Ok(BondInfo {
            amount: U256::from(b.amount),
            unlock_at: b.unlockAt,
            status: match b.status {
                1 => BondStatus::Active,
                2 => BondStatus::Withdrawing,
                _ => BondStatus::None,
            },
        })
    }

    /// Whether `who` is active in `role` (registered, not withdrawing, bond at least the minimum).
    pub async fn is_active(&self, role: Role, who: Address) -> Result<bool, RollupError> {
        self.view(InferenceRollup::isActiveCall {
            role: role.into(),
            who,
        })
        .await
    }

    /// Unclaimed slashing rewards of `who`.
    pub async fn credits(&self, who: Address) -> Result<U256, RollupError> {
        self.view(InferenceRollup::creditsCall { who }).await
    }

    // ---- owner -------------------------------------------------------------------------------------------------

    /// Registers a model (owner only); `config_proof` proves `config_hash(config)` as the last leaf of `model_root`.
    pub async fn register_model(
        &self,
        model_root: B256,
        config: InferenceRollup::ModelConfig,
        config_proof: Vec<B256>,
    ) -> Result<Receipt, RollupError> {
        self.send(
            InferenceRollup::registerModelCall {
                modelRoot: model_root,
                config,
                configProof: config_proof,
            },
            U256::ZERO,
        )
        .await
    }

    /// The registered model `model_root`, if any.
    pub async fn model(
        &self,
        model_root: B256,
    ) -> Result<Option<InferenceRollup::Model>, RollupError> {
        let m = self
            .view(InferenceRollup::getModelCall {
                modelRoot: model_root,
            })
            .await?;
        Ok((m.configHash != B256::ZERO).then_some(m))
    }

    /// Sets the dispute game (owner only, once).
    pub async fn set_dispute_game(&self, game: Address) -> Result<Receipt, RollupError> {
        self.send(InferenceRollup::setDisputeGameCall { game }, U256::ZERO)
            .await
    }

    /// Hands ownership to `new_owner` (owner only).
    pub async fn transfer_ownership(&self, new_owner: Address) -> Result<Receipt, RollupError> {
        self.send(
            InferenceRollup::transferOwnershipCall {
                newOwner: new_owner,
            },
            U256::ZERO,
        )
        .await
    }

    /// The owner.
    pub async fn owner(&self) -> Result<Address, RollupError> {
        self.view(InferenceRollup::ownerCall {}).await
    }

    /// The dispute game (zero until set).
    pub async fn dispute_game(&self) -> Result<Address, RollupError> {
        self.view(InferenceRollup::disputeGameCall {}).await
    }

    /// The constructor parameters, read back from the contract.
    pub async fn config(&self) -> Result<RollupConfig, RollupError> {
        Ok(RollupConfig {
            min_sequencer_bond: self.view(InferenceRollup::minSequencerBondCall {}).await?,
            min_executor_bond: self.view(InferenceRollup::minExecutorBondCall {}).await?,
            withdrawal_delay: self.view(InferenceRollup::withdrawalDelayCall {}).await?,
            challenge_window: self.view(InferenceRollup::challengeWindowCall {}).await?,
            owner: self.owner().await?,
        })
    }

    // ---- batches -----------------------------------------------------------------------------------------------

    /// Posts a batch with its data as calldata (active sequencer only), with the signature root of the signatures
    /// `data` carries ([`protocol::batch::batch_signature_root`]; zero when `data` is not batch data, as in tests
    /// that post opaque bytes: no signature of such a batch can be opened). See [`Self::post_batch_calldata`].
    pub async fn post_batch(
        &self,
        data: Bytes,
        batch_root: B256,
        leaf_count: u64,
        prev_state_root: B256,
    ) -> Result<PostedBatch, RollupError> {
        let sig_root = signature_root_of(&data);
        self.post_batch_calldata(data, batch_root, leaf_count, sig_root, prev_state_root)
            .await
    }

    /// `postBatch`: the batch data `data` as calldata (its keccak becomes the DA commitment), `sig_root` the Merkle
    /// root over the leaves' signature hashes, `prev_state_root` the current [`Self::state_root`].
    pub async fn post_batch_calldata(
        &self,
        data: Bytes,
        batch_root: B256,
        leaf_count: u64,
        sig_root: B256,
        prev_state_root: B256,
    ) -> Result<PostedBatch, RollupError> {
        let receipt = self
            .send(
                InferenceRollup::postBatchCall {
                    data,
                    batchRoot: batch_root,
                    leafCount: leaf_count,
                    sigRoot: sig_root,
                    prevStateRoot: prev_state_root,
                },
                U256::ZERO,
            )
            .await?;
        self.posted(receipt, Vec::new())
    }

    /// `postBatchBlobs`: the batch data travels in EIP-4844 blobs ([`blobs::encode`]; at most
    /// [`blobs::MAX_DATA_BYTES`]), the contract records the versioned hashes; gas does not depend on the size.
    pub async fn post_batch_blobs(
        &self,
        data: &[u8],
        batch_root: B256,
        leaf_count: u64,
        sig_root: B256,
        prev_state_root: B256,
    ) -> Result<PostedBatch, RollupError> {
        let sidecar = blobs::encode(data).map_err(ContractError::Blobs)?;
        self.post_batch_sidecar(sidecar, batch_root, leaf_count, sig_root, prev_state_root)
            .await
    }

    /// `postBatchBlobs` with a prepared sidecar (any blobs; [`Self::post_batch_blobs`] packs batch data).
    pub async fn post_batch_sidecar(
        &self,
        sidecar: crate::l1::BlobTransactionSidecar,
        batch_root: B256,
        leaf_count: u64,
        sig_root: B256,
        prev_state_root: B256,
    ) -> Result<PostedBatch, RollupError> {
        let hashes: Vec<B256> = sidecar.versioned_hashes().collect();
        let call = InferenceRollup::postBatchBlobsCall {
            batchRoot: batch_root,
            leafCount: leaf_count,
            sigRoot: sig_root,
            prevStateRoot: prev_state_root,
        };
        let receipt = self
            .l1
            .send(TxRequest::call(self.address, call.abi_encode()).with_blobs(sidecar))
            .await
            .map_err(ContractError::from_l1)?;
        self.posted(receipt, hashes)
    }

    fn posted(
        &self,
        receipt: Receipt,
        blob_versioned_hashes: Vec<B256>,
    ) -> Result<PostedBatch, RollupError> {
        let posted = receipt
            .logs
            .iter()
            .filter(|l| l.inner.address == self.address)
            .find_map(|l| InferenceRollup::BatchPosted::decode_log(&l.inner).ok())
            .ok_or(ContractError::MissingEvent {
                tx_hash: receipt.tx_hash,
                event: "BatchPosted",
            })?;
        Ok(PostedBatch {
            batch_id: u64_of(posted.batchId, "batchId")?,
            state_root: posted.stateRoot,
            da_commitment: posted.daCommitment,
            sig_root: posted.sigRoot,
            blob_versioned_hashes,
            receipt,
        })
    }

    /// Finalizes batch `batch_id` (anyone; after the window, with no open dispute).
    pub async fn finalize(&self, batch_id: u64) -> Result<Receipt, RollupError> {
        self.send(
            InferenceRollup::finalizeCall {
                batchId: U256::from(batch_id),
            },
            U256::ZERO,
        )
        .await
    }

    /// Batch `batch_id`, if posted.
    pub async fn batch(&self, batch_id: u64) -> Result<Option<BatchInfo>, RollupError> {
        let b = self
            .view(InferenceRollup::getBatchCall {
                batchId: U256::from(batch_id),
            })
            .await?;
        let leaf_count: u64 = b.leafCount.to();
        if leaf_count == 0 {
            return Ok(None);
        }
        Ok(Some(BatchInfo {
            batch_id,
            batch_root: b.batchRoot,
            commitment: b.commitment,
            sequencer: b.sequencer,
            posted_at: b.postedAt.to(),
            leaf_count,
            finalized: b.finalized,
        }))
    }

    /// When batch `batch_id` can be finalized (`None` for an unknown batch).
    pub async fn finalizes_at(&self, batch_id: u64) -> Result<Option<u64>, RollupError> {
        let t = self
            .view(InferenceRollup::finalizesAtCall {
                batchId: U256::from(batch_id),
            })
            .await?;
        Ok((!t.is_zero()).then(|| t.saturating_to()))
    }

    /// Number of batches (the latest batch id).
    pub async fn batch_count(&self) -> Result<u64, RollupError> {
        self.view(InferenceRollup::batchCountCall {}).await
    }

    /// The latest state root.
    pub async fn state_root(&self) -> Result<B256, RollupError> {
        self.view(InferenceRollup::stateRootCall {}).await
    }

    /// The `BatchPosted` event of batch `batch_id` with its log (DA commitment, signature root, posting
    /// transaction).
    pub async fn batch_posted(
        &self,
        batch_id: u64,
    ) -> Result<(InferenceRollup::BatchPosted, L1Log), RollupError> {
        let filter = LogFilter::new(self.address, 0)
            .event(InferenceRollup::BatchPosted::SIGNATURE_HASH)
            .topic(1, B256::from(U256::from(batch_id)));
        let logs = self
            .l1
            .logs(&filter)
            .await
            .map_err(ContractError::from_l1)?;
        let log = logs
            .into_iter()
            .next()
            .ok_or(ContractError::UnknownBatch(batch_id))?;
        let posted = InferenceRollup::BatchPosted::decode_log(&log.inner)
            .map_err(|source| ContractError::Decode {
                what: "BatchPosted",
                source,
            })?
            .data;
        Ok((posted, log))
    }

    /// The batch data of batch `batch_id`, read back from its posting transaction (the calldata of `postBatch`, or
    /// the blobs of `postBatchBlobs`, whose KZG commitments are recomputed) and checked against the DA commitment
    /// (what a challenger does instead of trusting the sequencer).
    pub async fn batch_data(&self, batch_id: u64) -> Result<Bytes, RollupError> {
        let (posted, log) = self.batch_posted(batch_id).await?;
        let not_post = || ContractError::NotPostBatch {
            batch_id,
            tx_hash: log.tx_hash,
        };
        let tx = self
            .l1
            .transaction(log.tx_hash)
            .await
            .map_err(ContractError::from_l1)?
            .ok_or_else(not_post)?;
        if tx.to != Some(self.address) {
            return Err(not_post());
        }
        let mismatch = |computed| ContractError::DaMismatch {
            batch_id,
            expected: posted.daCommitment,
            computed,
        };
        if let Ok(call) = InferenceRollup::postBatchCall::abi_decode(&tx.input) {
            let computed = keccak256(&call.data);
            if computed != posted.daCommitment {
                return Err(mismatch(computed));
            }
            return Ok(call.data);
        }
        if InferenceRollup::postBatchBlobsCall::abi_decode(&tx.input).is_err() {
            return Err(not_post());
        }
        let computed = blobs::da_commitment(&tx.blob_versioned_hashes);
        if computed != posted.daCommitment {
            return Err(mismatch(computed));
        }
        let served = self
            .l1
            .blobs(log.tx_hash)
            .await
            .map_err(ContractError::from_l1)?
            .ok_or(ContractError::BlobsUnavailable {
                batch_id,
                tx_hash: log.tx_hash,
            })?;
        let recomputed = blobs::versioned_hashes(&served).map_err(ContractError::Blobs)?;
        if recomputed != tx.blob_versioned_hashes {
            return Err(mismatch(blobs::da_commitment(&recomputed)));
        }
        Ok(blobs::decode(&served).map_err(ContractError::Blobs)?.into())
    }

    /// Proves that leaf `leaf_proof.index` of batch `batch_id` was posted with a signature that does not recover the
    /// leaf's executor (`proveBadSignature`, anyone): the leaf becomes invalid and the batch's sequencer loses its
    /// bond, half credited to the sender. `sig` opens the posted signature ([`signature_opening`]).
    pub async fn prove_bad_signature(
        &self,
        batch_id: u64,
        leaf: &InferenceLeaf,
        leaf_proof: &MerkleProof,
        sig: InferenceRollup::SignatureOpening,
    ) -> Result<Receipt, RollupError> {
        self.send(
            InferenceRollup::proveBadSignatureCall {
                batchId: U256::from(batch_id),
                leaf: (*leaf).into(),
                index: U256::from(leaf_proof.index),
                leafProof: leaf_proof.siblings.clone(),
                sig,
            },
            U256::ZERO,
        )
        .await
    }

    // ---- signature challenge ---------------------------------------------------------------------------------

    /// Challenges the sequencer of batch `batch_id` to open the signature posted for leaf `leaf_proof.index`
    /// (`challengeSignature`, anyone), paying the current [`Self::signature_challenge_bond`]. Until answered or
    /// resolved the batch cannot be finalized.
    pub async fn challenge_signature(
        &self,
        batch_id: u64,
        leaf: &InferenceLeaf,
        leaf_proof: &MerkleProof,
    ) -> Result<Receipt, RollupError> {
        let bond = self.signature_challenge_bond().await?;
        self.challenge_signature_with_bond(batch_id, leaf, leaf_proof, bond)
            .await
    }

    /// [`Self::challenge_signature`] with an explicit `bond` as value (the contract wants exactly
    /// `signatureChallengeBond`).
    pub async fn challenge_signature_with_bond(
        &self,
        batch_id: u64,
        leaf: &InferenceLeaf,
        leaf_proof: &MerkleProof,
        bond: U256,
    ) -> Result<Receipt, RollupError> {
        self.send(
            InferenceRollup::challengeSignatureCall {
                batchId: U256::from(batch_id),
                leaf: (*leaf).into(),
                index: U256::from(leaf_proof.index),
                leafProof: leaf_proof.siblings.clone(),
            },
            bond,
        )
        .await
    }

    /// Answers the pending signature challenge on leaf `index` of batch `batch_id` (`answerSignatureChallenge`,
    /// anyone, before the deadline): `sig` opens the posted signature ([`signature_opening`]), which must recover
    /// the leaf's executor. The challenger's bond is credited to the sequencer.
    pub async fn answer_signature_challenge(
        &self,
        batch_id: u64,
        index: u64,
        sig: InferenceRollup::SignatureOpening,
    ) -> Result<Receipt, RollupError> {
        self.send(
            InferenceRollup::answerSignatureChallengeCall {
                batchId: U256::from(batch_id),
                index: U256::from(index),
                sig,
            },
            U256::ZERO,
        )
        .await
    }

    /// Resolves an unanswered signature challenge after its deadline (`resolveSignatureChallenge`, anyone): the
    /// leaf becomes invalid, the sequencer loses its bond (half credited to the challenger, half burned) and the
    /// challenger's bond is credited back.
    pub async fn resolve_signature_challenge(
        &self,
        batch_id: u64,
        index: u64,
    ) -> Result<Receipt, RollupError> {
        self.send(
            InferenceRollup::resolveSignatureChallengeCall {
                batchId: U256::from(batch_id),
                index: U256::from(index),
            },
            U256::ZERO,
        )
        .await
    }

    /// The signature challenge on leaf `index` of batch `batch_id`, if any.
    pub async fn signature_challenge(
        &self,
        batch_id: u64,
        index: u64,
    ) -> Result<Option<SignatureChallengeInfo>, RollupError> {
        let c = self
            .view(InferenceRollup::signatureChallengeCall {
                batchId: U256::from(batch_id),
                index: U256::from(index),
            })
            .await?;
        let status = match c.status {
            1 => SignatureChallengeStatus::Pending,
            2 => SignatureChallengeStatus::Answered,
            3 => SignatureChallengeStatus::Resolved,
            _ => return Ok(None),
        };
        Ok(Some(SignatureChallengeInfo {
            challenger: c.challenger,
            deadline: c.deadline,
            status,
            executor: c.executor,
            bond: U256::from(c.bond),
            digest: c.digest,
        }))
    }

    /// Unresolved signature challenges on batch `batch_id`.
    pub async fn pending_signature_challenges(&self, batch_id: u64) -> Result<u64, RollupError> {
        let n = self
            .view(InferenceRollup::pendingSignatureChallengesCall {
                batchId: U256::from(batch_id),
            })
            .await?;
        u64_of(n, "pendingSignatureChallenges")
    }

    /// The value `challengeSignature` requires, wei.
    pub async fn signature_challenge_bond(&self) -> Result<U256, RollupError> {
        self.view(InferenceRollup::signatureChallengeBondCall {})
            .await
    }

    /// Seconds the sequencer has to answer a signature challenge.
    pub async fn signature_response_window(&self) -> Result<u64, RollupError> {
        self.view(InferenceRollup::signatureResponseWindowCall {})
            .await
    }

    /// Sets the signature challenge's answer window (seconds, non-zero) and bond (owner only).
    pub async fn set_signature_challenge_params(
        &self,
        response_window: u64,
        bond: U256,
    ) -> Result<Receipt, RollupError> {
        self.send(
            InferenceRollup::setSignatureChallengeParamsCall {
                responseWindow: response_window,
                bond,
            },
            U256::ZERO,
        )
        .await
    }

    // ---- leaves ------------------------------------------------------------------------------------------------

    /// Whether `leaf_hash` at `proof.index` of batch `batch_id` is final and valid (the consumer check).
    pub async fn is_finalized(
        &self,
        batch_id: u64,
        leaf_hash: B256,
        proof: &MerkleProof,
    ) -> Result<bool, RollupError> {
        self.view(InferenceRollup::isFinalizedCall {
            batchId: U256::from(batch_id),
            leafHash: leaf_hash,
            index: U256::from(proof.index),
            proof: proof.siblings.clone(),
        })
        .await
    }

    /// Whether `leaf_hash` is leaf `proof.index` of batch `batch_id` (inclusion only).
    pub async fn verify_leaf(
        &self,
        batch_id: u64,
        leaf_hash: B256,
        proof: &MerkleProof,
    ) -> Result<bool, RollupError> {
        self.view(InferenceRollup::verifyLeafCall {
            batchId: U256::from(batch_id),
            leafHash: leaf_hash,
            index: U256::from(proof.index),
            proof: proof.siblings.clone(),
        })
        .await
    }

    /// Status of leaf position `index` of batch `batch_id`.
    pub async fn leaf_status(&self, batch_id: u64, index: u64) -> Result<LeafStatus, RollupError> {
        let s = self
            .view(InferenceRollup::leafStatusCall {
                batchId: U256::from(batch_id),
                index: U256::from(index),
            })
            .await?;
        Ok(match s {
            1 => LeafStatus::Pending,
            2 => LeafStatus::Final,
            3 => LeafStatus::Invalid,
            _ => LeafStatus::Unknown,
        })
    }

    /// The contract's EIP-712 leaf hash (equals [`InferenceLeaf::hash`]).
    pub async fn hash_leaf(&self, leaf: &InferenceLeaf) -> Result<B256, RollupError> {
        self.view(InferenceRollup::hashLeafCall {
            leaf: (*leaf).into(),
        })
        .await
    }

    /// The contract's EIP-712 domain separator.
    pub async fn domain_separator(&self) -> Result<B256, RollupError> {
        self.view(InferenceRollup::domainSeparatorCall {}).await
    }

    /// The contract's EIP-712 signing hash of `leaf` (equals [`InferenceLeaf::signing_hash`] under
    /// `protocol::leaf_domain(chain_id, rollup)`).
    pub async fn leaf_signing_hash(&self, leaf: &InferenceLeaf) -> Result<B256, RollupError> {
        self.view(InferenceRollup::leafSigningHashCall {
            leaf: (*leaf).into(),
        })
        .await
    }

    /// The signer the contract recovers for `leaf` and `signature` (zero for a non-canonical signature).
    pub async fn leaf_signer(
        &self,
        leaf: &InferenceLeaf,
        signature: &LeafSignature,
    ) -> Result<Address, RollupError> {
        self.view(InferenceRollup::leafSignerCall {
            leaf: (*leaf).into(),
            signature: Bytes::copy_from_slice(signature.as_bytes()),
        })
        .await
    }

    // ---- dispute-game hooks (callable by the dispute game only) ------------------------------------------------

    /// Records an open dispute on a leaf of `batch_id` signed by `executor`.
    pub async fn dispute_opened(
        &self,
        batch_id: u64,
        executor: Address,
    ) -> Result<Receipt, RollupError> {
        self.send(
            InferenceRollup::disputeOpenedCall {
                batchId: U256::from(batch_id),
                executor,
            },
            U256::ZERO,
        )
        .await
    }

    /// Records the end of a dispute.
    pub async fn dispute_closed(
        &self,
        batch_id: u64,
        executor: Address,
    ) -> Result<Receipt, RollupError> {
        self.send(
            InferenceRollup::disputeClosedCall {
                batchId: U256::from(batch_id),
                executor,
            },
            U256::ZERO,
        )
        .await
    }

    /// Marks leaf `index` of `batch_id` invalid.
    pub async fn invalidate_leaf(&self, batch_id: u64, index: u64) -> Result<Receipt, RollupError> {
        self.send(
            InferenceRollup::invalidateLeafCall {
                batchId: U256::from(batch_id),
                index: U256::from(index),
            },
            U256::ZERO,
        )
        .await
    }

    /// Slashes up to `amount` of `offender`'s bond of `role`, crediting `reward` to `beneficiary`.
    pub async fn slash(
        &self,
        role: Role,
        offender: Address,
        amount: U256,
        beneficiary: Address,
        reward: U256,
    ) -> Result<Receipt, RollupError> {
        self.send(
            InferenceRollup::slashCall {
                role: role.into(),
                offender,
                amount,
                beneficiary,
                reward,
            },
            U256::ZERO,
        )
        .await
    }

    // ---- events ------------------------------------------------------------------------------------------------

    /// Every rollup event in blocks `from_block..=to_block` (`None`: up to the latest), in chain order.
    pub async fn events(
        &self,
        from_block: u64,
        to_block: Option<u64>,
    ) -> Result<Vec<RollupEvent>, RollupError> {
        let mut filter = LogFilter::new(self.address, from_block);
        filter.to_block = to_block;
        let logs = self
            .l1
            .logs(&filter)
            .await
            .map_err(ContractError::from_l1)?;
        logs.into_iter()
            .map(|log| {
                let event = InferenceRollupEvents::decode_log(&log.inner)
                    .map_err(|source| ContractError::Decode {
                        what: "InferenceRollup event",
                        source,
                    })?
                    .data;
                Ok(RollupEvent { log, event })
            })
            .collect()
    }
}

impl From<Role> for u8 {
    fn from(role: Role) -> Self {
        role as Self
    }
}

impl From<InferenceLeaf> for InferenceRollup::InferenceLeaf {
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

/// `keccak256(be8 of each of the 18 values)`, the model `config_hash` (docs/vir.md §7), as the contract computes it.
pub fn config_hash(c: &InferenceRollup::ModelConfig) -> B256 {
    let values = [
        c.virVersion,
        c.nLayers,
        c.dModel,
        c.dFf,
        c.nHeads,
        c.nKvHeads,
        c.headDim,
        c.vocabSize,
        c.contextLength,
        c.tiedOutput,
        c.epsFx,
        c.scoreScale,
        c.residualFrac,
        c.actFrac,
        c.attnChunk,
        c.vocabChunk,
        c.toppRounds,
        c.tableFrac,
    ];
    let mut buf = [0u8; 144];
    for (chunk, v) in buf.chunks_exact_mut(8).zip(values) {
        chunk.copy_from_slice(&v.to_be_bytes());
    }
    keccak256(buf)
}

/// Number of leaves of a model root with `n_layers` layers (docs/vir.md §7): `9·n_layers + 7`, plus one when the
/// output matrix is not tied to the embedding.
pub fn model_leaf_count(n_layers: u64, tied_output: bool) -> u64 {
    9 * n_layers + if tied_output { 7 } else { 8 }
}

/// The opening of a posted signature for `proveBadSignature`: the batch's `da_commitment` and `sig_root` (its
/// `BatchPosted` event, [`Rollup::batch_posted`]), the 65 `signature` bytes posted for the leaf and their proof under
/// `sig_root` (`protocol::batch::signature_proof` / `batch_signature_proof`).
pub fn signature_opening(
    da_commitment: B256,
    sig_root: B256,
    signature: &[u8],
    proof: &MerkleProof,
) -> InferenceRollup::SignatureOpening {
    InferenceRollup::SignatureOpening {
        daCommitment: da_commitment,
        sigRoot: sig_root,
        signature: Bytes::copy_from_slice(signature),
        proof: proof.siblings.clone(),
    }
}

/// The signature root of `data` if it decodes as batch data (`protocol::codec`), else zero.
fn signature_root_of(data: &[u8]) -> B256 {
    BatchData::decode(data).map_or(B256::ZERO, |d| protocol::batch::batch_signature_root(&d))
}

fn u64_of(v: U256, what: &'static str) -> Result<u64, RollupError> {
    u64::try_from(v).map_err(|_| ContractError::OutOfRange(what))
}
