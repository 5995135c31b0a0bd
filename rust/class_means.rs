//! Per-class sums, counts and means of feature rows, in one streaming pass.
//!
//! Rows are read in blocks of about [`BLOCK_BYTES`], in order. The columns are
//! cut into stripes of a few cache lines; one task owns one stripe of the
//! float64 sums table and adds the matching stripe of every row of the block
//! into the row of that row's class. A stripe of the sums table (classes x
//! stripe width) stays in cache while the block streams by, so rows are read
//! sequentially at full memory bandwidth instead of being gathered class by
//! class, and the sums never thrash even when the whole `C x d` table is far
//! larger than the cache.
//!
//! Every element of the sums receives its rows in row order, one addition at a
//! time, whatever the stripe width, block size or number of threads: the result
//! is bitwise the plain sequential sum, and summing a matrix in consecutive
//! chunks into the same table gives the same bits as one call.
//!
//! Memory beyond the `C x d` float64 sums: none that grows with the rows.

use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;

use crate::error::{KernelError, Result};
use crate::real::Real;
use crate::simd::Simd;
use crate::validate::{first_non_finite_row, require_nonempty};

/// Target size of the feature rows read per block.
pub const BLOCK_BYTES: usize = 16 << 20;
/// Widest stripe, in columns (four cache lines of float32).
const MAX_STRIPE: usize = 128;
/// Narrowest stripe: one cache line of float32.
const MIN_STRIPE: usize = 16;
/// Largest sums stripe (classes x width x 8 bytes) a task should keep hot.
const STRIPE_CACHE_BYTES: usize = 16 << 20;

/// Float64 sums and counts per class.
#[derive(Debug, Clone)]
pub struct ClassSums {
    /// `n_classes x d` sums of the rows of each class.
    pub sums: Array2<f64>,
    /// Number of rows of each class.
    pub counts: Vec<i64>,
}

/// Rows ahead whose stripe is prefetched. A stripe of a row is a few cache
/// lines on a page of its own, so the hardware prefetchers (which follow a
/// stream within a page) cannot see the next one coming.
const PREFETCH_ROWS: usize = 6;

/// Ask for the cache lines of `bytes` bytes from `p` (a hint: no effect on results).
#[inline(always)]
unsafe fn prefetch_stripe<T>(p: *const T, bytes: usize) {
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

/// Add columns `c0..c1` of every row of `block` into the same columns of the
/// row of `sums` given by that row's label, in row order.
#[inline(always)]
unsafe fn add_stripe_generic<T: Real>(
    block: ArrayView2<T>,
    labels: &[i64],
    sums: SumsPtr,
    d: usize,
    c0: usize,
    c1: usize,
) {
    let w = c1 - c0;
    let (row_stride, col_stride) = (block.strides()[0], block.strides()[1]);
    let base = block.as_ptr();
    for (r, &label) in labels.iter().enumerate() {
        let acc = std::slice::from_raw_parts_mut(sums.0.add(label as usize * d + c0), w);
        let row = base.offset(r as isize * row_stride + c0 as isize * col_stride);
        if let Some(&next_label) = labels.get(r + PREFETCH_ROWS) {
            let next = row.offset(PREFETCH_ROWS as isize * row_stride);
            prefetch_stripe(
                next,
                w * std::mem::size_of::<T>() * col_stride.unsigned_abs(),
            );
            prefetch_stripe(
                sums.0.add(next_label as usize * d + c0) as *const T,
                w * std::mem::size_of::<f64>(),
            );
        }
        if col_stride == 1 {
            let values = std::slice::from_raw_parts(row, w);
            for (a, &v) in acc.iter_mut().zip(values) {
                *a += v.to_f64();
            }
        } else {
            for (j, a) in acc.iter_mut().enumerate() {
                *a += (*row.offset(j as isize * col_stride)).to_f64();
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn add_stripe_avx512<T: Real>(
    block: ArrayView2<T>,
    labels: &[i64],
    sums: SumsPtr,
    d: usize,
    c0: usize,
    c1: usize,
) {
    add_stripe_generic(block, labels, sums, d, c0, c1)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn add_stripe_avx2<T: Real>(
    block: ArrayView2<T>,
    labels: &[i64],
    sums: SumsPtr,
    d: usize,
    c0: usize,
    c1: usize,
) {
    add_stripe_generic(block, labels, sums, d, c0, c1)
}

/// [`add_stripe_generic`] compiled for the vector level `simd` (which the CPU
/// must have). Each element still receives its rows one addition at a time, in
/// row order, so every level gives the same bits.
///
/// # Safety
/// `sums` must point to a `labels.len()`-independent table of at least
/// `(max label + 1) x d` float64 that no other thread touches in columns
/// `c0..c1`, and `c1 <= d == block.ncols()`.
unsafe fn add_stripe<T: Real>(
    simd: Simd,
    block: ArrayView2<T>,
    labels: &[i64],
    sums: SumsPtr,
    d: usize,
    c0: usize,
    c1: usize,
) {
    match simd {
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => add_stripe_avx512(block, labels, sums, d, c0, c1),
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => add_stripe_avx2(block, labels, sums, d, c0, c1),
        _ => add_stripe_generic(block, labels, sums, d, c0, c1),
    }
}

/// A pointer to the sums table that tasks write through, each to a stripe of
/// columns no other task touches.
#[derive(Clone, Copy)]
struct SumsPtr(*mut f64);
// SAFETY: tasks write disjoint column stripes (see `accumulate_class_sums`).
unsafe impl Send for SumsPtr {}
unsafe impl Sync for SumsPtr {}

/// Columns per stripe: wide enough to read whole cache lines, narrow enough
/// that a stripe of the sums stays in cache, and enough stripes to keep every
/// thread busy. Any width gives the same result.
fn stripe_width(d: usize, n_classes: usize, threads: usize) -> usize {
    let mut width = MAX_STRIPE;
    while width > MIN_STRIPE
        && (n_classes * width * 8 > STRIPE_CACHE_BYTES || d.div_ceil(width) < 2 * threads)
    {
        width /= 2;
    }
    width.min(d.max(1))
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

    // Chosen once per call: every stripe of every block runs the same loop.
    let simd = Simd::current();
    let width = stripe_width(d, n_classes, rayon::current_num_threads());
    let stripes = d.div_ceil(width);
    let block_rows = (BLOCK_BYTES / (d * std::mem::size_of::<T>()).max(1)).max(1);
    let sums_ptr = SumsPtr(sums.as_mut_ptr());
    let mut block_start = 0;
    while block_start < n {
        let block_end = (block_start + block_rows).min(n);
        let block = features.slice(ndarray::s![block_start..block_end, ..]);
        let block_labels = &labels[block_start..block_end];
        (0..stripes).into_par_iter().for_each(|s| {
            let c0 = s * width;
            let c1 = (c0 + width).min(d);
            // SAFETY: columns c0..c1 of every row of `sums` belong to this task
            // alone, and every label was checked to be below n_classes.
            unsafe { add_stripe(simd, block, block_labels, sums_ptr, d, c0, c1) };
        });
        block_start = block_end;
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

    #[test]
    fn every_simd_level_gives_the_same_bits() {
        let (n, d, c) = (3_000usize, 77usize, 9usize);
        let mut seed = 5u64;
        let x = Array2::from_shape_fn((n, d), |_| lcg(&mut seed) as f32 * 1e4);
        let labels: Vec<i64> = (0..n).map(|i| ((i * 31) % c) as i64).collect();
        let run = |simd: Simd| {
            let mut sums = vec![0f64; c * d];
            let ptr = SumsPtr(sums.as_mut_ptr());
            for (c0, c1) in [(0, 16), (16, 64), (64, d)] {
                // SAFETY: one thread, labels below c, c1 <= d.
                unsafe { add_stripe(simd, x.view(), &labels, ptr, d, c0, c1) };
            }
            sums
        };
        let scalar = run(Simd::Scalar);
        for level in [Simd::Avx2, Simd::Avx512] {
            if level <= Simd::detected() {
                let other = run(level);
                assert!(same_bits(&scalar, &other));
            }
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
