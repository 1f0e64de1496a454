//! [`Consumer`]: a typed client of `ExampleConsumer`, the contract that acts only on final, valid results.

use crate::bindings::ExampleConsumer::{self, ExampleConsumerErrors};
use crate::error::ContractError;
use crate::l1::{L1, Receipt, TxRequest};
use alloy::primitives::{Address, B256, U256};
use alloy::sol_types::{SolCall, SolConstructor, SolEvent};
use protocol::{InferenceLeaf, MerkleProof};

/// Errors of [`Consumer`] operations (reverts decode to [`ExampleConsumerErrors`]).
pub type ConsumerError = ContractError<ExampleConsumerErrors>;

/// Typed client of one deployed `ExampleConsumer`.
#[derive(Debug, Clone)]
pub struct Consumer<L> {
    l1: L,
    address: Address,
}

impl<L: L1> Consumer<L> {
    /// Deploys a consumer that trusts the rollup at `rollup`.
    pub async fn deploy(l1: L, rollup: Address) -> Result<Self, ConsumerError> {
        let mut code = ExampleConsumer::BYTECODE.to_vec();
        code.extend(ExampleConsumer::constructorCall { rollup_: rollup }.abi_encode());
        let address = crate::error::deploy_contract(&l1, code).await?;
        Ok(Self { l1, address })
    }

    /// A client of the consumer at `address`.
    pub fn at(l1: L, address: Address) -> Self {
        Self { l1, address }
    }

    /// The contract address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The same contract through another handle.
    pub fn with_l1<M: L1>(&self, l1: M) -> Consumer<M> {
        Consumer {
            l1,
            address: self.address,
        }
    }

    async fn view<C: SolCall>(&self, call: C) -> Result<C::Return, ConsumerError> {
        crate::error::view_call(&self.l1, self.address, call).await
    }

    /// Asks for a completion of `prompt_root` by `model_root` with `reward` wei; returns the question id.
    pub async fn ask(
        &self,
        model_root: B256,
        prompt_root: B256,
        reward: U256,
    ) -> Result<u64, ConsumerError> {
        let call = ExampleConsumer::askCall {
            modelRoot: model_root,
            promptRoot: prompt_root,
        };
        let receipt = self
            .l1
            .send(TxRequest::call(self.address, call.abi_encode()).with_value(reward))
            .await
            .map_err(ContractError::from_l1)?;
        let asked = receipt
            .logs
            .iter()
            .find_map(|l| ExampleConsumer::Asked::decode_log(&l.inner).ok())
            .ok_or(ContractError::MissingEvent {
                tx_hash: receipt.tx_hash,
                event: "Asked",
            })?;
        u64::try_from(asked.questionId).map_err(|_| ContractError::OutOfRange("questionId"))
    }

    /// Answers `question_id` with `leaf` at `proof.index` of batch `batch_id` and its output token ids.
    pub async fn answer(
        &self,
        question_id: u64,
        batch_id: u64,
        leaf: &InferenceLeaf,
        proof: &MerkleProof,
        output_tokens: &[u32],
    ) -> Result<Receipt, ConsumerError> {
        let call = ExampleConsumer::answerCall {
            questionId: U256::from(question_id),
            batchId: U256::from(batch_id),
            leaf: (*leaf).into(),
            leafIndex: U256::from(proof.index),
            proof: proof.siblings.clone(),
            outputTokens: output_tokens.to_vec(),
        };
        self.l1
            .send(TxRequest::call(self.address, call.abi_encode()))
            .await
            .map_err(ContractError::from_l1)
    }

    /// Question `question_id` (`asker` zero when unknown).
    pub async fn question(
        &self,
        question_id: u64,
    ) -> Result<ExampleConsumer::Question, ConsumerError> {
        self.view(ExampleConsumer::getQuestionCall {
            questionId: U256::from(question_id),
        })
        .await
    }

    /// The contract's `token_ids_root(ids)` (equals `protocol::token_ids_root`).
    pub async fn token_ids_root(&self, ids: &[u32]) -> Result<B256, ConsumerError> {
        self.view(ExampleConsumer::tokenIdsRootCall { ids: ids.to_vec() })
            .await
    }
}

impl From<InferenceLeaf> for ExampleConsumer::InferenceLeaf {
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
