//! The VIR ops on burn integer tensors, each with exactly the semantics of its scalar reference in `vir::ops`
//! (docs/vir.md §4), computed for a batch of rows at once.
//!
//! A "row" is one token position: rows are independent, so a row's results are the same whatever else shares
//! the batch. Activations are `[rows, n]` I32 tensors; wide intermediates are I64; QVecs are [`QBatch`]es.
//! Per-row scalars that decide a shift (a group's largest magnitude, RMSNorm's sum of squares) are read back and
//! finished on the host with `vir::fixed`'s primitives; everything elementwise or reducing stays on the device.

pub mod attention;
pub mod ffn;
pub mod host_matmul;
pub mod matmul;
pub mod norm;
pub mod quant;
pub mod rope;
pub mod sampling;
pub mod shift;

pub use attention::{
    CausalRows, attn_exp, attn_out, attn_scores, attn_weighted_sums, chunk_max, chunk_sum, row_max,
    row_sum,
};
pub use ffn::{residual_add, swiglu};
pub use matmul::{DeviceMatrix, embed, matmul};
pub use norm::rms_norm;
pub use quant::{QBatch, quantize, quantize_vec};
pub use rope::{RopeTable, rope, rope_quant, rotate};
pub use sampling::{
    logit_chunk_max, logit_max, masked_chunk_sum, pick_chunk, pick_token, sample_exp, sample_sum,
    topp_step,
};
