//! The sequencer role (DESIGN §3, §7): the OpenAI-compatible API with exact error JSON, API keys and per-key limits,
//! durable storage on Postgres or SQLite, the job queue executors lease from over HTTP, receipts and metrics.
//!
//! * [`server`] builds the routers from an [`server::AppState`]; [`api`] holds the public routes, [`admin`] the
//!   key management, [`executor_api`] the worker protocol (bodies in [`wire`]);
//! * a request flows through [`body`] (JSON), [`params`] (validation), [`admission`] (tokenize, check, store) and
//!   [`results`] (follow the jobs, answer in JSON or SSE);
//! * [`storage`] is the `Storage` / `JobQueue` / `KeyStore` / `BatchStore` seam with its two backends;
//! * [`settlement`] batches executed leaves, posts the batches to L1 and finalizes them (one leader per database);
//!   [`receipt`] shows the result: leaf, batch, Merkle proof, L1 transaction and status.
//!
//! * [`verify`] checks a completed leaf (fields, signature, executor bond on L1) before it is stored; the batcher
//!   checks again before it stakes the sequencer's bond on a leaf;
//! * [`worker`] is the remote executor loop over the executor API, generic over the inference engine.

pub mod admin;
pub mod admission;
pub mod api;
pub mod body;
pub mod clock;
pub mod error;
pub mod executor_api;
pub mod hub;
pub mod ids;
pub mod keys;
pub mod leaf;
pub mod metrics;
pub mod model;
pub mod openai;
pub mod params;
pub mod ratelimit;
pub mod receipt;
pub mod results;
pub mod server;
pub mod settlement;
pub mod stop;
pub mod storage;
pub mod verify;
pub mod wire;
pub mod worker;

pub use error::{ApiError, ErrorBody};
pub use server::{AppState, SequencerConfig, admin_router, public_router};
