//! Row norms and distances in float64, exact to float64 precision whatever the
//! magnitudes.
//!
//! Squares of float64 values below about 1e-154 underflow, and beyond 1e154
//! they overflow, so a plain sum of squares would tie rows of 1e-200 with one
//! another (every squared difference rounds to zero) even beside rows of
//! magnitude 1. Each sum is therefore taken over values scaled by a power of two
//! chosen from their own largest magnitude, and scaled back after the square
//! root. A power of two changes no bit of a normal number, so wherever the
//! plain sum neither underflows nor overflows the result is bitwise the same.

use ndarray::{ArrayView1, ArrayView2};
use rayon::prelude::*;

use crate::real::Real;

use super::Metric;

/// A row's Euclidean norm, and the power of two its entries are scaled by
/// before a product with another row (`scaled = norm * scale`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Norm {
    pub norm: f64,
    pub scale: f64,
    pub scaled: f64,
}

/// `2^e` for `-1022 <= e <= 1023`, built from its bits (exact).
fn pow2(e: i32) -> f64 {
    f64::from_bits(((e + 1023) as u64) << 52)
}

/// The power of two that brings `top` (a largest magnitude, > 0) to about 1:
/// `2^-e` where `top` is in `[2^(e-1), 2^e)`, capped so that it stays a
/// normal number (values then land in `[2^-75, 2^25)`, whose squares are safe).
fn scale_for(top: f64) -> f64 {
    let e = ((top.to_bits() >> 52) & 0x7ff) as i32 - 1022;
    pow2((-e).clamp(-1000, 1000))
}

/// Every row's [`Norm`], rows in parallel.
pub(super) fn norms<T: Real>(x: ArrayView2<T>) -> Vec<Norm> {
    (0..x.nrows())
        .into_par_iter()
        .map(|r| {
            let row = x.row(r);
            let top = pair_max(row, row, |a, _| a.abs());
            if top == 0.0 {
                return Norm {
                    norm: 0.0,
                    scale: 1.0,
                    scaled: 0.0,
                };
            }
            let scale = scale_for(top);
            let scaled = pair_sum(row, row, |a, b| (a * scale) * (b * scale)).sqrt();
            Norm {
                norm: scaled / scale,
                scale,
                scaled,
            }
        })
        .collect()
}

/// The distance between `q` and `p` in float64: Euclidean (not squared), or
/// `1 - cosine` from the rows' scaled entries and norms.
pub(super) fn distance<T: Real>(
    q: ArrayView1<T>,
    p: ArrayView1<T>,
    qn: Norm,
    pn: Norm,
    metric: Metric,
) -> f64 {
    match metric {
        Metric::Euclidean => {
            // One pass when no square can under- or overflow (always for
            // float32 inputs), a second over scaled values otherwise.
            let (sum, top) = squares_and_max(q, p);
            if (SAFE_LOW..SAFE_HIGH).contains(&top) {
                return sum.sqrt();
            }
            if top == 0.0 {
                return 0.0;
            }
            let s = scale_for(top);
            pair_sum(q, p, |a, b| ((a - b) * s) * ((a - b) * s)).sqrt() / s
        }
        Metric::Cosine => {
            let (sq, sp) = (qn.scale, pn.scale);
            1.0 - pair_sum(q, p, |a, b| (a * sq) * (b * sp)) / (qn.scaled * pn.scaled)
        }
    }
}

/// Largest difference whose square, and whose sum of `d` squares, stay finite.
const SAFE_HIGH: f64 = 1e150;
/// Smallest largest difference whose square keeps its digits. Smaller
/// differences in the same pair may underflow, but their squares are then
/// below 1e-300 times the sum, far beneath its last bit.
const SAFE_LOW: f64 = 1e-140;

/// `(sum_j (q_j - p_j)², max_j |q_j - p_j|)` in float64, in one pass; the sum
/// has the bits [`lane_sum`] gives it.
fn squares_and_max<T: Real>(q: ArrayView1<T>, p: ArrayView1<T>) -> (f64, f64) {
    let square = |a: f64, b: f64| (a - b) * (a - b);
    let (Some(q), Some(p)) = (q.as_slice(), p.as_slice()) else {
        return (pair_sum(q, p, square), pair_max(q, p, |a, b| (a - b).abs()));
    };
    let (mut lanes, mut tops) = ([0.0f64; 8], [0.0f64; 8]);
    let (qc, pc) = (q.chunks_exact(8), p.chunks_exact(8));
    let (qr, pr) = (qc.remainder(), pc.remainder());
    let tail: f64 = qr
        .iter()
        .zip(pr)
        .map(|(a, b)| square(a.to_f64(), b.to_f64()))
        .sum();
    let mut top = qr
        .iter()
        .zip(pr)
        .fold(0.0f64, |m, (a, b)| m.max((a.to_f64() - b.to_f64()).abs()));
    for (a, b) in qc.zip(pc) {
        for l in 0..8 {
            let t = a[l].to_f64() - b[l].to_f64();
            lanes[l] += t * t;
            tops[l] = tops[l].max(t.abs());
        }
    }
    top = tops.iter().fold(top, |m, &v| m.max(v));
    (combine_lanes(lanes) + tail, top)
}

/// `max_j term(q_j, p_j)` in float64.
fn pair_max<T: Real>(q: ArrayView1<T>, p: ArrayView1<T>, term: impl Fn(f64, f64) -> f64) -> f64 {
    q.iter()
        .zip(p.iter())
        .fold(0.0f64, |m, (a, b)| m.max(term(a.to_f64(), b.to_f64())))
}

/// `sum_j term(q_j, p_j)` in float64.
#[inline(always)]
pub(super) fn pair_sum<T: Real>(
    q: ArrayView1<T>,
    p: ArrayView1<T>,
    term: impl Fn(f64, f64) -> f64 + Copy,
) -> f64 {
    match (q.as_slice(), p.as_slice()) {
        (Some(q), Some(p)) => lane_sum(q, p, term),
        _ => q
            .iter()
            .zip(p.iter())
            .map(|(a, b)| term(a.to_f64(), b.to_f64()))
            .sum(),
    }
}

/// `sum_j term(q_j, p_j)` in float64 over eight interleaved partial sums,
/// added in a fixed order: the same bits every time, and eight times the
/// additions in flight of one running sum.
#[inline(always)]
fn lane_sum<T: Real>(q: &[T], p: &[T], term: impl Fn(f64, f64) -> f64 + Copy) -> f64 {
    let mut lanes = [0.0f64; 8];
    let (qc, pc) = (q.chunks_exact(8), p.chunks_exact(8));
    let tail: f64 = qc
        .remainder()
        .iter()
        .zip(pc.remainder())
        .map(|(a, b)| term(a.to_f64(), b.to_f64()))
        .sum();
    for (a, b) in qc.zip(pc) {
        for l in 0..8 {
            lanes[l] += term(a[l].to_f64(), b[l].to_f64());
        }
    }
    combine_lanes(lanes) + tail
}

/// The eight partial sums added in a fixed order.
#[inline(always)]
fn combine_lanes(lanes: [f64; 8]) -> f64 {
    let pairs = [
        lanes[0] + lanes[4],
        lanes[1] + lanes[5],
        lanes[2] + lanes[6],
        lanes[3] + lanes[7],
    ];
    (pairs[0] + pairs[2]) + (pairs[1] + pairs[3])
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn scaling_changes_no_bit_in_the_normal_range() {
        let q = array![0.3f64, -1.7, 2.5, 1e-3, 7.0, 0.0, 1.0, -2.0, 0.125];
        let p = array![1.3f64, 0.7, -2.5, 4e-3, 6.5, 1.0, 0.0, 2.0, 0.5];
        let plain = |f: &dyn Fn(f64, f64) -> f64| pair_sum(q.view(), p.view(), f);
        let n = norms(ndarray::stack![ndarray::Axis(0), q, p].view());
        assert_eq!(n[0].norm.to_bits(), plain(&|a, _| a * a).sqrt().to_bits());
        let euclid = distance(q.view(), p.view(), n[0], n[1], Metric::Euclidean);
        let want = plain(&|a, b| (a - b) * (a - b)).sqrt();
        assert_eq!(euclid.to_bits(), want.to_bits());
        let cosine = distance(q.view(), p.view(), n[0], n[1], Metric::Cosine);
        let want = 1.0 - plain(&|a, b| a * b) / (n[0].norm * n[1].norm);
        assert_eq!(cosine.to_bits(), want.to_bits());
    }

    #[test]
    fn one_pass_and_scaled_pass_agree() {
        let q = array![0.3f64, -1.7, 2.5, 1e-3, 7.0, 0.0, 1.0, -2.0, 0.125, 3.0];
        let p = array![1.3f64, 0.7, -2.5, 4e-3, 6.5, 1.0, 0.0, 2.0, 0.5, -1.0];
        let (sum, top) = squares_and_max(q.view(), p.view());
        assert_eq!(top, 5.0);
        let plain = pair_sum(q.view(), p.view(), |a, b| (a - b) * (a - b));
        assert_eq!(sum.to_bits(), plain.to_bits());
        let s = scale_for(top);
        let scaled = pair_sum(q.view(), p.view(), |a, b| ((a - b) * s) * ((a - b) * s));
        assert_eq!((scaled.sqrt() / s).to_bits(), sum.sqrt().to_bits());
    }

    #[test]
    fn tiny_and_huge_rows_keep_their_digits() {
        for scale in [1e-200f64, 1e-310, 1e200, 1e300] {
            let q = array![3.0 * scale, 0.0];
            let p = array![0.0, 4.0 * scale];
            let n = norms(ndarray::stack![ndarray::Axis(0), q, p].view());
            assert!((n[0].norm / (3.0 * scale) - 1.0).abs() < 1e-12, "{scale}");
            let d = distance(q.view(), p.view(), n[0], n[1], Metric::Euclidean);
            assert!((d / (5.0 * scale) - 1.0).abs() < 1e-12, "{scale}: {d}");
            let c = distance(q.view(), p.view(), n[0], n[1], Metric::Cosine);
            assert_eq!(c, 1.0, "{scale}");
        }
    }
}
