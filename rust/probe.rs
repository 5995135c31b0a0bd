//! A plain multi-threaded read of a matrix: the memory-bandwidth yardstick the
//! benchmarks compare `class_means` against, on the same array in the same run.

use ndarray::ArrayView2;
use rayon::prelude::*;

use crate::real::Real;

/// Sum with eight independent accumulators, so the read, not the add latency,
/// is the limit.
fn sum_lanes<T: Real>(s: &[T]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let chunks = s.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|v| v.to_f64()).sum();
    for c in chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l += v.to_f64();
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// Sum of every element, read row by row in parallel chunks.
pub fn sum_all<T: Real>(x: ArrayView2<T>) -> f64 {
    const ROWS: usize = 4096;
    let n = x.nrows();
    (0..n.div_ceil(ROWS))
        .into_par_iter()
        .map(|p| {
            let mut acc = 0.0f64;
            for r in p * ROWS..((p + 1) * ROWS).min(n) {
                let row = x.row(r);
                match row.as_slice() {
                    Some(s) => acc += sum_lanes(s),
                    None => acc += row.iter().map(|v| v.to_f64()).sum::<f64>(),
                }
            }
            acc
        })
        .sum()
}
