//! The sampling random source: ChaCha20 keyed by the request's sampling key, read at word `step × 16`.
//!
//! A draw depends only on (seed, choice index, step), never on which other requests share a batch.

use alloy_primitives::B256;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

/// Words of keystream reserved per generated token.
pub const WORDS_PER_STEP: u128 = 16;

/// The 64-bit uniform draw for generation step `step`: keystream words `16·step` (low) and `16·step + 1` (high) of
/// ChaCha20 (20 rounds, 64-bit block counter from 0, stream 0) keyed by `key`.
pub fn draw(key: B256, step: u64) -> u64 {
    let mut rng = ChaCha20Rng::from_seed(key.0);
    rng.set_word_pos(u128::from(step) * WORDS_PER_STEP);
    rng.next_u64()
}
