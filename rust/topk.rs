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
use crate::simd::Simd;
use crate::validate::{check_topk_args, first_non_finite_row};

/// The top-k `(score, class)` pairs of each row of a block, within one class tile.
type RowWinners = Vec<Vec<(f64, usize)>>;

/// Rows per GEMM call. A row's scores depend only on its position within its
/// block, so splitting the rows at multiples of this gives bitwise the same
/// result as one call (the Python streaming and Dask paths rely on it).
pub const ROW_BLOCK: usize = 256;
pub const CLASS_TILE: usize = 2048;
pub const ROWS_PER_PASS: usize = 16 * ROW_BLOCK;

/// `(indices, scores)`, both `n x k`: the `k` highest-scoring classes of every
/// row of `features`, best first, ties to the lower class index. The products
/// run on the SIMD level [`Simd::current`] names.
pub fn topk_scores<T: Real>(
    features: ArrayView2<T>,
    weight: ArrayView2<T>,
    bias: Option<&[T]>,
    k: usize,
) -> Result<(Array2<i64>, Array2<T>)> {
    topk_scores_at(Simd::current(), features, weight, bias, k)
}

/// [`topk_scores`] on a given SIMD level (at most [`Simd::detected`]).
pub(crate) fn topk_scores_at<T: Real>(
    level: Simd,
    features: ArrayView2<T>,
    weight: ArrayView2<T>,
    bias: Option<&[T]>,
    k: usize,
) -> Result<(Array2<i64>, Array2<T>)> {
    check_topk_args(features, weight, bias, k)?;
    let n = features.nrows();
    let mut indices = Array2::<i64>::zeros((n, k));
    let mut scores = Array2::<T>::default((n, k));
    let job = Scoring {
        level,
        features,
        weight,
        bias,
        k,
        tiles: weight.nrows().div_ceil(CLASS_TILE),
    };
    for p0 in (0..n).step_by(ROWS_PER_PASS) {
        let p1 = (p0 + ROWS_PER_PASS).min(n);
        let winners = job.score_pass(p0, p1)?;
        job.merge_pass(winners, p0, p1, &mut indices, &mut scores);
    }
    Ok((indices, scores))
}

/// The error for rows `p0..p1`, in which a task saw a non-finite value: the
/// first such row, or, if none is there any more, that another thread wrote
/// to the features during the call (rather than guess a row).
fn non_finite_error<T: Real>(features: ArrayView2<T>, p0: usize, p1: usize) -> KernelError {
    match first_non_finite_row(features.slice(ndarray::s![p0..p1, ..])) {
        Some(row) => KernelError::NonFinite {
            arg: "features",
            row: p0 + row,
        },
        None => KernelError::Changed { arg: "features" },
    }
}

/// What every (row block, class tile) task of one call reads.
struct Scoring<'a, T> {
    level: Simd,
    features: ArrayView2<'a, T>,
    weight: ArrayView2<'a, T>,
    bias: Option<&'a [T]>,
    k: usize,
    tiles: usize,
}

impl<T: Real> Scoring<'_, T> {
    /// The winners of every (block, tile) of rows `p0..p1`, block-major, each
    /// task on whichever thread takes it; an error names the first non-finite row.
    fn score_pass(&self, p0: usize, p1: usize) -> Result<Vec<RowWinners>> {
        let blocks = (p1 - p0).div_ceil(ROW_BLOCK);
        let winners: Vec<Option<RowWinners>> = (0..blocks * self.tiles)
            .into_par_iter()
            .map_init(Vec::new, |buffer: &mut Vec<T>, task| {
                let (b, t) = (task / self.tiles, task % self.tiles);
                let r0 = p0 + b * ROW_BLOCK;
                self.score_tile(buffer, r0, (r0 + ROW_BLOCK).min(p1), t)
            })
            .collect();
        if winners.iter().all(Option::is_some) {
            return Ok(winners.into_iter().flatten().collect());
        }
        Err(non_finite_error(self.features, p0, p1))
    }

    /// The top-k of rows `r0..r1` within class tile `t`, or `None` when the
    /// first tile's task finds a non-finite row.
    fn score_tile(
        &self,
        buffer: &mut Vec<T>,
        r0: usize,
        r1: usize,
        t: usize,
    ) -> Option<RowWinners> {
        let c0 = t * CLASS_TILE;
        let c1 = (c0 + CLASS_TILE).min(self.weight.nrows());
        let rows = self.features.slice(ndarray::s![r0..r1, ..]);
        if t == 0 && first_non_finite_row(rows).is_some() {
            return None;
        }
        let width = c1 - c0;
        buffer.resize((r1 - r0) * width, T::zero());
        let tile = self.weight.slice(ndarray::s![c0..c1, ..]);
        a_bt(self.level, rows, tile, buffer, width);
        let winners = buffer.chunks_mut(width).map(|row| {
            if let Some(b) = self.bias {
                for (s, &bj) in row.iter_mut().zip(&b[c0..c1]) {
                    *s = *s + bj;
                }
            }
            top_k_desc(row, c0, self.k)
        });
        Some(winners.collect())
    }

    /// Each row's best `k` over its tiles' winners, written to the outputs.
    fn merge_pass(
        &self,
        mut winners: Vec<RowWinners>,
        p0: usize,
        p1: usize,
        indices: &mut Array2<i64>,
        scores: &mut Array2<T>,
    ) {
        let tiles = self.tiles;
        for r in p0..p1 {
            let (b, i) = ((r - p0) / ROW_BLOCK, (r - p0) % ROW_BLOCK);
            let merged = if tiles == 1 {
                std::mem::take(&mut winners[b][i])
            } else {
                let mut all = Vec::with_capacity(tiles * self.k);
                for t in 0..tiles {
                    all.append(&mut winners[b * tiles + t][i]);
                }
                best_k(all, self.k, rank_desc)
            };
            for (slot, (s, j)) in merged.into_iter().enumerate() {
                indices[[r, slot]] = j as i64;
                scores[[r, slot]] = T::from_f64(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::lcg;
    use ndarray::{array, Array2};

    #[test]
    fn matches_full_scores_across_tiles() {
        let mut seed = 2u64;
        let (n, d, c, k) = (600usize, 24usize, 4500usize, 6usize);
        let x = Array2::from_shape_fn((n, d), |_| lcg(&mut seed));
        let w = Array2::from_shape_fn((c, d), |_| lcg(&mut seed));
        let b: Vec<f64> = (0..c).map(|_| lcg(&mut seed)).collect();
        let full = x.dot(&w.t());
        for level in Simd::available() {
            let (idx, sc) = topk_scores_at(level, x.view(), w.view(), Some(&b), k).unwrap();
            for i in 0..n {
                let mut all: Vec<(f64, usize)> = (0..c).map(|j| (full[[i, j]] + b[j], j)).collect();
                all.sort_by(|a, b| rank_desc(*a, *b));
                for s in 0..k {
                    assert_eq!(idx[[i, s]] as usize, all[s].1, "{level:?}");
                    assert!((sc[[i, s]] - all[s].0).abs() < 1e-12, "{level:?}");
                }
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
        for level in Simd::available() {
            let run = |t| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(t)
                    .build()
                    .unwrap();
                pool.install(|| topk_scores_at(level, x.view(), w.view(), None, 5).unwrap())
            };
            let (a, sa) = run(1);
            for threads in [2, 3, 4] {
                let (b, sb) = run(threads);
                assert_eq!(a, b, "{level:?}");
                assert!(sa
                    .iter()
                    .zip(sb.iter())
                    .all(|(p, q)| p.to_bits() == q.to_bits()));
            }
        }
    }

    #[test]
    fn a_non_finite_row_that_is_gone_means_the_input_changed() {
        let x = array![[1.0f32, 0.0], [0.0, 1.0], [f32::NAN, 1.0]];
        let e = non_finite_error(x.view(), 0, 2);
        assert_eq!(e, KernelError::Changed { arg: "features" });
        assert!(e.to_string().contains("changed while the kernel read it"));
        let e = non_finite_error(x.view(), 1, 3);
        assert_eq!(
            e,
            KernelError::NonFinite {
                arg: "features",
                row: 2
            }
        );
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
