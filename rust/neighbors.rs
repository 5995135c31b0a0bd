//! Exact k nearest rows of a pool for every query row.
//!
//! Dot products in the inputs' precision (computed here with the `gemm` crate's
//! micro-kernels in tiles of queries x pool rows, or supplied by the caller)
//! give an approximate distance to every pool row. Rounding error of a length-`d` dot
//! product is at most `γ_d |q| |p|` with `γ_d = d u / (1 - d u)`, so every pool
//! row that can truly be among the k nearest lies within a known margin of the
//! approximate k-th distance. Those candidates (usually k plus a handful) get
//! their distance recomputed directly in float64, and the final order comes from
//! the float64 values, ties to the lower index. The result is exact to float64
//! precision whatever the conditioning of `|q|² - 2 q·p + |p|²`, and whatever
//! the magnitudes (`exact.rs` scales each sum by a power of two).

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use crate::error::{KernelError, Result};
use crate::matmul::a_bt;
use crate::real::Real;
use crate::select::{best_k, rank_asc, top_k_desc};
use crate::simd::Simd;
use crate::validate::{require_finite, require_nonempty};

mod exact;
#[cfg(test)]
mod tests;

use exact::{distance, norms, Norm};

/// Distance between rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// `||q - p||_2`.
    Euclidean,
    /// `1 - q·p / (|q| |p|)`; zero vectors are rejected.
    Cosine,
}

/// Norms and the error bounds shared by every query.
struct Prepared {
    q_norms: Vec<Norm>,
    p_norms: Vec<Norm>,
    /// `|p|²` of every pool row, as the approximate distances use it.
    p_squares: Vec<f64>,
    max_p_norm: f64,
    min_p_norm: f64,
    gamma: f64,
    /// `d η`: the absolute error of a dot product whose terms underflow.
    underflow: f64,
}

fn prepare<T: Real>(
    queries: ArrayView2<T>,
    pool: ArrayView2<T>,
    k: usize,
    metric: Metric,
) -> Result<Prepared> {
    require_nonempty(queries, "queries")?;
    require_nonempty(pool, "pool")?;
    let (d, m) = (queries.ncols(), pool.nrows());
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
    let (q_norms, p_norms) = (norms(queries), norms(pool));
    for (arg, ns) in [("queries", &q_norms), ("pool", &p_norms)] {
        if ns.iter().any(|v| !v.norm.is_finite()) {
            // Norms beyond float64: the caller rescales by a power of two.
            return Err(KernelError::Overflow { arg });
        }
        if metric == Metric::Cosine {
            if let Some(row) = ns.iter().position(|v| v.norm == 0.0) {
                return Err(KernelError::Value {
                    arg,
                    row: Some(row),
                    message: format!("row {row} is a zero vector, which has no cosine distance"),
                });
            }
        }
    }
    let max_p_norm = p_norms.iter().fold(0.0f64, |a, v| a.max(v.norm));
    let min_p_norm = p_norms.iter().fold(f64::INFINITY, |a, v| a.min(v.norm));
    let du = d as f64 * T::UNIT_ROUNDOFF;
    // Beyond d u >= 1/2 the bound is meaningless: keep every row as a candidate.
    let gamma = if du < 0.5 {
        du / (1.0 - du)
    } else {
        f64::INFINITY
    };
    Ok(Prepared {
        q_norms,
        p_squares: p_norms.iter().map(|v| v.norm.powi(2)).collect(),
        p_norms,
        max_p_norm,
        min_p_norm,
        gamma,
        underflow: (d as f64 + 2.0) * T::UNDERFLOW,
    })
}

/// `k` nearest rows of `pool` for every row of `queries`: `(indices, distances)`,
/// both `n_queries x k`, nearest first, ties to the lower index. The dot products
/// `dots[i, j] = queries[i] · pool[j]` are supplied by the caller (from any
/// matrix product in the inputs' precision, e.g. an optimised BLAS). They only
/// propose candidates: the answer comes from float64 distances and does not
/// depend on how `dots` was rounded, as long as each dot is within the usual
/// `γ_d |q| |p|` (plus `d η` where terms underflow) of the true value.
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
    let rows = select_rows(queries, pool, &prep, 0, nq, k, metric, |i, out| match dots
        .row(i)
        .as_slice()
    {
        Some(row) => out(0, row),
        None => out(0, &dots.row(i).to_vec()),
    });
    write_rows(rows, 0, &mut indices, &mut distances);
    Ok((indices, distances))
}

/// Most query rows per product tile of [`nearest_neighbors`].
pub const QUERY_BLOCK: usize = 256;
/// Most pool rows per product tile: the pool is cut into equal tiles of at
/// most this many, so that a pass has several tiles per query block and every
/// thread has a tile to compute until the pass ends.
pub const POOL_TILE: usize = 1024;
/// Most bytes of dot products held at once (fewer queries per pass for a
/// large pool).
const PASS_DOTS_BYTES: usize = 32 << 20;

/// [`nearest_neighbors_from_dots`] with the dot products computed here on the
/// SIMD level [`Simd::current`] names: a pass of queries at a time, its product
/// cut into tiles of at most [`QUERY_BLOCK`] queries x [`POOL_TILE`] pool rows
/// (each on one thread), then each query's selection on one thread. Tile
/// shapes depend only on the input shapes, and the answer comes from float64
/// distances in any case.
pub fn nearest_neighbors<T: Real>(
    queries: ArrayView2<T>,
    pool: ArrayView2<T>,
    k: usize,
    metric: Metric,
) -> Result<(Array2<i64>, Array2<T>)> {
    nearest_neighbors_at(Simd::current(), queries, pool, k, metric, PASS_DOTS_BYTES)
}

/// [`nearest_neighbors`] on a given SIMD level (at most [`Simd::detected`]),
/// holding at most `pass_bytes` of dot products (or one query's).
pub(crate) fn nearest_neighbors_at<T: Real>(
    level: Simd,
    queries: ArrayView2<T>,
    pool: ArrayView2<T>,
    k: usize,
    metric: Metric,
    pass_bytes: usize,
) -> Result<(Array2<i64>, Array2<T>)> {
    let prep = prepare(queries, pool, k, metric)?;
    let (nq, m) = (queries.nrows(), pool.nrows());
    let fit = (pass_bytes / (m * std::mem::size_of::<T>())).max(1);
    let (block, pass) = if fit >= QUERY_BLOCK {
        (QUERY_BLOCK, fit / QUERY_BLOCK * QUERY_BLOCK)
    } else {
        (fit, fit)
    };
    let tile = m.div_ceil(m.div_ceil(POOL_TILE));
    let mut indices = Array2::<i64>::zeros((nq, k));
    let mut distances = Array2::<T>::default((nq, k));
    for q0 in (0..nq).step_by(pass) {
        let q1 = (q0 + pass).min(nq);
        let dots = pass_dots(
            level,
            queries.slice(ndarray::s![q0..q1, ..]),
            pool,
            block,
            tile,
        );
        let rows = select_rows(queries, pool, &prep, q0, q1, k, metric, |i, out| {
            for (t, part) in dots.iter().enumerate() {
                let width = part.len() / (q1 - q0);
                out(t * tile, &part[i * width..(i + 1) * width]);
            }
        });
        write_rows(rows, q0, &mut indices, &mut distances);
    }
    Ok((indices, distances))
}

/// `queries · poolᵀ` as one row-major buffer per pool tile (tile `t` holds
/// pool rows `t * tile..`), computed in tiles of `block` queries x `tile` pool
/// rows spread over the pool's threads.
fn pass_dots<T: Real>(
    level: Simd,
    queries: ArrayView2<T>,
    pool: ArrayView2<T>,
    block: usize,
    tile: usize,
) -> Vec<Vec<T>> {
    let (nq, m) = (queries.nrows(), pool.nrows());
    let mut parts: Vec<Vec<T>> = (0..m.div_ceil(tile))
        .map(|t| vec![T::zero(); nq * (tile.min(m - t * tile))])
        .collect();
    let mut tasks = Vec::new();
    for (t, part) in parts.iter_mut().enumerate() {
        let width = tile.min(m - t * tile);
        for (b, chunk) in part.chunks_mut(block * width).enumerate() {
            tasks.push((b, t, width, chunk));
        }
    }
    tasks.into_par_iter().for_each(|(b, t, width, chunk)| {
        let (q0, c0) = (b * block, t * tile);
        let rows = queries.slice(ndarray::s![q0..(q0 + block).min(nq), ..]);
        a_bt(
            level,
            rows,
            pool.slice(ndarray::s![c0..c0 + width, ..]),
            chunk,
            width,
        );
    });
    parts
}

fn write_rows<T: Real>(
    rows: Vec<Vec<(f64, usize)>>,
    q0: usize,
    indices: &mut Array2<i64>,
    distances: &mut Array2<T>,
) {
    for (i, best) in rows.into_iter().enumerate() {
        for (slot, (dist, j)) in best.into_iter().enumerate() {
            indices[[q0 + i, slot]] = j as i64;
            distances[[q0 + i, slot]] = T::from_f64(dist);
        }
    }
}

/// The k nearest of queries `q0..q1`, given each one's dots against the pool
/// (`dots_of(i, out)` calls `out(j0, dots)` for query `q0 + i` with runs of
/// its dots against pool rows `j0..`, in pool order).
#[allow(clippy::too_many_arguments)]
fn select_rows<T: Real>(
    queries: ArrayView2<T>,
    pool: ArrayView2<T>,
    prep: &Prepared,
    q0: usize,
    q1: usize,
    k: usize,
    metric: Metric,
    dots_of: impl Fn(usize, &mut dyn FnMut(usize, &[T])) + Sync,
) -> Vec<Vec<(f64, usize)>> {
    let p_norms = &prep.p_norms;
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
                    let qn2 = qn.norm * qn.norm;
                    dots_of(i, &mut |j0, dots| {
                        let sq = &prep.p_squares[j0..j0 + dots.len()];
                        neg_approx.extend(
                            dots.iter()
                                .zip(sq)
                                .map(|(dot, p2)| 2.0 * dot.to_f64() - qn2 - p2),
                        );
                    });
                }
                Metric::Cosine => dots_of(i, &mut |j0, dots| {
                    let ns = &p_norms[j0..j0 + dots.len()];
                    neg_approx.extend(
                        dots.iter()
                            .zip(ns)
                            .map(|(dot, pn)| dot.to_f64() / (qn.norm * pn.norm) - 1.0),
                    );
                }),
            }
            let limit = -top_k_desc(neg_approx, 0, k)[k - 1].0 + margin(prep, qn.norm, metric);
            let exact: Vec<(f64, usize)> = neg_approx
                .iter()
                .enumerate()
                // NaN (an overflowed estimate) keeps the row: it is then judged exactly.
                .filter(|&(_, &a)| (-a).partial_cmp(&limit) != Some(std::cmp::Ordering::Greater))
                .map(|(j, _)| {
                    let dist = distance(queries.row(q), pool.row(j), qn, p_norms[j], metric);
                    (dist, j)
                })
                .collect();
            best_k(exact, k, rank_asc)
        })
        .collect()
}

/// How far beyond the approximate k-th distance a true k nearest row can lie:
/// twice the error of one approximate distance (the k-th's and the row's own).
/// Where `qn * min_p_norm` underflows the margin is infinite: every row is judged
/// exactly.
fn margin(prep: &Prepared, qn: f64, metric: Metric) -> f64 {
    let (gamma, eta, max_p) = (prep.gamma, prep.underflow, prep.max_p_norm);
    match metric {
        Metric::Euclidean => {
            2.0 * (2.0 * (gamma * qn * max_p + eta)) + 1e-13 * (qn * qn + max_p * max_p)
        }
        Metric::Cosine => 2.0 * (gamma + eta / (qn * prep.min_p_norm)) + 1e-13,
    }
}
