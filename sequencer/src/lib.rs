//! The sequencer role: OpenAI-compatible API, authentication and limits, durable request storage, executor job
//! leases, batching and L1 posting, receipts and metrics (DESIGN §3, §7).
//!
//! Empty until the sequencer issue lands; nothing here is wired into the CLI yet.
