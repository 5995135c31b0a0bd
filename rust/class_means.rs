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
    check_sums_args(features, labels, sums.dim(), counts.len())?;
    let d = features.ncols();
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

/// The arguments of [`accumulate_class_sums`]: non-empty features, one label
/// per row, each in `[0, n_classes)`, accumulators of the matching shapes.
fn check_sums_args<T: Real>(
    features: ArrayView2<T>,
    labels: &[i64],
    sums_dim: (usize, usize),
    counts_len: usize,
) -> Result<()> {
    let n_classes = sums_dim.0;
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
    if sums_dim.1 != d || counts_len != n_classes {
        return Err(KernelError::Shape {
            arg: "sums",
            message: format!(
                "expected ({n_classes}, {d}) sums and {n_classes} counts, found {:?} and {}",
                sums_dim, counts_len
            ),
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
mod tests;
