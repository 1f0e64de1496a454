//! The `verinfer` CLI library: command definitions and the glue that wires the role crates together.

pub mod cli;
pub mod model_ref;
pub mod model_store;
pub mod node;
