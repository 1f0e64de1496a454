//! Throughput smoke check (ignored by default): `cargo test -p verinfer-protocol --release --test
//! throughput -- --ignored --nocapture`.

use alloy_primitives::{B256, keccak256};
use std::time::Instant;
use verinfer_protocol::{merkle::MerkleBuilder, tensor::TensorHasher};

#[test]
#[ignore = "timing only"]
fn tensor_hasher_and_builder_throughput() {
    let data: Vec<u8> = (0..(64usize << 20))
        .map(|i| (i * 31 + (i >> 12)) as u8)
        .collect();
    let t = Instant::now();
    let mut h = TensorHasher::new();
    for piece in data.chunks(4096) {
        h.write(piece);
    }
    let root = h.finish();
    let s = t.elapsed().as_secs_f64();
    println!(
        "TensorHasher: {:.0} MB/s ({root})",
        data.len() as f64 / s / 1e6
    );

    let n = 1_000_000u64;
    let t = Instant::now();
    let mut b = MerkleBuilder::new();
    for i in 0..n {
        b.push(B256::with_last_byte(i as u8));
    }
    let root = b.finish();
    let s = t.elapsed().as_secs_f64();
    println!(
        "MerkleBuilder: {:.2} M leaves/s ({root})",
        n as f64 / s / 1e6
    );

    let t = Instant::now();
    let mut acc = B256::ZERO;
    for _ in 0..n {
        acc = keccak256(acc);
    }
    println!(
        "keccak256(32 B): {:.2} M/s ({acc})",
        n as f64 / t.elapsed().as_secs_f64() / 1e6
    );
}
