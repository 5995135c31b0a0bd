//! The tests' one source of pseudo-random values: a 64-bit linear congruential
//! generator, so that the kernels' tests need no random-number crate.

/// The next value in [-0.5, 0.5) from `seed`, which it advances.
pub(crate) fn lcg(seed: &mut u64) -> f64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 11) as f64) / ((1u64 << 53) as f64) - 0.5
}
