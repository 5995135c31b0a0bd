//! The training step's loss over the few classes and its gradient with respect
//! to the coefficients, in one pass over the batch.
//!
//! Each sample's few-class scores are linear in the coefficients `ã` (the exact
//! shortcut): `s_f = (own_f + sum_i ã_f,i nb_f,i + b_f) * scale`. Its loss is the
//! cross-entropy over all classes, `logsumexp([lse_base, s_1..s_F]) - target`,
//! where `lse_base` (the base classes' log-sum-exp) and the target's score when
//! it is a base class are frozen. The gradient of the batch's mean loss with
//! respect to `ã` is `sum_b g_b,f nb_b,f,i` with `g_b,f = (softmax_f - [f is the
//! target]) * scale / B`.
//!
//! Written out here because the batch is small (64 x F x k): as a dozen tensor
//! operations it costs more in dispatch than in arithmetic. One thread, rows in
//! order, float64 accumulators: the same bits on any pool.
//!
//! Validation needs, for every validation row, the best few class under the same
//! scores ([`few_best`]): rows are independent, so they are split over the pool.

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis};
use rayon::prelude::*;

use crate::error::{KernelError, Result};
use crate::real::Real;

/// One batch of the step's frozen inputs, as the training loop gathers them.
pub struct FewBatch<'a, T> {
    /// `B x F`: each sample's score against each few class's original row.
    pub own: ArrayView2<'a, T>,
    /// `B x (F k)`: against each few class's `k` neighbours, few class major.
    pub neighbors: ArrayView2<'a, T>,
    /// `B`: log-sum-exp of the base classes' scores.
    pub base_lse: ArrayView1<'a, T>,
    /// `B`: the target's score when it is a base class.
    pub target_score: ArrayView1<'a, T>,
    /// `B`: the target's index among the few classes, -1 for a base class.
    pub target_few: &'a [i64],
}

fn shape(arg: &'static str, message: String) -> KernelError {
    KernelError::Shape { arg, message }
}

fn check<T: Real>(
    batch: &FewBatch<'_, T>,
    alphas: ArrayView2<'_, T>,
    few_bias: ArrayView1<'_, T>,
    grad: &ArrayViewMut2<'_, T>,
) -> Result<()> {
    let (rows, n_few) = batch.own.dim();
    let k = alphas.ncols();
    if alphas.nrows() != n_few {
        let found = alphas.nrows();
        return Err(shape(
            "alphas",
            format!("expected {n_few} rows (few classes), found {found}"),
        ));
    }
    if batch.neighbors.dim() != (rows, n_few * k) {
        let found = batch.neighbors.dim();
        return Err(shape(
            "neighbors",
            format!("expected ({rows}, {}), found {found:?}", n_few * k),
        ));
    }
    for (arg, len) in [
        ("base_lse", batch.base_lse.len()),
        ("target_score", batch.target_score.len()),
        ("target_few", batch.target_few.len()),
    ] {
        if len != rows {
            return Err(shape(
                arg,
                format!("expected {rows} entries (rows of own), found {len}"),
            ));
        }
    }
    if few_bias.len() != n_few {
        let found = few_bias.len();
        return Err(shape(
            "few_bias",
            format!("expected {n_few} entries, found {found}"),
        ));
    }
    if grad.dim() != (n_few, k) {
        let found = grad.dim();
        return Err(shape(
            "grad",
            format!("expected ({n_few}, {k}), found {found:?}"),
        ));
    }
    if let Some(row) = batch
        .target_few
        .iter()
        .position(|&t| t < -1 || t >= n_few as i64)
    {
        return Err(KernelError::IndexOutOfRange {
            arg: "target_few",
            row,
            value: batch.target_few[row],
            bound: n_few,
        });
    }
    Ok(())
}

/// `exp(x)` for `x <= 0` to within a few units in the last place: `x = n ln 2 + r`
/// with `|r| <= ln 2 / 2`, a degree-12 Taylor polynomial of `e^r` (its first
/// omitted term is below 2e-16 relative), times `2^n` built from its bits in two
/// factors (so that results down to the subnormals come out right, and below
/// them 0). The standard library's `exp` is a call per element; the softmax
/// takes one per sample and few class, which made it most of the loss's time.
#[inline(always)]
fn exp_nonpositive(x: f64) -> f64 {
    // ln 2 in two parts (Cody and Waite): n * LN2_HI is exact for |n| < 2^11.
    const LN2_HI: f64 = f64::from_bits(0x3FE6_2E42_FEE0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3DEA_39EF_3579_3C76);
    // exp(-1100) is 0 in float64: the same result, with n bounded. (A comparison,
    // not max(): NaN must stay NaN.)
    let x = if x < -1100.0 { -1100.0 } else { x };
    // Round to the nearest integer by adding and removing 1.5 * 2^52 (exact for
    // |n| < 2^51): f64::round is a library call on the baseline x86-64 target.
    const ROUND: f64 = 6_755_399_441_055_744.0;
    let n = (x * std::f64::consts::LOG2_E + ROUND) - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.0 / 479_001_600.0; // 1/12!
    for d in [
        39_916_800.0,
        3_628_800.0,
        362_880.0,
        40_320.0,
        5_040.0,
        720.0,
        120.0,
        24.0,
        6.0,
        2.0,
        1.0,
        1.0,
    ] {
        p = p * r + 1.0 / d;
    }
    let n = n as i64;
    let half = n / 2;
    let pow2 = |e: i64| f64::from_bits(((e + 1023) as u64) << 52);
    p * pow2(half) * pow2(n - half)
}

/// `dst = row` in float64; a contiguous row (the usual case) as a plain slice,
/// which ndarray's general iterator is several times slower than.
fn widen<T: Real>(dst: &mut [f64], row: ArrayView1<'_, T>) {
    match row.as_slice() {
        Some(values) => dst
            .iter_mut()
            .zip(values)
            .for_each(|(o, v)| *o = v.to_f64()),
        None => dst.iter_mut().zip(row).for_each(|(o, v)| *o = v.to_f64()),
    }
}

/// `(own_f + sum_i ã_f,i nb_f,i + b_f) * scale` from float64 copies of one row.
#[inline(always)]
fn score(own: f64, nbs: &[f64], alphas: &[f64], bias: f64, scale: f64) -> f64 {
    let mut s = own;
    for (a, v) in alphas.iter().zip(nbs) {
        s += a * v;
    }
    (s + bias) * scale
}

/// The batch's mean loss; `grad` receives its gradient with respect to `alphas`
/// (`F x k`).
pub fn few_loss<T: Real>(
    batch: &FewBatch<'_, T>,
    alphas: ArrayView2<'_, T>,
    few_bias: ArrayView1<'_, T>,
    scale: f64,
    mut grad: ArrayViewMut2<'_, T>,
) -> Result<f64> {
    check(batch, alphas, few_bias, &grad)?;
    let (rows, n_few) = batch.own.dim();
    let k = alphas.ncols();
    // Float64 copies, read as plain slices in the loops below.
    let a: Vec<f64> = alphas.iter().map(|v| v.to_f64()).collect();
    let bias: Vec<f64> = few_bias.iter().map(|v| v.to_f64()).collect();
    let (mut own, mut nbs) = (vec![0.0f64; n_few], vec![0.0f64; n_few * k]);
    let mut acc = vec![0.0f64; n_few * k];
    let mut e = vec![0.0f64; n_few];
    let mut total = 0.0f64;
    let g_scale = scale / rows.max(1) as f64;
    for b in 0..rows {
        widen(&mut own, batch.own.row(b));
        widen(&mut nbs, batch.neighbors.row(b));
        let base = batch.base_lse[b].to_f64();
        let mut top = base;
        for f in 0..n_few {
            e[f] = score(
                own[f],
                &nbs[f * k..(f + 1) * k],
                &a[f * k..(f + 1) * k],
                bias[f],
                scale,
            );
            top = top.max(e[f]);
        }
        // exp(s - top) once per score: the sum's terms, then the softmax's numerators.
        for v in e.iter_mut() {
            *v = exp_nonpositive(*v - top);
        }
        let sum = e.iter().fold(exp_nonpositive(base - top), |acc, v| acc + v);
        let lse = top + sum.ln();
        let target = batch.target_few[b];
        total += lse
            - match usize::try_from(target) {
                // The score itself: top + ln(e) would lose it where exp underflows.
                Ok(t) => score(
                    own[t],
                    &nbs[t * k..(t + 1) * k],
                    &a[t * k..(t + 1) * k],
                    bias[t],
                    scale,
                ),
                Err(_) => batch.target_score[b].to_f64(),
            };
        for f in 0..n_few {
            let hit = if target == f as i64 { 1.0 } else { 0.0 };
            let g = (e[f] / sum - hit) * g_scale;
            for (o, v) in acc[f * k..(f + 1) * k]
                .iter_mut()
                .zip(&nbs[f * k..(f + 1) * k])
            {
                *o += g * v;
            }
        }
    }
    for (o, v) in grad.iter_mut().zip(acc) {
        *o = T::from_f64(v);
    }
    Ok(total / rows.max(1) as f64)
}

/// Rows of [`few_best`] per task.
const BEST_ROWS: usize = 256;

/// For every row: the best few-class score `(own_f + sum_i ã_f,i nb_f,i + b_f) *
/// scale` (rounded once to `T`) and its few class, the first of equal ones; NaN
/// and its class where a score is NaN. `own` is `n x F`, `neighbors` `n x (F k)`.
pub fn few_best<T: Real>(
    own: ArrayView2<'_, T>,
    neighbors: ArrayView2<'_, T>,
    alphas: ArrayView2<'_, T>,
    few_bias: ArrayView1<'_, T>,
    scale: f64,
    mut best: ArrayViewMut1<'_, T>,
    mut arg: ArrayViewMut1<'_, i64>,
) -> Result<()> {
    let (rows, n_few) = own.dim();
    let k = alphas.ncols();
    let checks = [
        ("alphas", alphas.nrows() == n_few),
        ("neighbors", neighbors.dim() == (rows, n_few * k)),
        ("few_bias", few_bias.len() == n_few),
        ("best", best.len() == rows),
        ("arg", arg.len() == rows),
    ];
    if let Some((name, _)) = checks.iter().find(|(_, ok)| !ok) {
        let message = format!("does not fit own ({rows}, {n_few}) and alphas ({n_few}, {k})");
        return Err(shape(name, message));
    }
    let a: Vec<f64> = alphas.iter().map(|v| v.to_f64()).collect();
    let bias: Vec<f64> = few_bias.iter().map(|v| v.to_f64()).collect();
    best.axis_chunks_iter_mut(Axis(0), BEST_ROWS)
        .into_par_iter()
        .zip(arg.axis_chunks_iter_mut(Axis(0), BEST_ROWS))
        .enumerate()
        .for_each(|(chunk, (mut best, mut arg))| {
            let (mut o, mut nb) = (vec![0.0f64; n_few], vec![0.0f64; n_few * k]);
            for (j, (m, i)) in best.iter_mut().zip(arg.iter_mut()).enumerate() {
                let row = chunk * BEST_ROWS + j;
                widen(&mut o, own.row(row));
                widen(&mut nb, neighbors.row(row));
                let (mut top, mut at) = (f64::NEG_INFINITY, 0usize);
                for f in 0..n_few {
                    let s = score(
                        o[f],
                        &nb[f * k..(f + 1) * k],
                        &a[f * k..(f + 1) * k],
                        bias[f],
                        scale,
                    );
                    if s > top || s.is_nan() {
                        (top, at) = (s, f);
                        if s.is_nan() {
                            break;
                        }
                    }
                }
                (*m, *i) = (T::from_f64(top), at as i64);
            }
        });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::lcg;
    use ndarray::{Array1, Array2};

    #[test]
    fn few_best_takes_the_first_maximum_and_passes_nan() {
        // Two rows, three few classes, one neighbour each; row 0 ties classes 1 and 2.
        let own = Array2::from_shape_vec((2, 3), vec![0.0, 2.0, 1.0, 0.5, f64::NAN, 9.0]).unwrap();
        let nbs = Array2::from_shape_vec((2, 3), vec![1.0, 0.0, 2.0, 0.0, 0.0, 0.0]).unwrap();
        let alphas = Array2::from_shape_vec((3, 1), vec![0.5, 0.5, 0.5]).unwrap();
        let bias = Array1::zeros(3);
        let (mut best, mut arg) = (Array1::zeros(2), Array1::zeros(2));
        few_best(
            own.view(),
            nbs.view(),
            alphas.view(),
            bias.view(),
            2.0,
            best.view_mut(),
            arg.view_mut(),
        )
        .unwrap();
        assert_eq!((best[0], arg[0]), (4.0, 1));
        assert!(best[1].is_nan() && arg[1] == 1);
    }

    #[test]
    fn exp_matches_the_standard_library() {
        let mut seed = 9u64;
        let mut worst = 0.0f64;
        for i in 0..200_000 {
            // Uniform over [-60, 0], then the far tail and the subnormals.
            let x = match i % 4 {
                3 => -700.0 - 50.0 * (lcg(&mut seed) + 0.5),
                _ => -60.0 * (lcg(&mut seed) + 0.5),
            };
            let (got, want) = (exp_nonpositive(x), x.exp());
            if want > f64::MIN_POSITIVE {
                worst = worst.max(((got - want) / want).abs());
            } else {
                assert!((got - want).abs() <= 2.0 * 4.9e-324, "{x}: {got} vs {want}");
            }
        }
        assert!(worst < 4.0 * f64::EPSILON, "worst relative error {worst:e}");
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-2000.0), 0.0);
        assert_eq!(exp_nonpositive(f64::NEG_INFINITY), 0.0);
        assert!(exp_nonpositive(f64::NAN).is_nan());
    }

    #[test]
    fn matches_a_finite_difference_and_refuses_bad_targets() {
        let (rows, n_few, k) = (6usize, 4usize, 3usize);
        let mut seed = 5u64;
        let own = Array2::from_shape_fn((rows, n_few), |_| lcg(&mut seed));
        let nbs = Array2::from_shape_fn((rows, n_few * k), |_| lcg(&mut seed));
        let lse = Array1::from_shape_fn(rows, |_| lcg(&mut seed) + 1.0);
        let logit = Array1::from_shape_fn(rows, |_| lcg(&mut seed));
        let bias = Array1::from_shape_fn(n_few, |_| lcg(&mut seed));
        let alphas = Array2::from_shape_fn((n_few, k), |_| lcg(&mut seed));
        let targets = [-1i64, 0, 3, -1, 2, 1];
        let batch = FewBatch {
            own: own.view(),
            neighbors: nbs.view(),
            base_lse: lse.view(),
            target_score: logit.view(),
            target_few: &targets,
        };
        let mut grad = Array2::zeros((n_few, k));
        let loss = few_loss(&batch, alphas.view(), bias.view(), 1.5, grad.view_mut()).unwrap();
        let mut scratch = Array2::zeros((n_few, k));
        for f in 0..n_few {
            for i in 0..k {
                let h = 1e-6;
                let mut moved = alphas.clone();
                moved[[f, i]] += h;
                let up = few_loss(&batch, moved.view(), bias.view(), 1.5, scratch.view_mut());
                let slope = (up.unwrap() - loss) / h;
                assert!((slope - grad[[f, i]]).abs() < 1e-4, "({f}, {i})");
            }
        }
        let bad = [-1i64, 0, 4, -1, 2, 1];
        let batch = FewBatch {
            target_few: &bad,
            ..batch
        };
        let err = few_loss(&batch, alphas.view(), bias.view(), 1.0, grad.view_mut()).unwrap_err();
        assert_eq!((err.argument(), err.row()), ("target_few", Some(2)));
    }
}
