//! Rebuild classifier rows as linear combinations of original rows.

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use crate::error::{KernelError, Result};
use crate::real::Real;
use crate::validate::{require_finite, require_indices, require_nonempty};

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
    require_nonempty(weight, "W")?;
    let c = weight.nrows();
    let f = targets.len();
    let k = neighbors.ncols();
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
    let mut seen = vec![usize::MAX; c];
    for (t, &target) in targets.iter().enumerate() {
        let slot = &mut seen[target as usize];
        if *slot != usize::MAX {
            return Err(KernelError::Value {
                arg: "targets",
                message: format!(
                    "class {target} appears twice (entries {} and {t}); targets must be distinct",
                    *slot
                ),
            });
        }
        *slot = t;
    }
    require_finite(alphas, "alphas")?;
    require_finite(weight, "W")?;

    let d = weight.ncols();
    let rows: Vec<Vec<T>> = (0..f)
        .into_par_iter()
        .map(|t| {
            let mut acc = vec![0.0f64; d];
            let a0 = alphas[[t, 0]];
            for (o, &v) in acc.iter_mut().zip(weight.row(targets[t] as usize).iter()) {
                *o = a0 * v.to_f64();
            }
            for i in 0..k {
                let a = alphas[[t, i + 1]];
                for (o, &v) in acc
                    .iter_mut()
                    .zip(weight.row(neighbors[[t, i]] as usize).iter())
                {
                    *o += a * v.to_f64();
                }
            }
            acc.into_iter().map(T::from_f64).collect()
        })
        .collect();
    let mut out = weight.as_standard_layout().into_owned();
    for (t, row) in rows.into_iter().enumerate() {
        out.row_mut(targets[t] as usize)
            .assign(&ndarray::ArrayView1::from(&row[..]));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
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
