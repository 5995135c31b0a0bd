//! Tests of the nearest-neighbour kernel against brute force in float64.

use super::*;
use crate::simd::Simd;
use crate::test_rng::lcg;
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

fn brute(q: &Array2<f64>, p: &Array2<f64>, k: usize, metric: Metric) -> Vec<Vec<usize>> {
    q.outer_iter()
        .map(|qr| {
            let qn = qr.dot(&qr).sqrt();
            let mut all: Vec<(f64, usize)> = p
                .outer_iter()
                .enumerate()
                .map(|(j, pr)| {
                    let dist = match metric {
                        Metric::Euclidean => (&qr - &pr).mapv(|v| v * v).sum().sqrt(),
                        Metric::Cosine => 1.0 - qr.dot(&pr) / (qn * pr.dot(&pr).sqrt()),
                    };
                    (dist, j)
                })
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
        let got = nearest_neighbors_from_dots(q.view(), p.view(), dots.view(), 6, metric).unwrap();
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

#[test]
fn own_product_in_several_passes_and_pool_tiles() {
    // A pool wider than one tile; passes of 20 queries (fewer than a block),
    // of 512 (two blocks), and one pass.
    let (nq, m, d) = (600usize, 2 * POOL_TILE + 5, 8usize);
    let mut seed = 23u64;
    let q = Array2::from_shape_fn((nq, d), |_| lcg(&mut seed));
    let p = Array2::from_shape_fn((m, d), |_| lcg(&mut seed));
    let want = brute(&q, &p, 3, Metric::Euclidean);
    let row_bytes = m * std::mem::size_of::<f64>();
    for (level, pass) in Simd::available()
        .into_iter()
        .flat_map(|l| [(l, 20 * row_bytes), (l, 512 * row_bytes), (l, 1 << 30)])
    {
        let (idx, _) =
            nearest_neighbors_at(level, q.view(), p.view(), 3, Metric::Euclidean, pass).unwrap();
        for (row, w) in idx.outer_iter().zip(&want) {
            assert_eq!(
                row.iter().map(|&v| v as usize).collect::<Vec<_>>(),
                *w,
                "{level:?}"
            );
        }
    }
}

#[test]
fn tiny_rows_beside_rows_of_one_keep_their_order() {
    // float64 rows of 1e-200 beside rows of 1: squared differences of the tiny
    // rows underflow, so a plain sum of squares ties them all at zero.
    let mut seed = 29u64;
    let (d, tiny) = (16usize, 1e-200f64);
    let u = Array2::from_shape_fn((40, d), |_| lcg(&mut seed));
    let v = Array2::from_shape_fn((6, d), |_| lcg(&mut seed));
    let mut p = u.mapv(|x| x * tiny);
    p.push_row(ndarray::Array1::from_elem(d, 1.0).view())
        .unwrap();
    let q = v.mapv(|x| x * tiny);
    for metric in [Metric::Euclidean, Metric::Cosine] {
        // The same geometry at magnitude 1 (distances scale with the rows).
        let mut unscaled = u.clone();
        unscaled
            .push_row(ndarray::Array1::from_elem(d, 1e200).view())
            .unwrap();
        let want = brute(&v, &unscaled, 5, metric);
        for level in Simd::available() {
            let (idx, dist) =
                nearest_neighbors_at(level, q.view(), p.view(), 5, metric, 1 << 20).unwrap();
            for (i, (row, w)) in idx.outer_iter().zip(&want).enumerate() {
                assert_eq!(
                    row.iter().map(|&v| v as usize).collect::<Vec<_>>(),
                    *w,
                    "{metric:?}"
                );
                if metric == Metric::Euclidean {
                    let first = (&v.row(i) - &u.row(w[0])).mapv(|x| x * x).sum().sqrt() * tiny;
                    assert!((dist[[i, 0]] / first - 1.0).abs() < 1e-12);
                }
            }
        }
    }
}
