//! The challenger (L1 watcher, secret sampler, re-execution, dispute driver) and the executor-side defender
//! (DESIGN §5, §6).
//!
//! Empty until the dispute-game and challenger issues land; nothing here is wired into the CLI yet.
