//! Checks shared by the kernels.

use ndarray::ArrayView2;
use rayon::prelude::*;

use crate::error::{KernelError, Result};
use crate::real::Real;

/// Rows per piece when scanning a matrix in parallel.
const SCAN_ROWS: usize = 1024;

/// Index of the first row of `x` holding NaN or infinity, if any.
pub fn first_non_finite_row<T: Real>(x: ArrayView2<T>) -> Option<usize> {
    let n = x.nrows();
    let pieces = n.div_ceil(SCAN_ROWS);
    (0..pieces).into_par_iter().find_map_first(|p| {
        let start = p * SCAN_ROWS;
        let end = (start + SCAN_ROWS).min(n);
        (start..end).find(|&r| !row_is_finite(x.row(r)))
    })
}

#[inline]
pub fn row_is_finite<T: Real>(row: ndarray::ArrayView1<T>) -> bool {
    match row.as_slice() {
        Some(s) => s.iter().all(|v| v.is_finite()),
        None => row.iter().all(|v| v.is_finite()),
    }
}

/// Error naming `arg` and its first non-finite row.
pub fn require_finite<T: Real>(x: ArrayView2<T>, arg: &'static str) -> Result<()> {
    match first_non_finite_row(x) {
        Some(row) => Err(KernelError::NonFinite { arg, row }),
        None => Ok(()),
    }
}

/// Every entry of `values` must lie in `[0, bound)`.
pub fn require_indices(values: &[i64], bound: usize, arg: &'static str) -> Result<()> {
    match values
        .iter()
        .position(|&v| v < 0 || v as u64 >= bound as u64)
    {
        Some(row) => Err(KernelError::IndexOutOfRange {
            arg,
            row,
            value: values[row],
            bound,
        }),
        None => Ok(()),
    }
}

pub fn require_nonempty<T>(x: ArrayView2<T>, arg: &'static str) -> Result<()> {
    if x.nrows() == 0 || x.ncols() == 0 {
        return Err(KernelError::Shape {
            arg,
            message: format!(
                "expected a non-empty 2-d array, found shape ({}, {})",
                x.nrows(),
                x.ncols()
            ),
        });
    }
    Ok(())
}
