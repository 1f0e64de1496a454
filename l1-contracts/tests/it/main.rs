//! Integration tests of the L1 contracts on the embedded chain (one test binary; one module per area).

mod batches;
mod bonds;
mod common;
mod consumer;
mod disputes;
mod eip712;
mod embedded;
mod gas;
mod invariants;
mod models;
