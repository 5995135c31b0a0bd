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
///
/// The error reports the value that failed the check, read once: the array may be
/// a view that another thread writes to, and a second read could see a valid one.
pub fn require_indices(values: &[i64], bound: usize, arg: &'static str) -> Result<()> {
    match values
        .iter()
        .copied()
        .enumerate()
        .find(|&(_, v)| v < 0 || v as u64 >= bound as u64)
    {
        Some((row, value)) => Err(KernelError::IndexOutOfRange {
            arg,
            row,
            value,
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

/// The arguments of `topk_scores`: non-empty, matching shapes, `1 <= k <= C`,
/// finite `W` and `b` (the features are checked block by block as they are read).
pub fn check_topk_args<T: Real>(
    features: ArrayView2<T>,
    weight: ArrayView2<T>,
    bias: Option<&[T]>,
    k: usize,
) -> Result<()> {
    require_nonempty(features, "features")?;
    require_nonempty(weight, "W")?;
    let (d, c) = (features.ncols(), weight.nrows());
    if weight.ncols() != d {
        return Err(KernelError::Shape {
            arg: "W",
            message: format!(
                "expected {d} columns (as features), found {}",
                weight.ncols()
            ),
        });
    }
    if let Some(b) = bias {
        if b.len() != c {
            return Err(KernelError::Shape {
                arg: "b",
                message: format!("expected {c} entries (rows of W), found {}", b.len()),
            });
        }
        if let Some(row) = b.iter().position(|v| !v.is_finite()) {
            return Err(KernelError::NonFinite { arg: "b", row });
        }
    }
    if k == 0 || k > c {
        return Err(KernelError::Value {
            arg: "k",
            row: None,
            message: format!("expected 1 <= k <= {c} (rows of W), found {k}"),
        });
    }
    require_finite(weight, "W")
}

/// The arguments of `combine`: shapes that agree, indices within `W`, distinct
/// targets, finite `alphas` and `W`. Returns, for each class, the entry of
/// `targets` that rewrites it (`usize::MAX` for none).
pub fn check_combine_args<T: Real>(
    weight: ArrayView2<T>,
    targets: &[i64],
    neighbors: ArrayView2<i64>,
    alphas: ArrayView2<f64>,
    out_dim: (usize, usize),
) -> Result<Vec<usize>> {
    require_nonempty(weight, "W")?;
    let c = weight.nrows();
    let f = targets.len();
    let k = neighbors.ncols();
    if out_dim != weight.dim() {
        return Err(KernelError::Shape {
            arg: "out",
            message: format!(
                "expected shape {:?} (as W), found {:?}",
                weight.dim(),
                out_dim
            ),
        });
    }
    if neighbors.nrows() != f {
        return Err(KernelError::Shape {
            arg: "neighbors",
            message: format!(
                "expected {f} rows (one per target), found {}",
                neighbors.nrows()
            ),
        });
    }
    if alphas.dim() != (f, k + 1) {
        return Err(KernelError::Shape {
            arg: "alphas",
            message: format!("expected shape ({f}, {}), found {:?}", k + 1, alphas.dim()),
        });
    }
    require_indices(targets, c, "targets")?;
    let flat_neighbors: Vec<i64> = neighbors.iter().cloned().collect();
    require_indices(&flat_neighbors, c, "neighbors").map_err(|e| match e {
        // Report the row of the neighbours table, not the flat position.
        KernelError::IndexOutOfRange {
            arg,
            row,
            value,
            bound,
        } => KernelError::IndexOutOfRange {
            arg,
            row: row / k.max(1),
            value,
            bound,
        },
        other => other,
    })?;
    let slot_of = slots_of_targets(targets, c)?;
    require_finite(alphas, "alphas")?;
    require_finite(weight, "W")?;
    Ok(slot_of)
}

/// `slot_of[class]`: the entry of `targets` that rewrites the class
/// (`usize::MAX` for none); an error names a class that appears twice.
fn slots_of_targets(targets: &[i64], c: usize) -> Result<Vec<usize>> {
    let mut slot_of = vec![usize::MAX; c];
    for (t, &target) in targets.iter().enumerate() {
        let slot = &mut slot_of[target as usize];
        if *slot != usize::MAX {
            return Err(KernelError::Value {
                arg: "targets",
                row: Some(t),
                message: format!(
                    "class {target} appears twice (entries {} and {t}); targets must be distinct",
                    *slot
                ),
            });
        }
        *slot = t;
    }
    Ok(slot_of)
}

/// The largest Euclidean norm of a row of `x`, computed without overflow or
/// underflow (each row is scaled by its largest magnitude first), rounded up
/// slightly so that it bounds the true value.
pub fn max_row_norm<T: Real>(x: ArrayView2<T>) -> f64 {
    let n = x.nrows();
    let norm_of = |r: usize| {
        let row = x.row(r);
        let top = row.iter().fold(0.0f64, |m, v| m.max(v.to_f64().abs()));
        if top == 0.0 || !top.is_finite() {
            return top;
        }
        let sum: f64 = row.iter().map(|v| (v.to_f64() / top).powi(2)).sum();
        top * sum.sqrt()
    };
    let max = (0..n.div_ceil(SCAN_ROWS))
        .into_par_iter()
        .map(|p| {
            (p * SCAN_ROWS..((p + 1) * SCAN_ROWS).min(n)).fold(0.0f64, |m, r| m.max(norm_of(r)))
        })
        .reduce(|| 0.0, f64::max);
    max * (1.0 + 4.0 * (x.ncols() as f64 + 2.0) * f64::EPSILON)
}

/// Total physical memory of the machine, in bytes (unbounded where unknown).
pub fn physical_memory() -> u128 {
    #[cfg(unix)]
    {
        // SAFETY: sysconf only reads system configuration.
        let (pages, size) = unsafe {
            (
                libc::sysconf(libc::_SC_PHYS_PAGES),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        if pages > 0 && size > 0 {
            return pages as u128 * size as u128;
        }
    }
    u128::MAX
}

/// Outputs sized by the arguments must fit in memory before anything is
/// allocated: `parts` are `(elements, bytes per element)` pairs whose sum is
/// the allocation, `what` says what it is for in the error.
pub fn require_allocatable(
    arg: &'static str,
    what: String,
    parts: &[(&[usize], usize)],
) -> Result<()> {
    let limit = isize::MAX as u128;
    let total = parts.iter().try_fold(0u128, |acc, (dims, bytes)| {
        let n = dims
            .iter()
            .try_fold(*bytes as u128, |n, &d| n.checked_mul(d as u128))?;
        acc.checked_add(n)
    });
    match total {
        Some(bytes) if bytes <= limit => {
            let memory = physical_memory();
            if bytes > memory {
                return Err(KernelError::TooLarge {
                    arg,
                    what,
                    bytes: Some(bytes),
                    limit: memory,
                });
            }
            Ok(())
        }
        _ => Err(KernelError::TooLarge {
            arg,
            what,
            bytes: None,
            limit,
        }),
    }
}

/// The largest magnitude in `x` (NaN ignored), read in parallel pieces.
pub fn max_abs<T: Real>(x: ArrayView2<T>) -> f64 {
    let n = x.nrows();
    (0..n.div_ceil(SCAN_ROWS))
        .into_par_iter()
        .map(|p| {
            x.slice(ndarray::s![p * SCAN_ROWS..((p + 1) * SCAN_ROWS).min(n), ..])
                .iter()
                .fold(0.0f64, |m, v| m.max(v.to_f64().abs()))
        })
        .reduce(|| 0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn row_norms_do_not_overflow_and_bound_the_true_value() {
        let x = array![[3e300f64, 4e300], [1.0, 0.0]];
        let n = max_row_norm(x.view());
        assert!((5e300..5e300 * (1.0 + 1e-12)).contains(&n));
        assert_eq!(max_abs(x.view()), 4e300);
        assert_eq!(max_row_norm(array![[0.0f32, 0.0]].view()), 0.0);
    }

    #[test]
    fn allocations_are_checked_before_they_happen() {
        assert!(require_allocatable("k", "a".into(), &[(&[10, 10], 8)]).is_ok());
        let overflow = require_allocatable("k", "a".into(), &[(&[usize::MAX, 2], 8)]);
        assert!(matches!(
            overflow,
            Err(KernelError::TooLarge { bytes: None, .. })
        ));
        let beyond = require_allocatable("k", "a".into(), &[(&[1 << 40, 1 << 20], 1)]);
        assert!(beyond.is_err());
    }
}
