//! Rebuild classifier rows as linear combinations of original rows.

use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;

use crate::error::Result;
use crate::real::Real;
use crate::validate::check_combine_args;

/// A copy of `weight` in which row `targets[t]` becomes
/// `alphas[t, 0] * W[targets[t]] + sum_i alphas[t, i] * W[neighbors[t, i - 1]]`,
/// every term read from the original `weight`. Accumulated in float64.
///
/// `neighbors` is `F x k`, `alphas` is `F x (k + 1)`, `targets` has `F` distinct
/// entries.
pub fn combine<T: Real>(
    weight: ArrayView2<T>,
    targets: &[i64],
    neighbors: ArrayView2<i64>,
    alphas: ArrayView2<f64>,
) -> Result<Array2<T>> {
    let mut out = Array2::<T>::default(weight.dim());
    combine_into(weight, targets, neighbors, alphas, out.view_mut())?;
    Ok(out)
}

/// [`combine`] writing into `out` (same shape as `weight`, any layout), so that
/// callers can supply memory from their own allocator.
pub fn combine_into<T: Real>(
    weight: ArrayView2<T>,
    targets: &[i64],
    neighbors: ArrayView2<i64>,
    alphas: ArrayView2<f64>,
    mut out: ArrayViewMut2<T>,
) -> Result<()> {
    let slot_of = check_combine_args(weight, targets, neighbors, alphas, out.dim())?;
    let k = neighbors.ncols();

    // One parallel pass over the output rows: a copy, or a combination of
    // original rows. Each output row is written by exactly one task.
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(row, mut dst)| {
            let t = slot_of[row];
            if t == usize::MAX {
                dst.assign(&weight.row(row));
                return;
            }
            let a0 = alphas[[t, 0]];
            let mut acc: Vec<f64> = weight.row(row).iter().map(|v| a0 * v.to_f64()).collect();
            for i in 0..k {
                let a = alphas[[t, i + 1]];
                let src = weight.row(neighbors[[t, i]] as usize);
                for (o, &v) in acc.iter_mut().zip(src.iter()) {
                    *o += a * v.to_f64();
                }
            }
            for (o, v) in dst.iter_mut().zip(acc) {
                *o = T::from_f64(v);
            }
        });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::KernelError;
    use ndarray::array;

    #[test]
    fn combines_from_the_original_rows() {
        let w = array![[1.0f32, 0.0], [0.0, 1.0], [2.0, 2.0]];
        // Row 0 uses row 1 and row 1 uses row 0: both must read the originals.
        let out = combine(
            w.view(),
            &[0, 1],
            array![[1], [0]].view(),
            array![[1.0, 0.5], [2.0, -1.0]].view(),
        )
        .unwrap();
        assert_eq!(out, array![[1.0f32, 0.5], [-1.0, 2.0], [2.0, 2.0]]);
        assert_eq!(w, array![[1.0f32, 0.0], [0.0, 1.0], [2.0, 2.0]]);
    }

    #[test]
    fn bad_input() {
        let w = array![[1.0f64, 0.0], [0.0, 1.0]];
        let n = array![[1i64], [0]];
        let a = array![[1.0, 0.5], [1.0, 0.5]];
        assert!(matches!(
            combine(w.view(), &[0, 0], n.view(), a.view()),
            Err(KernelError::Value { arg: "targets", .. })
        ));
        assert!(matches!(
            combine(w.view(), &[0, 2], n.view(), a.view()),
            Err(KernelError::IndexOutOfRange {
                arg: "targets",
                row: 1,
                ..
            })
        ));
        let bad_n = array![[1i64], [7]];
        assert!(matches!(
            combine(w.view(), &[0, 1], bad_n.view(), a.view()),
            Err(KernelError::IndexOutOfRange {
                arg: "neighbors",
                row: 1,
                ..
            })
        ));
        assert!(matches!(
            combine(w.view(), &[0, 1], n.view(), array![[1.0], [1.0]].view()),
            Err(KernelError::Shape { arg: "alphas", .. })
        ));
        let nan = array![[1.0, f64::NAN], [1.0, 0.5]];
        assert_eq!(
            combine(w.view(), &[0, 1], n.view(), nan.view()).unwrap_err(),
            KernelError::NonFinite {
                arg: "alphas",
                row: 0
            }
        );
    }
}
