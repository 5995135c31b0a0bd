//! Exact k nearest rows of a pool for every query row.
//!
//! Dot products in the inputs' precision (computed here with the `gemm` crate,
//! block by block of queries, or supplied by the caller) give an approximate
//! distance to every pool row. Rounding error of a length-`d` dot
//! product is at most `γ_d |q| |p|` with `γ_d = d u / (1 - d u)`, so every pool
//! row that can truly be among the k nearest lies within a known margin of the
//! approximate k-th distance. Those candidates (usually k plus a handful) get
//! their distance recomputed directly in float64, and the final order comes from
//! the float64 values, ties to the lower index. The result is exact to float64
//! precision whatever the conditioning of `|q|² - 2 q·p + |p|²`.

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use crate::error::{KernelError, Result};
use crate::matmul::a_bt;
use crate::real::Real;
use crate::select::{best_k, rank_asc, top_k_desc};
use crate::validate::{require_finite, require_nonempty};

/// Distance between rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// `||q - p||_2`.
    Euclidean,
    /// `1 - q·p / (|q| |p|)`; zero vectors are rejected.
    Cosine,
}

fn norms<T: Real>(x: ArrayView2<T>) -> Vec<f64> {
    (0..x.nrows())
        .into_par_iter()
        .map(|r| pair_sum(x.row(r), x.row(r), |a, b| a * b).sqrt())
        .collect()
}

/// Norms and the rounding-error factor shared by every query block.
struct Prepared {
    q_norms: Vec<f64>,
    p_norms: Vec<f64>,
    max_p_norm: f64,
    gamma: f64,
}

fn prepare<T: Real>(
    queries: ArrayView2<T>,
    pool: ArrayView2<T>,
    k: usize,
    metric: Metric,
) -> Result<Prepared> {
    require_nonempty(queries, "queries")?;
    require_nonempty(pool, "pool")?;
    let d = queries.ncols();
    let m = pool.nrows();
    if pool.ncols() != d {
        return Err(KernelError::Shape {
            arg: "pool",
            message: format!("expected {d} columns (as queries), found {}", pool.ncols()),
        });
    }
    if k == 0 || k > m {
        return Err(KernelError::Value {
            arg: "k",
            row: None,
            message: format!("expected 1 <= k <= {m} (rows of pool), found {k}"),
        });
    }
    require_finite(queries, "queries")?;
    require_finite(pool, "pool")?;
    let q_norms = norms(queries);
    let p_norms = norms(pool);
    for (arg, ns) in [("queries", &q_norms), ("pool", &p_norms)] {
        if ns.iter().any(|v| !v.is_finite()) {
            // Squared norms beyond float64: the caller rescales by a power of two.
            return Err(KernelError::Overflow { arg });
        }
    }
    if metric == Metric::Cosine {
        for (arg, ns) in [("queries", &q_norms), ("pool", &p_norms)] {
            if let Some(row) = ns.iter().position(|&v| v == 0.0) {
                return Err(KernelError::Value {
                    arg,
                    row: Some(row),
                    message: format!("row {row} is a zero vector, which has no cosine distance"),
                });
            }
        }
    }
    let max_p_norm = p_norms.iter().cloned().fold(0.0f64, f64::max);
    let du = d as f64 * T::UNIT_ROUNDOFF;
    // Beyond d u >= 1/2 the bound is meaningless: keep every row as a candidate.
    let gamma = if du < 0.5 {
        du / (1.0 - du)
    } else {
        f64::INFINITY
    };
    Ok(Prepared {
        q_norms,
        p_norms,
        max_p_norm,
        gamma,
    })
}

/// `k` nearest rows of `pool` for every row of `queries`: `(indices, distances)`,
/// both `n_queries x k`, nearest first, ties to the lower index. The dot products
/// `dots[i, j] = queries[i] · pool[j]` are supplied by the caller (from any
/// matrix product in the inputs' precision, e.g. an optimised BLAS). They only propose candidates: the answer
/// comes from float64 distances and does not depend on how `dots` was rounded,
/// as long as each dot is within the usual `γ_d |q| |p|` of the true value.
pub fn nearest_neighbors_from_dots<T: Real>(
    queries: ArrayView2<T>,
    pool: ArrayView2<T>,
    dots: ArrayView2<T>,
    k: usize,
    metric: Metric,
) -> Result<(Array2<i64>, Array2<T>)> {
    let prep = prepare(queries, pool, k, metric)?;
    let (nq, m) = (queries.nrows(), pool.nrows());
    if dots.dim() != (nq, m) {
        return Err(KernelError::Shape {
            arg: "dots",
            message: format!("expected shape ({nq}, {m}), found {:?}", dots.dim()),
        });
    }
    let mut indices = Array2::<i64>::zeros((nq, k));
    let mut distances = Array2::<T>::default((nq, k));
    let rows = select_block(queries, pool, &prep, 0, nq, k, metric, |i| {
        dots.row(i).into_iter().map(|v| v.to_f64()).enumerate()
    });
    write_rows(rows, 0, metric, &mut indices, &mut distances);
    Ok((indices, distances))
}

/// Most query rows per task of [`nearest_neighbors`]: the pool is packed for
/// the product once per block.
pub const QUERY_BLOCK: usize = 256;
/// Most bytes of dot products a task holds (fewer queries per block for a
/// large pool).
const BLOCK_DOTS_BYTES: usize = 16 << 20;

/// [`nearest_neighbors_from_dots`] with the dot products computed here, block
/// by block of [`QUERY_BLOCK`] queries, each block's product on the thread that
/// then selects from it. Every block's product has the same shape whatever the
/// thread count, and the answer comes from float64 distances in any case.
pub fn nearest_neighbors<T: Real>(
    queries: ArrayView2<T>,
    pool: ArrayView2<T>,
    k: usize,
    metric: Metric,
) -> Result<(Array2<i64>, Array2<T>)> {
    let prep = prepare(queries, pool, k, metric)?;
    let (nq, m) = (queries.nrows(), pool.nrows());
    let rows = (BLOCK_DOTS_BYTES / (m * std::mem::size_of::<T>())).clamp(1, QUERY_BLOCK);
    let blocks: Vec<Vec<Vec<(f64, usize)>>> = (0..nq.div_ceil(rows))
        .into_par_iter()
        .map(|b| {
            let (q0, q1) = (b * rows, ((b + 1) * rows).min(nq));
            let mut dots = vec![T::zero(); (q1 - q0) * m];
            a_bt(queries.slice(ndarray::s![q0..q1, ..]), pool, &mut dots, m);
            let dots = &dots;
            select_block(queries, pool, &prep, q0, q1, k, metric, |i| {
                dots[i * m..(i + 1) * m]
                    .iter()
                    .map(|v| v.to_f64())
                    .enumerate()
            })
        })
        .collect();
    let mut indices = Array2::<i64>::zeros((nq, k));
    let mut distances = Array2::<T>::default((nq, k));
    for (b, best) in blocks.into_iter().enumerate() {
        write_rows(best, b * rows, metric, &mut indices, &mut distances);
    }
    Ok((indices, distances))
}

fn write_rows<T: Real>(
    rows: Vec<Vec<(f64, usize)>>,
    q0: usize,
    metric: Metric,
    indices: &mut Array2<i64>,
    distances: &mut Array2<T>,
) {
    for (i, best) in rows.into_iter().enumerate() {
        for (slot, (dist, j)) in best.into_iter().enumerate() {
            indices[[q0 + i, slot]] = j as i64;
            let shown = match metric {
                Metric::Euclidean => dist.max(0.0).sqrt(),
                Metric::Cosine => dist,
            };
            distances[[q0 + i, slot]] = T::from_f64(shown);
        }
    }
}

/// The k nearest of queries `q0..q1`, given each one's dots against the pool
/// (`dots_of(i)` for query `q0 + i`, as `(pool index, dot)` in pool order).
#[allow(clippy::too_many_arguments)]
fn select_block<T: Real, I: Iterator<Item = (usize, f64)>>(
    queries: ArrayView2<T>,
    pool: ArrayView2<T>,
    prep: &Prepared,
    q0: usize,
    q1: usize,
    k: usize,
    metric: Metric,
    dots_of: impl Fn(usize) -> I + Sync,
) -> Vec<Vec<(f64, usize)>> {
    let (p_norms, max_p_norm, gamma) = (&prep.p_norms, prep.max_p_norm, prep.gamma);
    (0..q1 - q0)
        .into_par_iter()
        .map_init(Vec::new, |neg_approx: &mut Vec<f64>, i| {
            let q = q0 + i;
            let qn = prep.q_norms[q];
            // Negated approximate distances: the k largest are the k nearest.
            neg_approx.clear();
            // One loop per metric, so that neither tests the metric per element.
            match metric {
                Metric::Euclidean => {
                    let qn2 = qn * qn;
                    neg_approx.extend(
                        dots_of(i).map(|(j, dot)| 2.0 * dot - qn2 - p_norms[j] * p_norms[j]),
                    );
                }
                Metric::Cosine => {
                    neg_approx.extend(dots_of(i).map(|(j, dot)| dot / (qn * p_norms[j]) - 1.0));
                }
            }
            let margin = match metric {
                Metric::Euclidean => {
                    2.0 * (2.0 * gamma * qn * max_p_norm)
                        + 1e-13 * (qn * qn + max_p_norm * max_p_norm)
                }
                Metric::Cosine => 2.0 * gamma + 1e-13,
            };
            let kth = -top_k_desc(neg_approx, 0, k)[k - 1].0;
            let limit = kth + margin;
            let exact: Vec<(f64, usize)> = neg_approx
                .iter()
                .enumerate()
                // NaN (an overflowed estimate) keeps the row: it is then judged exactly.
                .filter(|&(_, &a)| (-a).partial_cmp(&limit) != Some(std::cmp::Ordering::Greater))
                .map(|(j, _)| {
                    (
                        exact_distance(queries.row(q), pool.row(j), qn, p_norms[j], metric),
                        j,
                    )
                })
                .collect();
            best_k(exact, k, rank_asc)
        })
        .collect()
}

fn exact_distance<T: Real>(
    q: ndarray::ArrayView1<T>,
    p: ndarray::ArrayView1<T>,
    q_norm: f64,
    p_norm: f64,
    metric: Metric,
) -> f64 {
    match metric {
        Metric::Euclidean => pair_sum(q, p, |a, b| (a - b) * (a - b)),
        Metric::Cosine => 1.0 - pair_sum(q, p, |a, b| a * b) / (q_norm * p_norm),
    }
}

/// `sum_j term(q_j, p_j)` in float64.
#[inline(always)]
fn pair_sum<T: Real>(
    q: ndarray::ArrayView1<T>,
    p: ndarray::ArrayView1<T>,
    term: impl Fn(f64, f64) -> f64 + Copy,
) -> f64 {
    match (q.as_slice(), p.as_slice()) {
        (Some(q), Some(p)) => lane_sum(q, p, term),
        _ => q
            .iter()
            .zip(p.iter())
            .map(|(a, b)| term(a.to_f64(), b.to_f64()))
            .sum(),
    }
}

/// `sum_j term(q_j, p_j)` in float64 over eight interleaved partial sums,
/// added in a fixed order: the same bits every time, and eight times the
/// additions in flight of one running sum.
#[inline(always)]
fn lane_sum<T: Real>(q: &[T], p: &[T], term: impl Fn(f64, f64) -> f64 + Copy) -> f64 {
    let mut lanes = [0.0f64; 8];
    let (qc, pc) = (q.chunks_exact(8), p.chunks_exact(8));
    let tail: f64 = qc
        .remainder()
        .iter()
        .zip(pc.remainder())
        .map(|(a, b)| term(a.to_f64(), b.to_f64()))
        .sum();
    for (a, b) in qc.zip(pc) {
        for l in 0..8 {
            lanes[l] += term(a[l].to_f64(), b[l].to_f64());
        }
    }
    let pairs = [
        lanes[0] + lanes[4],
        lanes[1] + lanes[5],
        lanes[2] + lanes[6],
        lanes[3] + lanes[7],
    ];
    (pairs[0] + pairs[2]) + (pairs[1] + pairs[3]) + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2, LinalgScalar};

    /// The dot products from ndarray's own matrix product (zeros where the
    /// shapes disagree, for the tests of that error).
    fn nearest_neighbors<T: Real + LinalgScalar>(
        q: ArrayView2<T>,
        p: ArrayView2<T>,
        k: usize,
        metric: Metric,
    ) -> Result<(Array2<i64>, Array2<T>)> {
        let dots = if q.ncols() == p.ncols() {
            q.dot(&p.t())
        } else {
            Array2::zeros((q.nrows(), p.nrows()))
        };
        nearest_neighbors_from_dots(q, p, dots.view(), k, metric)
    }

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64) / ((1u64 << 53) as f64) - 0.5
    }

    fn brute(q: &Array2<f64>, p: &Array2<f64>, k: usize, metric: Metric) -> Vec<Vec<usize>> {
        q.outer_iter()
            .map(|qr| {
                let qn = qr.dot(&qr).sqrt();
                let mut all: Vec<(f64, usize)> = p
                    .outer_iter()
                    .enumerate()
                    .map(|(j, pr)| (exact_distance(qr, pr, qn, pr.dot(&pr).sqrt(), metric), j))
                    .collect();
                all.sort_by(|a, b| rank_asc(*a, *b));
                all.into_iter().take(k).map(|x| x.1).collect()
            })
            .collect()
    }

    #[test]
    fn matches_brute_force_on_random_data() {
        let mut seed = 5u64;
        let q = Array2::from_shape_fn((300, 40), |_| lcg(&mut seed));
        let p = Array2::from_shape_fn((1100, 40), |_| lcg(&mut seed));
        for metric in [Metric::Euclidean, Metric::Cosine] {
            let (idx, _) = nearest_neighbors(q.view(), p.view(), 7, metric).unwrap();
            let want = brute(&q, &p, 7, metric);
            for (row, w) in idx.outer_iter().zip(&want) {
                assert_eq!(row.iter().map(|&v| v as usize).collect::<Vec<_>>(), *w);
            }
        }
    }

    #[test]
    fn ill_conditioned_float32_is_still_exact() {
        // Large common offset: |q|^2 - 2 q.p + |p|^2 cancels badly in float32.
        let mut seed = 9u64;
        let q = Array2::from_shape_fn((20, 64), |_| 1000.0 + lcg(&mut seed) as f32 * 1e-2);
        let p = Array2::from_shape_fn((600, 64), |_| 1000.0 + lcg(&mut seed) as f32 * 1e-2);
        let (idx, dist) = nearest_neighbors(q.view(), p.view(), 5, Metric::Euclidean).unwrap();
        let want = brute(
            &q.mapv(|v| v as f64),
            &p.mapv(|v| v as f64),
            5,
            Metric::Euclidean,
        );
        for (row, w) in idx.outer_iter().zip(&want) {
            assert_eq!(row.iter().map(|&v| v as usize).collect::<Vec<_>>(), *w);
        }
        assert!(dist.iter().all(|&v| v > 0.0));
    }

    #[test]
    fn perturbed_dots_within_the_bound_give_the_same_answer() {
        // Any product whose rounding stays within γ_d |q| |p| must do: push every
        // dot to the edge of that bound, in random directions.
        let mut seed = 13u64;
        let (nq, m, d) = (40usize, 300usize, 96usize);
        let q = Array2::from_shape_fn((nq, d), |_| 5.0 + lcg(&mut seed) as f32);
        let p = Array2::from_shape_fn((m, d), |_| 5.0 + lcg(&mut seed) as f32);
        let du = d as f64 * f32::UNIT_ROUNDOFF;
        let gamma = du / (1.0 - du);
        for metric in [Metric::Euclidean, Metric::Cosine] {
            let want = nearest_neighbors(q.view(), p.view(), 6, metric).unwrap();
            let dots = Array2::from_shape_fn((nq, m), |(i, j)| {
                let exact: f64 = q
                    .row(i)
                    .iter()
                    .zip(p.row(j))
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum();
                let qn = q
                    .row(i)
                    .iter()
                    .map(|v| (*v as f64).powi(2))
                    .sum::<f64>()
                    .sqrt();
                let pn = p
                    .row(j)
                    .iter()
                    .map(|v| (*v as f64).powi(2))
                    .sum::<f64>()
                    .sqrt();
                let sign = if lcg(&mut seed) > 0.0 { 1.0 } else { -1.0 };
                (exact + sign * 0.999 * gamma * qn * pn) as f32
            });
            let got =
                nearest_neighbors_from_dots(q.view(), p.view(), dots.view(), 6, metric).unwrap();
            assert_eq!(got.0, want.0);
            assert!(got
                .1
                .iter()
                .zip(want.1.iter())
                .all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }

    #[test]
    fn ties_go_to_the_lower_index() {
        let q = array![[0.0f32, 0.0]];
        let p = array![
            [1.0f32, 0.0],
            [0.0, 1.0],
            [-1.0, 0.0],
            [0.0, 2.0],
            [1.0, 0.0]
        ];
        let (idx, dist) = nearest_neighbors(q.view(), p.view(), 5, Metric::Euclidean).unwrap();
        assert_eq!(idx.row(0).to_vec(), vec![0, 1, 2, 4, 3]);
        assert_eq!(dist.row(0).to_vec(), vec![1.0, 1.0, 1.0, 1.0, 2.0]);
    }

    #[test]
    fn own_product_in_blocks_gives_the_answer_of_any_product() {
        // Several query blocks; each thread count cuts the same blocks.
        let (nq, m, d) = (600usize, 300usize, 40usize);
        let mut seed = 17u64;
        let q = Array2::from_shape_fn((nq, d), |_| lcg(&mut seed) as f32);
        let p = Array2::from_shape_fn((m, d), |_| lcg(&mut seed) as f32);
        for metric in [Metric::Euclidean, Metric::Cosine] {
            let want = nearest_neighbors(q.view(), p.view(), 4, metric).unwrap();
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let got = pool
                    .install(|| super::nearest_neighbors(q.view(), p.view(), 4, metric))
                    .unwrap();
                assert_eq!(got.0, want.0);
                assert_eq!(got.1, want.1);
            }
        }
    }

    #[test]
    fn same_bits_for_any_thread_count() {
        let mut seed = 1u64;
        let q = Array2::from_shape_fn((700, 30), |_| lcg(&mut seed) as f32);
        let p = Array2::from_shape_fn((1500, 30), |_| lcg(&mut seed) as f32);
        let run = |t| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap();
            pool.install(|| nearest_neighbors(q.view(), p.view(), 4, Metric::Cosine).unwrap())
        };
        let (i1, d1) = run(1);
        let (i3, d3) = run(3);
        assert_eq!(i1, i3);
        assert!(d1
            .iter()
            .zip(d3.iter())
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn bad_input() {
        let q = array![[0.0f64, 1.0]];
        let p = array![[1.0f64, 0.0], [0.0, 0.0]];
        assert!(matches!(
            nearest_neighbors(q.view(), p.view(), 3, Metric::Euclidean),
            Err(KernelError::Value { arg: "k", .. })
        ));
        assert!(matches!(
            nearest_neighbors(q.view(), p.view(), 0, Metric::Euclidean),
            Err(KernelError::Value { arg: "k", .. })
        ));
        assert!(matches!(
            nearest_neighbors(q.view(), p.view(), 1, Metric::Cosine),
            Err(KernelError::Value { arg: "pool", .. })
        ));
        let p3 = array![[1.0f64, 0.0, 1.0]];
        assert!(matches!(
            nearest_neighbors(q.view(), p3.view(), 1, Metric::Euclidean),
            Err(KernelError::Shape { arg: "pool", .. })
        ));
        let bad = array![[0.0f64, 1.0], [f64::INFINITY, 1.0]];
        assert_eq!(
            nearest_neighbors(bad.view(), p.view(), 1, Metric::Euclidean).unwrap_err(),
            KernelError::NonFinite {
                arg: "queries",
                row: 1
            }
        );
    }
}
