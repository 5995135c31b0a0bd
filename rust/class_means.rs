//! Per-class sums, counts and means of feature rows.
//!
//! Two ways through the rows, chosen by their width, give the same bits:
//!
//! * wide rows (at least [`WIDE_ROW_BYTES`]; d = 1,024 float32 and up) take
//!   [`by_class`]: the rows of a block are grouped by class and each task adds
//!   one class's rows, each read whole, into that class's sums row, which stays
//!   in cache;
//! * narrow rows take [`stripes`]: rows streamed in order, each task adding a
//!   stripe of columns of every row into a stripe of the sums table.
//!
//! Either way every element of the sums receives its rows in row order, one
//! addition at a time, whatever the piece widths, block sizes or number of
//! threads: the result is bitwise the plain sequential sum, and summing a
//! matrix in consecutive chunks into the same table gives the same bits as one
//! call.
//!
//! Memory beyond the `C x d` float64 sums: for wide rows the block's row order
//! (four bytes per row, at most 16 MiB) and the class offsets; for narrow rows
//! none.

mod by_class;
mod stripes;

use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;

use crate::error::{KernelError, Result};
use crate::real::Real;
use crate::simd::Simd;
use crate::validate::{first_non_finite_row, require_nonempty};

pub use by_class::BLOCK_ROWS;
pub use stripes::BLOCK_BYTES;

/// Rows at least this wide take the by-class path. Measured on 2 cores
/// (benches/README.md): by class is faster at 4 KiB and 8 KiB rows
/// (d = 1,024 and 2,048 float32), stripes at 2 KiB rows (d = 512).
pub const WIDE_ROW_BYTES: usize = 4096;

/// Float64 sums and counts per class.
#[derive(Debug, Clone)]
pub struct ClassSums {
    /// `n_classes x d` sums of the rows of each class.
    pub sums: Array2<f64>,
    /// Number of rows of each class.
    pub counts: Vec<i64>,
}

/// Ask for the cache lines of `bytes` bytes from `p` (a hint: no effect on results).
#[inline(always)]
unsafe fn prefetch_bytes<T>(p: *const T, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = p as *const i8;
        let mut off = 0;
        while off < bytes {
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off));
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, bytes);
}

/// A pointer to the sums table that tasks write through, each to a part no
/// other task touches.
#[derive(Clone, Copy)]
struct SumsPtr(*mut f64);
// SAFETY: tasks write disjoint parts of the table (see each path).
unsafe impl Send for SumsPtr {}
unsafe impl Sync for SumsPtr {}

impl SumsPtr {
    /// The piece's columns of its class's row of the `? x d` table.
    ///
    /// # Safety
    /// The range lies in the table and no other live slice overlaps it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn piece(&self, d: usize, p: &by_class::Piece) -> &mut [f64] {
        std::slice::from_raw_parts_mut(self.0.add(p.class * d + p.c0), p.c1 - p.c0)
    }
}

/// Per-class float64 sums and counts of the rows of `features`.
///
/// `labels[i]` is the class of row `i` and must lie in `[0, n_classes)`. Errors
/// name the argument: shape mismatches, empty input, labels out of range (first
/// offending entry), NaN or infinity in `features` (first offending row).
pub fn class_sums<T: Real>(
    features: ArrayView2<T>,
    labels: &[i64],
    n_classes: usize,
) -> Result<ClassSums> {
    let d = features.ncols();
    let mut sums = Array2::<f64>::zeros((n_classes, d));
    let mut counts = vec![0i64; n_classes];
    accumulate_class_sums(features, labels, sums.view_mut(), &mut counts)?;
    Ok(ClassSums { sums, counts })
}

/// Add the rows of `features` to the running per-class `sums` and `counts`
/// (`n_classes` is `sums.nrows()`). Lets callers stream chunks of one data set,
/// or supply buffers from their own allocator. On an error about the values of
/// `features` (NaN, overflow) the accumulators hold partial sums.
pub fn accumulate_class_sums<T: Real>(
    features: ArrayView2<T>,
    labels: &[i64],
    mut sums: ArrayViewMut2<f64>,
    counts: &mut [i64],
) -> Result<()> {
    let n_classes = sums.nrows();
    require_nonempty(features, "features")?;
    let (n, d) = features.dim();
    if labels.len() != n {
        return Err(KernelError::Shape {
            arg: "labels",
            message: format!(
                "expected {n} labels (one per row of features), found {}",
                labels.len()
            ),
        });
    }
    if n_classes == 0 {
        return Err(KernelError::Value {
            arg: "n_classes",
            row: None,
            message: "must be at least 1, found 0".into(),
        });
    }
    crate::validate::require_indices(labels, n_classes, "labels")?;
    if sums.ncols() != d || counts.len() != n_classes {
        return Err(KernelError::Shape {
            arg: "sums",
            message: format!(
                "expected ({n_classes}, {d}) sums and {n_classes} counts, found {:?} and {}",
                sums.dim(),
                counts.len()
            ),
        });
    }
    let Some(sums) = sums.as_slice_mut() else {
        return Err(KernelError::Shape {
            arg: "sums",
            message: "expected a C-contiguous array".into(),
        });
    };
    for &l in labels {
        counts[l as usize] += 1;
    }

    let simd = Simd::current();
    let table = SumsPtr(sums.as_mut_ptr());
    // SAFETY: `sums` is n_classes x d and borrowed mutably for the call; every
    // label was checked to be below n_classes.
    unsafe {
        if d * std::mem::size_of::<T>() >= WIDE_ROW_BYTES {
            by_class::add_by_class(simd, features, labels, table, n_classes, BLOCK_ROWS);
        } else {
            stripes::add_by_stripes(simd, features, labels, table, n_classes);
        }
    }

    if sums.iter().any(|v| !v.is_finite()) {
        return Err(match first_non_finite_row(features) {
            Some(row) => KernelError::NonFinite {
                arg: "features",
                row,
            },
            None => KernelError::Overflow { arg: "features" },
        });
    }
    Ok(())
}

/// Per-class means (in the features' type) and counts.
///
/// Means are accumulated in float64. A class with no rows gets count 0 and a row
/// of NaN.
pub fn class_means<T: Real>(
    features: ArrayView2<T>,
    labels: &[i64],
    n_classes: usize,
) -> Result<(Array2<T>, Vec<i64>)> {
    let ClassSums { sums, counts } = class_sums(features, labels, n_classes)?;
    let mut means = Array2::<T>::default(sums.dim());
    means_from_sums(sums.view(), &counts, means.view_mut());
    Ok((means, counts))
}

/// `out[c] = sums[c] / counts[c]` in the output's type; NaN rows where a count is 0.
pub fn means_from_sums<T: Real>(sums: ArrayView2<f64>, counts: &[i64], mut out: ArrayViewMut2<T>) {
    assert_eq!(sums.dim(), out.dim(), "sums and out differ in shape");
    assert_eq!(sums.nrows(), counts.len(), "one count per row of sums");
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(sums.axis_iter(Axis(0)).into_par_iter())
        .zip(counts.par_iter())
        .for_each(|((mut row, sum), &count)| {
            if count == 0 {
                row.fill(T::from_f64(f64::NAN));
            } else {
                let c = count as f64;
                for (o, &s) in row.iter_mut().zip(sum.iter()) {
                    *o = T::from_f64(s / c);
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
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

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64) / ((1u64 << 53) as f64) - 0.5
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
}
