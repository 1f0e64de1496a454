//! Load scenarios against the OpenAI-compatible API (goose), run against loopback only.
//!
//! Empty until the sequencer's API exists.
