//! The leaf of a job, as the sequencer computes it from what it stored (request id, model and prompt roots, params)
//! and what the executor reported (output, finish reason, trace root, op count, executor address), and the checks an
//! executor's result must pass before it is accepted.

use crate::model::ServedModel;
use crate::storage::JobRecord;
use protocol::{Address, B256, FinishReason, InferenceLeaf, LEAF_VERSION, token_ids_root};

/// Leaf fields that come from the stored request and job.
#[derive(Debug, Clone, Copy)]
pub struct LeafContext {
    /// Request id.
    pub request_id: B256,
    /// Model root.
    pub model_root: B256,
    /// Prompt root.
    pub prompt_root: B256,
    /// Params hash of the job.
    pub params_hash: B256,
}

/// Builds the leaf.
pub fn build_leaf(
    ctx: &LeafContext,
    output: &[u32],
    finish_reason: FinishReason,
    trace_root: B256,
    op_count: u64,
    executor: Address,
) -> InferenceLeaf {
    InferenceLeaf {
        version: LEAF_VERSION,
        requestId: ctx.request_id,
        modelRoot: ctx.model_root,
        promptRoot: ctx.prompt_root,
        paramsHash: ctx.params_hash,
        outputHash: token_ids_root(output),
        finishReason: u8::from(finish_reason),
        traceRoot: trace_root,
        opCount: op_count,
        executor,
    }
}

/// Why a reported result is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutcomeError {
    /// No tokens.
    #[error("the output is empty: generation produces at least one token")]
    Empty,
    /// A token outside the vocabulary.
    #[error("output token #{index} = {id} is outside the vocabulary of {vocab} tokens")]
    TokenOutOfRange {
        /// Position.
        index: usize,
        /// Id.
        id: u32,
        /// Vocabulary size.
        vocab: usize,
    },
    /// More tokens than `max_tokens`.
    #[error("{len} output tokens exceed max_tokens {max_tokens}")]
    TooLong {
        /// Tokens.
        len: usize,
        /// Limit.
        max_tokens: u32,
    },
    /// A stop token before the end.
    #[error("output token #{index} is a stop token but generation went on")]
    StopBeforeEnd {
        /// Position.
        index: usize,
    },
    /// Finish reason does not match the output.
    #[error("finish reason {reason:?} does not match the output ({why})")]
    FinishMismatch {
        /// Reported reason.
        reason: FinishReason,
        /// What is wrong.
        why: &'static str,
    },
}

/// Checks an output against the job's parameters and the model's stop ids: generation ends at the first stop id
/// (`stop`) or after exactly `max_tokens` tokens (`length`).
pub fn check_outcome(
    job: &JobRecord,
    model: Option<&ServedModel>,
    tokens: &[u32],
    finish_reason: FinishReason,
) -> Result<(), OutcomeError> {
    let Some(&last) = tokens.last() else {
        return Err(OutcomeError::Empty);
    };
    let max_tokens = job.params.max_tokens;
    if tokens.len() > max_tokens as usize {
        return Err(OutcomeError::TooLong {
            len: tokens.len(),
            max_tokens,
        });
    }
    let Some(model) = model else {
        return Ok(());
    };
    let vocab = model.tokenizer.vocab_size();
    if let Some((index, &id)) = tokens
        .iter()
        .enumerate()
        .find(|(_, id)| **id as usize >= vocab)
    {
        return Err(OutcomeError::TokenOutOfRange { index, id, vocab });
    }
    let is_stop = |id: &u32| model.stop_ids.contains(id);
    if let Some(index) = tokens[..tokens.len() - 1].iter().position(is_stop) {
        return Err(OutcomeError::StopBeforeEnd { index });
    }
    match finish_reason {
        FinishReason::Stop if !is_stop(&last) => Err(OutcomeError::FinishMismatch {
            reason: finish_reason,
            why: "the last token is not a stop token",
        }),
        FinishReason::Length if is_stop(&last) => Err(OutcomeError::FinishMismatch {
            reason: finish_reason,
            why: "the last token is a stop token",
        }),
        FinishReason::Length if tokens.len() != max_tokens as usize => {
            Err(OutcomeError::FinishMismatch {
                reason: finish_reason,
                why: "fewer than max_tokens tokens",
            })
        }
        _ => Ok(()),
    }
}
