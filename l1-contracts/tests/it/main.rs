//! Integration tests of the L1 contracts on the embedded chain, and of the JSON-RPC client on anvil (`rpc`; needs
//! `npm ci` in l1-contracts/) (one test binary; one module per area).

mod batches;
mod blobs;
mod bonds;
mod common;
mod consumer;
mod dispute_game;
mod disputes;
mod eip712;
mod embedded;
mod gas;
mod invariants;
mod models;
mod one_step;
mod rpc;
mod signatures;
