//! The narrow-row path: rows streamed in order, columns cut into stripes.
//!
//! Rows are read in blocks of about [`BLOCK_BYTES`], in order. The columns are
//! cut into stripes of a few cache lines; one task owns one stripe of the sums
//! table and adds the matching stripe of every row of the block into the row of
//! that row's class. A stripe of the sums table (classes x stripe width) stays
//! in cache while the block streams by. Each task reads a few cache lines of
//! every row: for narrow rows that is most of the row, for wide rows one page
//! per row, which is why wide rows take the by-class path instead.

use ndarray::ArrayView2;
use rayon::prelude::*;

use super::{prefetch_bytes, SumsPtr};
use crate::real::Real;
use crate::simd::Simd;

/// Target size of the feature rows read per block.
pub const BLOCK_BYTES: usize = 16 << 20;
/// Widest stripe, in columns (four cache lines of float32).
const MAX_STRIPE: usize = 128;
/// Narrowest stripe: one cache line of float32.
const MIN_STRIPE: usize = 16;
/// Largest sums stripe (classes x width x 8 bytes) a task should keep hot.
const STRIPE_CACHE_BYTES: usize = 16 << 20;
/// Rows ahead whose stripe is prefetched. A stripe of a row is a few cache
/// lines on a page of its own, so the hardware prefetchers (which follow a
/// stream within a page) cannot see the next one coming.
const PREFETCH_ROWS: usize = 6;

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
            prefetch_bytes(
                next,
                w * std::mem::size_of::<T>() * col_stride.unsigned_abs(),
            );
            prefetch_bytes(
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
/// `sums` must point to a table of at least `(max label + 1) x d` float64 that
/// no other thread touches in columns `c0..c1`, and `c1 <= d == block.ncols()`.
pub(super) unsafe fn add_stripe<T: Real>(
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

/// Add every row of `features` into `sums` (`n_classes x d`, row-major), one
/// block of rows at a time, each block's column stripes in parallel.
///
/// # Safety
/// `sums` holds `n_classes x d` float64 that nothing else touches during the
/// call, and every label lies in `[0, n_classes)`.
pub(super) unsafe fn add_by_stripes<T: Real>(
    simd: Simd,
    features: ArrayView2<T>,
    labels: &[i64],
    sums: SumsPtr,
    n_classes: usize,
) {
    let (n, d) = features.dim();
    let width = stripe_width(d, n_classes, rayon::current_num_threads());
    let stripes = d.div_ceil(width);
    let block_rows = (BLOCK_BYTES / (d * std::mem::size_of::<T>()).max(1)).max(1);
    let mut block_start = 0;
    while block_start < n {
        let block_end = (block_start + block_rows).min(n);
        let block = features.slice(ndarray::s![block_start..block_end, ..]);
        let block_labels = &labels[block_start..block_end];
        (0..stripes).into_par_iter().for_each(|s| {
            let c0 = s * width;
            let c1 = (c0 + width).min(d);
            // SAFETY: columns c0..c1 of every row of `sums` belong to this task
            // alone, and every label lies below n_classes (the caller's promise).
            unsafe { add_stripe(simd, block, block_labels, sums, d, c0, c1) };
        });
        block_start = block_end;
    }
}
