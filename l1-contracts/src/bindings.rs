//! alloy `sol!` bindings generated from the committed artifacts (`artifacts/<Name>.json`, written by
//! `scripts/compile`). Editing an artifact rebuilds them.
//!
//! Each module holds the contract's calls (`<fn>Call`), events, custom errors, the `<Name>Errors` /
//! `<Name>Events` enums, `BYTECODE` / `DEPLOYED_BYTECODE`, and an alloy-provider instance type (`#[sol(rpc)]`).
//! Solidity enums appear as `uint8` wrapper types (`InferenceRollup::Role`).

#![allow(missing_docs)]

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    InferenceRollup,
    "artifacts/InferenceRollup.json"
);

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    ExampleConsumer,
    "artifacts/ExampleConsumer.json"
);
