//! The top-k classes of `features · Wᵀ + b` for every row, without the full
//! score matrix.
//!
//! Rows are cut into blocks of [`ROW_BLOCK`], classes into tiles of
//! [`CLASS_TILE`]; each (block, tile) pair is one GEMM into a private buffer
//! followed by a per-row top-k of that tile, and the per-tile winners are merged.
//! Rows are handled [`ROWS_PER_PASS`] at a time, so memory beyond the output is
//! a few buffers of `ROW_BLOCK x CLASS_TILE` scores plus the pending winners,
//! whatever the number of rows. Tile shapes depend only on the input shapes,
//! so the result is the same for every thread count.

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use crate::error::{KernelError, Result};
use crate::matmul::a_bt;
use crate::real::Real;
use crate::select::{best_k, rank_desc, top_k_desc};
use crate::validate::{first_non_finite_row, require_finite, require_nonempty};

/// The top-k `(score, class)` pairs of each row of a block, within one class tile.
type RowWinners = Vec<Vec<(f64, usize)>>;

/// Rows per GEMM call. A row's scores depend only on its position within its
/// block, so splitting the rows at multiples of this gives bitwise the same
/// result as one call (the Python streaming and Dask paths rely on it).
pub const ROW_BLOCK: usize = 256;
pub const CLASS_TILE: usize = 2048;
pub const ROWS_PER_PASS: usize = 16 * ROW_BLOCK;

/// `(indices, scores)`, both `n x k`: the `k` highest-scoring classes of every
/// row of `features`, best first, ties to the lower class index.
pub fn topk_scores<T: Real>(
    features: ArrayView2<T>,
    weight: ArrayView2<T>,
    bias: Option<&[T]>,
    k: usize,
) -> Result<(Array2<i64>, Array2<T>)> {
    require_nonempty(features, "features")?;
    require_nonempty(weight, "W")?;
    let (n, d) = features.dim();
    let c = weight.nrows();
    if weight.ncols() != d {
        return Err(KernelError::Shape {
            arg: "W",
            message: format!(
                "expected {d} columns (as features), found {}",
                weight.ncols()
            ),
        });
    }
    if let Some(b) = bias {
        if b.len() != c {
            return Err(KernelError::Shape {
                arg: "b",
                message: format!("expected {c} entries (rows of W), found {}", b.len()),
            });
        }
        if let Some(row) = b.iter().position(|v| !v.is_finite()) {
            return Err(KernelError::NonFinite { arg: "b", row });
        }
    }
    if k == 0 || k > c {
        return Err(KernelError::Value {
            arg: "k",
            row: None,
            message: format!("expected 1 <= k <= {c} (rows of W), found {k}"),
        });
    }
    require_finite(weight, "W")?;

    let mut indices = Array2::<i64>::zeros((n, k));
    let mut scores = Array2::<T>::default((n, k));
    let tiles = c.div_ceil(CLASS_TILE);
    let mut p0 = 0;
    while p0 < n {
        let p1 = (p0 + ROWS_PER_PASS).min(n);
        let blocks = (p1 - p0).div_ceil(ROW_BLOCK);
        // One entry per (block, tile), block-major: winners of every row of the block.
        let winners: Vec<Option<RowWinners>> = (0..blocks * tiles)
            .into_par_iter()
            .map_init(Vec::new, |buffer: &mut Vec<T>, task| {
                let (b, t) = (task / tiles, task % tiles);
                let r0 = p0 + b * ROW_BLOCK;
                let r1 = (r0 + ROW_BLOCK).min(p1);
                let c0 = t * CLASS_TILE;
                let c1 = (c0 + CLASS_TILE).min(c);
                let rows = features.slice(ndarray::s![r0..r1, ..]);
                if t == 0 && first_non_finite_row(rows).is_some() {
                    return None;
                }
                let width = c1 - c0;
                buffer.resize((r1 - r0) * width, T::zero());
                a_bt(rows, weight.slice(ndarray::s![c0..c1, ..]), buffer, width);
                Some(
                    buffer
                        .chunks_mut(width)
                        .map(|row| {
                            if let Some(b) = bias {
                                for (s, &bj) in row.iter_mut().zip(&b[c0..c1]) {
                                    *s = *s + bj;
                                }
                            }
                            top_k_desc(row, c0, k)
                        })
                        .collect(),
                )
            })
            .collect();
        if winners.iter().any(|w| w.is_none()) {
            let rows = features.slice(ndarray::s![p0..p1, ..]);
            let row = first_non_finite_row(rows).expect("a block reported a non-finite row");
            return Err(KernelError::NonFinite {
                arg: "features",
                row: p0 + row,
            });
        }
        let mut winners: Vec<RowWinners> = winners.into_iter().map(Option::unwrap).collect();
        for b in 0..blocks {
            let r0 = p0 + b * ROW_BLOCK;
            let r1 = (r0 + ROW_BLOCK).min(p1);
            for i in 0..r1 - r0 {
                let merged = if tiles == 1 {
                    std::mem::take(&mut winners[b * tiles][i])
                } else {
                    let mut all = Vec::with_capacity(tiles * k);
                    for t in 0..tiles {
                        all.append(&mut winners[b * tiles + t][i]);
                    }
                    best_k(all, k, rank_desc)
                };
                for (slot, (s, j)) in merged.into_iter().enumerate() {
                    indices[[r0 + i, slot]] = j as i64;
                    scores[[r0 + i, slot]] = T::from_f64(s);
                }
            }
        }
        p0 = p1;
    }
    Ok((indices, scores))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2};

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64) / ((1u64 << 53) as f64) - 0.5
    }

    #[test]
    fn matches_full_scores_across_tiles() {
        let mut seed = 2u64;
        let (n, d, c, k) = (600usize, 24usize, 4500usize, 6usize);
        let x = Array2::from_shape_fn((n, d), |_| lcg(&mut seed));
        let w = Array2::from_shape_fn((c, d), |_| lcg(&mut seed));
        let b: Vec<f64> = (0..c).map(|_| lcg(&mut seed)).collect();
        let (idx, sc) = topk_scores(x.view(), w.view(), Some(&b), k).unwrap();
        let full = x.dot(&w.t());
        for i in 0..n {
            let mut all: Vec<(f64, usize)> = (0..c).map(|j| (full[[i, j]] + b[j], j)).collect();
            all.sort_by(|a, b| rank_desc(*a, *b));
            for s in 0..k {
                assert_eq!(idx[[i, s]] as usize, all[s].1);
                assert!((sc[[i, s]] - all[s].0).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn ties_and_thread_count() {
        let x = array![[1.0f32, 0.0], [0.0, 1.0]];
        let w = array![[1.0f32, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]];
        let (idx, _) = topk_scores(x.view(), w.view(), None, 3).unwrap();
        assert_eq!(idx, array![[0, 1, 3], [0, 2, 3]]);
        let mut seed = 4u64;
        let x = Array2::from_shape_fn((1000, 9), |_| lcg(&mut seed) as f32);
        let w = Array2::from_shape_fn((5000, 9), |_| lcg(&mut seed) as f32);
        let run = |t| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap();
            pool.install(|| topk_scores(x.view(), w.view(), None, 5).unwrap())
        };
        let (a, sa) = run(1);
        let (b, sb) = run(4);
        assert_eq!(a, b);
        assert!(sa
            .iter()
            .zip(sb.iter())
            .all(|(p, q)| p.to_bits() == q.to_bits()));
    }

    #[test]
    fn bad_input() {
        let x = array![[1.0f64, 0.0], [f64::NAN, 1.0]];
        let w = array![[1.0f64, 1.0]];
        assert_eq!(
            topk_scores(x.view(), w.view(), None, 1).unwrap_err(),
            KernelError::NonFinite {
                arg: "features",
                row: 1
            }
        );
        assert!(matches!(
            topk_scores(x.view(), w.view(), None, 2),
            Err(KernelError::Value { arg: "k", .. })
        ));
        assert!(matches!(
            topk_scores(x.view(), w.view(), Some(&[0.0, 1.0]), 1),
            Err(KernelError::Shape { arg: "b", .. })
        ));
    }
}
