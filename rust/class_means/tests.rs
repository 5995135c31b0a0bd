//! Tests of the class-means kernels against plain float64 sums.

use super::*;
use crate::test_rng::lcg;
use ndarray::{array, Array2};

fn reference(x: &Array2<f64>, labels: &[i64], c: usize) -> (Array2<f64>, Vec<i64>) {
    let d = x.ncols();
    let mut sums = Array2::<f64>::zeros((c, d));
    let mut counts = vec![0i64; c];
    for (i, &l) in labels.iter().enumerate() {
        counts[l as usize] += 1;
        for j in 0..d {
            sums[[l as usize, j]] += x[[i, j]];
        }
    }
    for k in 0..c {
        for j in 0..d {
            sums[[k, j]] = if counts[k] == 0 {
                f64::NAN
            } else {
                sums[[k, j]] / counts[k] as f64
            };
        }
    }
    (sums, counts)
}

/// Whether two sequences of floats are the same to the bit.
fn same_bits<'a>(
    a: impl IntoIterator<Item = &'a f64>,
    b: impl IntoIterator<Item = &'a f64>,
) -> bool {
    a.into_iter()
        .zip(b)
        .all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn small_example() {
    let x = array![[1.0f32, 2.0], [3.0, 4.0], [10.0, 20.0]];
    let (m, c) = class_means(x.view(), &[0, 0, 2], 3).unwrap();
    assert_eq!(c, vec![2, 0, 1]);
    assert_eq!(m.row(0).to_vec(), vec![2.0, 3.0]);
    assert!(m.row(1).iter().all(|v| v.is_nan()));
    assert_eq!(m.row(2).to_vec(), vec![10.0, 20.0]);
}

#[test]
fn matches_reference_across_blocks_and_segments() {
    // Enough rows for several blocks, one dominant class so that it is split
    // into shared segments, and one empty class.
    let (n, d, c) = (300_000usize, 33usize, 7usize);
    let mut seed = 7u64;
    let x = Array2::from_shape_fn((n, d), |_| lcg(&mut seed));
    let labels: Vec<i64> = (0..n)
        .map(|i| if i % 3 == 0 { 2 } else { (i % 6) as i64 })
        .collect();
    let (m, counts) = class_means(x.view(), &labels, c).unwrap();
    let (rm, rc) = reference(&x, &labels, c);
    assert_eq!(counts, rc);
    for (a, b) in m.iter().zip(rm.iter()) {
        assert!(
            (a.is_nan() && b.is_nan()) || (a - b).abs() < 1e-12,
            "{a} vs {b}"
        );
    }
}

#[test]
fn bitwise_the_sequential_sum_and_chunking_does_not_matter() {
    let (n, d, c) = (9_000usize, 70usize, 13usize);
    let mut seed = 21u64;
    let x = Array2::from_shape_fn((n, d), |_| lcg(&mut seed) as f32 * 100.0);
    let labels: Vec<i64> = (0..n).map(|i| ((i * 7919) % c) as i64).collect();
    let mut plain = Array2::<f64>::zeros((c, d));
    for (i, &l) in labels.iter().enumerate() {
        for j in 0..d {
            plain[[l as usize, j]] += x[[i, j]] as f64;
        }
    }
    let whole = class_sums(x.view(), &labels, c).unwrap();
    assert!(same_bits(&whole.sums, &plain));
    let mut sums = Array2::<f64>::zeros((c, d));
    let mut counts = vec![0i64; c];
    for (lo, hi) in [(0, 1234), (1234, 1235), (1235, n)] {
        let part = x.slice(ndarray::s![lo..hi, ..]);
        accumulate_class_sums(part, &labels[lo..hi], sums.view_mut(), &mut counts).unwrap();
    }
    assert_eq!(counts, whole.counts);
    assert!(same_bits(&sums, &plain));
}

/// The plain sequential float64 sum of the rows of each class.
fn plain_sums(x: &Array2<f32>, labels: &[i64], c: usize) -> Array2<f64> {
    let mut plain = Array2::<f64>::zeros((c, x.ncols()));
    for (i, &l) in labels.iter().enumerate() {
        for j in 0..x.ncols() {
            plain[[l as usize, j]] += x[[i, j]] as f64;
        }
    }
    plain
}

/// Both paths' sums of the rows of `x`, on `threads` threads.
fn both_paths(x: &Array2<f32>, labels: &[i64], c: usize, threads: usize) -> [Vec<f64>; 2] {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let d = x.ncols();
    pool.install(|| {
        let mut by_rows = vec![0f64; c * d];
        let mut by_stripes = vec![0f64; c * d];
        // SAFETY: c x d tables, labels below c.
        unsafe {
            let t = SumsPtr(by_rows.as_mut_ptr());
            by_class::add_by_class(Simd::current(), x.view(), labels, t, c, 997);
            let t = SumsPtr(by_stripes.as_mut_ptr());
            stripes::add_by_stripes(Simd::current(), x.view(), labels, t, c);
        }
        [by_rows, by_stripes]
    })
}

#[test]
fn both_paths_give_the_plain_sum_at_any_thread_count() {
    // Wide (above WIDE_ROW_BYTES, not a multiple of 16 columns) and narrow
    // rows; one class with most rows, so that it is cut into column pieces.
    for (n, d) in [(3_000usize, 2_100usize), (5_000, 40)] {
        let c = 6;
        let mut seed = 13u64 + d as u64;
        let x = Array2::from_shape_fn((n, d), |_| lcg(&mut seed) as f32 * 1e3);
        let labels: Vec<i64> = (0..n)
            .map(|i| if i % 7 == 0 { (i % 5) as i64 } else { 3 })
            .collect();
        let plain = plain_sums(&x, &labels, c);
        for threads in [1, 2, 3, 8] {
            for sums in both_paths(&x, &labels, c, threads) {
                assert!(same_bits(&sums, &plain), "n={n} d={d} threads={threads}");
            }
        }
    }
}

#[test]
fn every_simd_level_gives_the_same_bits() {
    let (n, d, c) = (3_000usize, 77usize, 9usize);
    let mut seed = 5u64;
    let x = Array2::from_shape_fn((n, d), |_| lcg(&mut seed) as f32 * 1e4);
    let labels: Vec<i64> = (0..n).map(|i| ((i * 31) % c) as i64).collect();
    let rows = by_class::RowsByClass::new(&labels, c);
    let run = |simd: Simd| {
        let mut stripe_sums = vec![0f64; c * d];
        let ptr = SumsPtr(stripe_sums.as_mut_ptr());
        let mut class_sums = vec![0f64; c * d];
        for (c0, c1) in [(0, 16), (16, 64), (64, d)] {
            // SAFETY: one thread, labels below c, c1 <= d.
            unsafe { stripes::add_stripe(simd, x.view(), &labels, ptr, d, c0, c1) };
            for (class, acc) in class_sums.chunks_mut(d).enumerate() {
                // SAFETY: rows of x, c1 <= d.
                unsafe {
                    by_class::add_rows(simd, x.view(), rows.rows(class), &mut acc[c0..c1], c0)
                };
            }
        }
        [stripe_sums, class_sums]
    };
    let [scalar, scalar_by_class] = run(Simd::Scalar);
    assert!(same_bits(&scalar, &scalar_by_class));
    for level in [Simd::Avx2, Simd::Avx512] {
        if level <= Simd::detected() {
            for other in run(level) {
                assert!(same_bits(&scalar, &other));
            }
        }
    }
}

#[test]
fn rows_by_class_is_a_stable_grouping() {
    let labels = [2i64, 0, 2, 1, 0, 2];
    let rows = by_class::RowsByClass::new(&labels, 4);
    assert_eq!(rows.rows(0), &[1, 4]);
    assert_eq!(rows.rows(1), &[3]);
    assert_eq!(rows.rows(2), &[0, 2, 5]);
    assert!(rows.rows(3).is_empty());
}

#[test]
fn pieces_cover_every_class_and_column_once() {
    // One class with most of the rows, a few small ones, one empty.
    let mut labels = vec![0i64; 100_000];
    for (i, l) in labels.iter_mut().enumerate().take(300) {
        *l = 1 + (i % 3) as i64;
    }
    let rows = by_class::RowsByClass::new(&labels, 5);
    for (d, threads) in [(2048usize, 2usize), (3000, 8), (16, 1), (5000, 64)] {
        let ps = by_class::pieces(&rows, d, threads);
        let mut seen = vec![0u8; 5 * d];
        for p in &ps {
            assert!(p.c0 < p.c1 && p.c1 <= d);
            for j in p.c0..p.c1 {
                seen[p.class * d + j] += 1;
            }
        }
        for class in 0..5 {
            let want = u8::from(!rows.rows(class).is_empty());
            assert!(seen[class * d..(class + 1) * d].iter().all(|&s| s == want));
        }
        // The big class is cut where it is wide enough to be.
        let big = ps.iter().filter(|p| p.class == 0).count();
        assert_eq!(big > 1, d >= 2048, "d = {d}");
    }
}

#[test]
fn block_size_does_not_change_a_bit() {
    let (n, d, c) = (5_000usize, 600usize, 6usize);
    let mut seed = 9u64;
    let x = Array2::from_shape_fn((n, d), |_| lcg(&mut seed) as f32 * 1e3);
    let labels: Vec<i64> = (0..n)
        .map(|i| if i % 5 == 0 { 4 } else { (i % 3) as i64 })
        .collect();
    let run = |block_rows| {
        let mut sums = vec![0f64; c * d];
        // SAFETY: a c x d table, labels below c.
        unsafe {
            let t = SumsPtr(sums.as_mut_ptr());
            by_class::add_by_class(Simd::current(), x.view(), &labels, t, c, block_rows);
        }
        sums
    };
    let plain = plain_sums(&x, &labels, c);
    for block_rows in [1, 7, 1000, 4999, n] {
        assert!(same_bits(&plain, &run(block_rows)));
    }
}

#[test]
fn same_bits_for_any_thread_count() {
    let (n, d, c) = (50_000usize, 17usize, 5usize);
    let mut seed = 3u64;
    let x = Array2::from_shape_fn((n, d), |_| lcg(&mut seed) as f32 * 1e3);
    let labels: Vec<i64> = (0..n).map(|i| ((i * i) % c) as i64).collect();
    let run = |threads| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| class_sums(x.view(), &labels, c).unwrap().sums)
    };
    let one = run(1);
    for threads in [2, 3, 8] {
        let other = run(threads);
        assert!(same_bits(&one, &other));
    }
}

#[test]
fn strided_and_fortran_views_agree() {
    let mut seed = 11u64;
    let x = Array2::from_shape_fn((2000, 12), |_| lcg(&mut seed));
    let labels: Vec<i64> = (0..1000).map(|i| (i % 4) as i64).collect();
    let step = x.slice(ndarray::s![..;2, ..]);
    let f_order = step.t().to_owned().reversed_axes();
    let (a, _) = class_means(step, &labels, 4).unwrap();
    let (b, _) = class_means(f_order.view(), &labels, 4).unwrap();
    assert_eq!(a, b);
}

#[test]
fn errors_name_the_argument() {
    let x = array![[1.0f64, 2.0], [f64::NAN, 0.0]];
    let e = class_means(x.view(), &[0, 1], 2).unwrap_err();
    assert_eq!(
        e,
        KernelError::NonFinite {
            arg: "features",
            row: 1
        }
    );
    let x = array![[1.0f64, 2.0], [1.0, 0.0]];
    let e = class_means(x.view(), &[0, 5], 2).unwrap_err();
    assert_eq!(
        e,
        KernelError::IndexOutOfRange {
            arg: "labels",
            row: 1,
            value: 5,
            bound: 2
        }
    );
    assert!(matches!(
        class_means(x.view(), &[0], 2),
        Err(KernelError::Shape { arg: "labels", .. })
    ));
    let empty = Array2::<f64>::zeros((0, 3));
    assert!(matches!(
        class_means(empty.view(), &[], 2),
        Err(KernelError::Shape {
            arg: "features",
            ..
        })
    ));
    let huge = array![[f64::MAX], [f64::MAX]];
    assert_eq!(
        class_means(huge.view(), &[0, 0], 1).unwrap_err(),
        KernelError::Overflow { arg: "features" }
    );
}
