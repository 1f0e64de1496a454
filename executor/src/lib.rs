//! The executor's engine: the VIR program of `vir` on burn integer tensors, bit for bit equal to the scalar
//! reference interpreter (`vir::interp`) on every op, token and trace root.
//!
//! * [`backend`] picks the burn backend (CPU [`Cpu`] = flex; `Cuda` behind the `cuda` feature) and fixes the
//!   integer dtypes of a device;
//! * [`ops`] implements every VIR op on batches of rows of `Tensor<B, D, Int>`;
//! * [`model`] uploads an [`vir::IntModel`] (weights and tables) to a device;
//! * [`engine`] runs requests: [`BurnEngine::generate`] for one request, [`BurnEngine::forward_batch`] for one
//!   step of several independent requests, each with its own [`kv_cache::KvCache`] and trace; on the CPU
//!   backend a step runs on the host ([`host`]: `vir::ops` per row, the exact host matmul);
//! * [`commit`] commits a trace like `vir::interp::TraceCommitter`, hashing many ops at once in parallel;
//! * [`scheduler`] batches many requests continuously over `forward_batch` (token budget, KV reservation,
//!   streaming, cancellation), synchronously or on its own thread;
//! * [`replay`] regenerates any trace op's inputs and output for a dispute;
//! * [`identity`] is the executor's signing key;
//! * [`bench`] measures the reference interpreter, the engine and the scheduler.
//!
//! No float op and no backend-dependent tie-breaking is used in the traced path: matmuls, norms, RoPE, attention
//! and SwiGLU run on the device in I32/I64; per-row scalars (quantization shifts, RMSNorm's integer square root,
//! top-p thresholds, the sampling draw) are read back and computed on the host with `vir::fixed`'s primitives.
//! On the CPU backend the whole step runs on the host ([`host`]) with `vir::ops`' own scalar functions and the
//! exact host matmul; [`BurnEngine::with_device_ops`] runs the burn ops there instead (as tests do).

pub mod backend;
pub mod bench;
pub mod commit;
pub mod cpu;
pub mod engine;
pub mod error;
pub mod host;
pub mod identity;
pub mod keccak_x4;
pub mod kv_cache;
pub mod model;
pub mod ops;
pub mod replay;
pub mod scheduler;
pub mod trace;
pub mod transfer;

#[cfg(feature = "cuda")]
pub use backend::Cuda;
pub use backend::{Cpu, init_device};
pub use burn::tensor::backend::Backend;
pub use commit::ParallelCommitter;
pub use engine::{BatchItem, BurnEngine, RequestState, StepOutput};
pub use error::EngineError;
pub use identity::{ExecutorKey, IdentityError};
pub use model::DeviceModel;
pub use replay::{ReplayError, ReplayedOp, replay};
pub use scheduler::{
    CancelHandle, Completion, Event, RequestStream, Scheduler, SchedulerConfig, SchedulerError,
    SchedulerHandle, SchedulerStats, StepStats,
};
