//! Shared helpers of the executor tests: the CPU device, seeded generators and host<->device conversions.
#![allow(dead_code)]

use burn::tensor::{Int, Tensor};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use std::path::PathBuf;
use verinfer_executor::transfer::{i32_tensor, i64_tensor, read_i32, read_i64};
use verinfer_executor::{Cpu, init_device};

pub type Dev = burn::tensor::Device<Cpu>;

/// The CPU device, set up for the engine.
pub fn device() -> Dev {
    let d = Dev::default();
    init_device::<Cpu>(&d).expect("flex device initializes");
    d
}

/// Seeded generator (ChaCha20: failures reproduce exactly).
pub struct Gen(ChaCha20Rng);

pub const I32_EDGES: [i32; 14] = [
    i32::MIN,
    i32::MIN + 1,
    i32::MAX,
    i32::MAX - 1,
    0,
    1,
    -1,
    1 << 30,
    -(1 << 30),
    65536,
    -65536,
    32767,
    -32768,
    -64,
];

impl Gen {
    pub fn new(seed: u64) -> Self {
        Self(ChaCha20Rng::seed_from_u64(seed))
    }

    pub fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `[0, n)`, `n ≥ 1`.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.u64()) * u128::from(n)) >> 64) as u64
    }

    pub fn range_i64(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// A value of random bit length up to `bits` (so small and large magnitudes are both common), random sign.
    pub fn magnitude(&mut self, bits: u32) -> i64 {
        let b = self.below(u64::from(bits) + 1) as u32;
        let v = if b == 0 {
            0
        } else {
            (self.u64() >> (64 - b)) as i64
        };
        if self.chance(1, 2) { -v } else { v }
    }

    /// An i32 of random magnitude, sometimes a boundary value.
    pub fn i32(&mut self) -> i32 {
        if self.chance(1, 10) {
            I32_EDGES[self.below(I32_EDGES.len() as u64) as usize]
        } else {
            self.magnitude(32)
                .clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
        }
    }

    /// A row of `n` i32 values: random magnitudes, sometimes all zero or all at one extreme.
    pub fn i32_row(&mut self, n: usize) -> Vec<i32> {
        match self.below(12) {
            0 => vec![0; n],
            1 => vec![i32::MIN; n],
            2 => vec![i32::MAX; n],
            3 => {
                let bits = self.below(33) as u32;
                (0..n)
                    .map(|_| {
                        self.magnitude(bits)
                            .clamp(i64::from(i32::MIN), i64::from(i32::MAX))
                            as i32
                    })
                    .collect()
            }
            _ => (0..n).map(|_| self.i32()).collect(),
        }
    }
}

pub fn tensor_i32(rows: &[Vec<i32>], dev: &Dev) -> Tensor<Cpu, 2, Int> {
    let w = rows.first().map_or(0, Vec::len);
    i32_tensor::<Cpu, 2>(rows.concat(), [rows.len(), w], dev)
}

pub fn tensor_i64(rows: &[Vec<i64>], dev: &Dev) -> Tensor<Cpu, 2, Int> {
    let w = rows.first().map_or(0, Vec::len);
    i64_tensor::<Cpu, 2>(rows.concat(), [rows.len(), w], dev)
}

pub fn rows_i32(t: Tensor<Cpu, 2, Int>) -> Vec<Vec<i32>> {
    let w = t.dims()[1];
    read_i32(t)
        .expect("reads back")
        .chunks(w.max(1))
        .map(<[i32]>::to_vec)
        .collect()
}

pub fn rows_i64(t: Tensor<Cpu, 2, Int>) -> Vec<Vec<i64>> {
    let w = t.dims()[1];
    read_i64(t)
        .expect("reads back")
        .chunks(w.max(1))
        .map(<[i64]>::to_vec)
        .collect()
}

/// The SmolLM2 GGUF: `$VERINFER_SMOLLM2_GGUF` or the cache path `scripts/fetch-model` writes.
pub fn smollm2_path() -> PathBuf {
    let path = std::env::var_os("VERINFER_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(".cache/verinfer/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        path.exists(),
        "SmolLM2 GGUF not found at {}: run `scripts/fetch-model` or set VERINFER_SMOLLM2_GGUF to its path",
        path.display()
    );
    path
}

/// Records every op's descriptor and output root, to locate the first op where two runs differ.
#[derive(Debug, Default)]
pub struct OpLog {
    pub ops: Vec<(vir::program::OpDescriptor, alloy_primitives::B256)>,
    committer: vir::interp::TraceCommitter,
}

impl vir::interp::TraceSink for OpLog {
    fn record(&mut self, desc: &vir::program::OpDescriptor, out: vir::interp::TensorView<'_>) {
        self.ops.push((*desc, out.root()));
        self.committer.record(desc, out);
    }
}

impl OpLog {
    pub fn finish(
        self,
    ) -> (
        Vec<(vir::program::OpDescriptor, alloy_primitives::B256)>,
        protocol::TraceCommitment,
    ) {
        (self.ops, self.committer.finish())
    }
}

/// Panics with the first differing op when two op logs differ.
pub fn assert_same_ops(
    got: &[(vir::program::OpDescriptor, alloy_primitives::B256)],
    want: &[(vir::program::OpDescriptor, alloy_primitives::B256)],
    what: &str,
) {
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!(
            "{what}: first differing op #{i}: got {:?}, want {:?}",
            got[i], want[i]
        );
    }
    assert_eq!(got.len(), want.len(), "{what}: op counts differ");
}
