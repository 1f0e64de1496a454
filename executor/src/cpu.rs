//! What the host CPU can run, detected at run time: the AVX2 kernels (host matmul, four-lane Keccak) check here
//! before taking their vector path.

/// Whether this CPU has AVX2 (cheap: the standard library caches the detection).
pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
