//! Integration tests of the sequencer: one binary, servers on 127.0.0.1, both storage backends.

mod api;
mod bad_input;
mod bench;
mod common;
mod keys;
mod leaf_checks;
mod logprobs;
mod openai_client;
mod settlement;
mod storage;
