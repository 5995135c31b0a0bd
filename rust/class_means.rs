//! Per-class sums, counts and means of feature rows, in one streaming pass.
//!
//! Rows are taken in blocks of about [`BLOCK_BYTES`]. Inside a block the rows are
//! grouped by class with a counting sort, so each class's running float64 sum
//! stays in cache while its rows stream by (scattering rows straight into a
//! `C x d` table thrashes the cache once `C x d` is large). A class with many rows
//! in one block is cut into segments of [`SEGMENT_ROWS`] rows that are summed in
//! parallel and then added in order. Block and segment boundaries depend only on
//! the shapes, so the result is the same for every thread count.
//!
//! Memory beyond the `C x d` float64 sums: one `u32` per row of a block, one
//! offset per class, and `d` float64 per extra segment — a few tens of MiB at
//! most, whatever the number of rows.

use ndarray::{Array2, ArrayView1, ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;

use crate::error::{KernelError, Result};
use crate::real::Real;
use crate::validate::{first_non_finite_row, require_nonempty};

/// Target size of the feature rows read per block.
pub const BLOCK_BYTES: usize = 32 << 20;
/// Largest number of rows of one class summed by one task.
pub const SEGMENT_ROWS: usize = 256;
const MIN_BLOCK_ROWS: usize = 1024;
const MAX_BLOCK_ROWS: usize = 1 << 18;

/// Float64 sums and counts per class.
#[derive(Debug, Clone)]
pub struct ClassSums {
    /// `n_classes x d` sums of the rows of each class.
    pub sums: Array2<f64>,
    /// Number of rows of each class.
    pub counts: Vec<i64>,
}

/// `acc[j] += values[j]` in float64, written so that the compiler vectorises it
/// for whatever instruction set the caller enables.
#[inline(always)]
fn add_slice<T: Real>(acc: &mut [f64], values: &[T]) {
    for (a, &v) in acc.iter_mut().zip(values) {
        *a += v.to_f64();
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn add_slice_avx512<T: Real>(acc: &mut [f64], values: &[T]) {
    add_slice(acc, values)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn add_slice_avx2<T: Real>(acc: &mut [f64], values: &[T]) {
    add_slice(acc, values)
}

/// Add `row` to `acc` in float64, with the widest vectors the CPU has. The sum
/// of each element is the same sequence of additions whatever the vector width.
#[inline]
fn add_row<T: Real>(acc: &mut [f64], row: ArrayView1<T>) {
    match row.as_slice() {
        Some(values) => {
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports the enabled feature (checked above).
                    return unsafe { add_slice_avx512(acc, values) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: as above.
                    return unsafe { add_slice_avx2(acc, values) };
                }
            }
            add_slice(acc, values)
        }
        None => {
            for (a, &v) in acc.iter_mut().zip(row.iter()) {
                *a += v.to_f64();
            }
        }
    }
}

/// Ask the CPU to start loading `row` into cache. Rows of a class are scattered
/// through the block, so the hardware prefetcher cannot guess the next one.
#[inline]
fn prefetch_row<T: Real>(row: ArrayView1<T>) {
    #[cfg(target_arch = "x86_64")]
    if let Some(values) = row.as_slice() {
        let bytes = std::mem::size_of_val(values);
        let base = values.as_ptr() as *const i8;
        let mut offset = 0;
        while offset < bytes {
            // SAFETY: prefetch is a hint; the address lies inside the row's slice.
            unsafe {
                std::arch::x86_64::_mm_prefetch(base.add(offset), std::arch::x86_64::_MM_HINT_T0)
            };
            offset += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

/// How many rows ahead of the one being added to request from memory.
const PREFETCH_AHEAD: usize = 2;

/// Sum the rows `order[..]` (offset by `block_start`) into `acc`, loading the
/// next row while adding the current one.
#[inline]
fn sum_rows<T: Real>(acc: &mut [f64], features: ArrayView2<T>, block_start: usize, rows: &[u32]) {
    for &r in rows.iter().take(PREFETCH_AHEAD - 1) {
        prefetch_row(features.row(block_start + r as usize));
    }
    for (i, &r) in rows.iter().enumerate() {
        if let Some(&next) = rows.get(i + PREFETCH_AHEAD) {
            prefetch_row(features.row(block_start + next as usize));
        }
        add_row(acc, features.row(block_start + r as usize));
    }
}

/// A run of rows of one class inside a block: `order[start..end]`.
#[derive(Clone, Copy)]
struct Segment {
    class: usize,
    start: usize,
    end: usize,
    /// Whether the class has more than one segment in this block.
    shared: bool,
}

/// A pointer to the sums table that tasks write through, each to a row no other
/// task of the same phase touches.
#[derive(Clone, Copy)]
struct SumsPtr(*mut f64);
// SAFETY: tasks write disjoint rows (see `accumulate_block`).
unsafe impl Send for SumsPtr {}
unsafe impl Sync for SumsPtr {}

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
            message: "must be at least 1, found 0".into(),
        });
    }
    crate::validate::require_indices(labels, n_classes, "labels")?;
    if n > u32::MAX as usize {
        return Err(KernelError::Shape {
            arg: "features",
            message: format!("at most 2^32-1 rows, found {n}"),
        });
    }
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
    let row_bytes = d * std::mem::size_of::<T>();
    let block_rows = (BLOCK_BYTES / row_bytes.max(1)).clamp(MIN_BLOCK_ROWS, MAX_BLOCK_ROWS);

    let mut offsets = vec![0usize; n_classes + 1];
    let mut order = vec![0u32; block_rows.min(n)];
    let mut segments: Vec<Segment> = Vec::new();
    let mut block_start = 0;
    while block_start < n {
        let block_end = (block_start + block_rows).min(n);
        let block_labels = &labels[block_start..block_end];
        group_by_class(
            block_labels,
            &mut offsets,
            &mut order[..block_end - block_start],
        );
        segments.clear();
        for class in 0..n_classes {
            let (lo, hi) = (offsets[class], offsets[class + 1]);
            if hi == lo {
                continue;
            }
            counts[class] += (hi - lo) as i64;
            let shared = hi - lo > SEGMENT_ROWS;
            let mut s = lo;
            while s < hi {
                let e = (s + SEGMENT_ROWS).min(hi);
                segments.push(Segment {
                    class,
                    start: s,
                    end: e,
                    shared,
                });
                s = e;
            }
        }
        accumulate_block(
            features,
            block_start,
            &order[..block_end - block_start],
            &segments,
            sums,
            d,
        );
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

/// Counting sort of a block's rows by label: rows of class `c` end up in
/// `order[offsets[c]..offsets[c + 1]]`, in their original order.
fn group_by_class(block_labels: &[i64], offsets: &mut [usize], order: &mut [u32]) {
    offsets.fill(0);
    for &l in block_labels {
        offsets[l as usize + 1] += 1;
    }
    for c in 1..offsets.len() {
        offsets[c] += offsets[c - 1];
    }
    // `next` walks each class's slot forward; offsets stay as starts.
    let mut next: Vec<usize> = offsets[..offsets.len() - 1].to_vec();
    for (i, &l) in block_labels.iter().enumerate() {
        let slot = &mut next[l as usize];
        order[*slot] = i as u32;
        *slot += 1;
    }
}

fn accumulate_block<T: Real>(
    features: ArrayView2<T>,
    block_start: usize,
    order: &[u32],
    segments: &[Segment],
    sums: &mut [f64],
    d: usize,
) {
    let sums_ptr = SumsPtr(sums.as_mut_ptr());
    // Segments of a class that owns a single segment add straight into its row:
    // no other task touches that row. Segments of a shared class sum into a
    // private buffer that is added afterwards, in segment order.
    let partials: Vec<Option<Vec<f64>>> = segments
        .par_iter()
        .map(|seg| {
            let rows = &order[seg.start..seg.end];
            if seg.shared {
                let mut acc = vec![0.0f64; d];
                sum_rows(&mut acc, features, block_start, rows);
                Some(acc)
            } else {
                let ptr = sums_ptr;
                // SAFETY: `seg.class` has exactly one segment in this block, so this
                // task is the only writer of that row of `sums` during the phase.
                let acc = unsafe { std::slice::from_raw_parts_mut(ptr.0.add(seg.class * d), d) };
                sum_rows(acc, features, block_start, rows);
                None
            }
        })
        .collect();

    // Merge shared classes' partial sums, classes in parallel, segments in order.
    let mut shared_runs: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < segments.len() {
        if segments[i].shared {
            let class = segments[i].class;
            let start = i;
            while i < segments.len() && segments[i].class == class {
                i += 1;
            }
            shared_runs.push((start, i));
        } else {
            i += 1;
        }
    }
    shared_runs.par_iter().for_each(|&(start, end)| {
        let class = segments[start].class;
        let ptr = sums_ptr;
        // SAFETY: each run belongs to a distinct class, hence a distinct row.
        let acc = unsafe { std::slice::from_raw_parts_mut(ptr.0.add(class * d), d) };
        for part in partials[start..end].iter().flatten() {
            for (a, p) in acc.iter_mut().zip(part) {
                *a += p;
            }
        }
    });
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
            assert!(one
                .iter()
                .zip(other.iter())
                .all(|(a, b)| a.to_bits() == b.to_bits()));
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
