//! The two products of a training step's first layer, whose input `a` is tall
//! and thin (`K` rows, a few hundred columns at most): `aᵀ b` (the forward
//! pass) and `a g` (the weight gradient).
//!
//! Both cut the `K` rows into pieces of [`PIECE_ROWS`], a number fixed by the
//! shape and never by the thread count. Rayon runs the pieces on whichever
//! threads are free, each piece one single-threaded product
//! ([`crate::matmul::a_bt`]); the partial products of `aᵀ b` are then added in
//! piece order. So the result is the same whatever the size of the pool.
//!
//! The layouts matter more than usual for such thin shapes: the product's
//! left-hand side is read fastest when its rows are adjacent in memory
//! (a column-major view), because it is then read in place instead of being
//! packed first. The caller keeps `a` both ways if it can afford to: `(K, F)`
//! C order for `aᵀ b`, and a `(F, K)` C-order copy, passed transposed, for `a g`.

use ndarray::{s, ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

use crate::error::{KernelError, Result};
use crate::matmul::a_bt;
use crate::real::Real;
use crate::simd::Simd;

/// Rows of `a` per piece: enough that each piece is a product the micro-kernels
/// run at full speed, few enough that two threads share twelve pieces at the
/// ImageNet-LT shape (`K` = 12,288) and a thread kept off its core holds up one.
pub const PIECE_ROWS: usize = 1024;

/// The widest vector of float32 lanes the products use (AVX-512): row counts
/// that are multiples of it are read in place.
const LANES: usize = 16;

/// At most this many bytes of a row-major `a` per piece of [`dot`].
const PACK_BYTES: usize = 1 << 20;

fn shape_error(arg: &'static str, message: String) -> KernelError {
    KernelError::Shape { arg, message }
}

/// `out` as a slice, checked to be `dim` in C order.
fn output<'a, T: Real>(
    out: &'a mut ArrayViewMut2<'_, T>,
    dim: (usize, usize),
) -> Result<&'a mut [T]> {
    if out.dim() != dim {
        let message = format!("expected shape {dim:?}, found {:?}", out.dim());
        return Err(shape_error("out", message));
    }
    out.as_slice_mut()
        .ok_or_else(|| shape_error("out", "expected a C-contiguous array".into()))
}

/// `work(i, chunk, lo, hi)` for every piece `i` of `k` rows (rows `lo..hi`) and
/// its `chunk` of `buffer`: on the pool's threads, or one after another on the
/// calling thread. The same calls either way.
fn each_piece<T: Real>(
    buffer: &mut [T],
    (chunk, piece_rows): (usize, usize),
    k: usize,
    parallel: bool,
    work: impl Fn(&mut [T], usize, usize) + Sync,
) {
    let rows = |i: usize| (i * piece_rows, ((i + 1) * piece_rows).min(k));
    let run = |(i, c): (usize, &mut [T])| {
        let (lo, hi) = rows(i);
        work(c, lo, hi)
    };
    if parallel {
        buffer.par_chunks_mut(chunk).enumerate().for_each(run);
    } else {
        buffer.chunks_mut(chunk).enumerate().for_each(run);
    }
}

/// `out = aᵀ b` for `a` (`K x F`) and `b` (`K x h`), any strides; `out` is
/// `F x h` in C order. The pieces run on the pool if `parallel`, else on the
/// calling thread: the same result.
pub fn t_dot<T: Real>(
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    mut out: ArrayViewMut2<T>,
    parallel: bool,
) -> Result<()> {
    let (k, f) = a.dim();
    let h = b.ncols();
    if b.nrows() != k {
        return Err(shape_error(
            "b",
            format!("expected {k} rows (rows of a), found {}", b.nrows()),
        ));
    }
    let dst = output(&mut out, (f, h))?;
    dst.fill(T::zero());
    if f == 0 || h == 0 || k == 0 {
        return Ok(());
    }
    let level = Simd::current();
    let size = f * h;
    let mut partial = vec![T::zero(); k.div_ceil(PIECE_ROWS) * size];
    // Output rows in two calls, a multiple of LANES and the rest: gemm copies
    // ("packs") a left-hand side whose row count is not a multiple of its
    // vector width, which at thousands of rows is megabytes per call.
    let whole = f / LANES * LANES;
    each_piece(
        &mut partial,
        (size, PIECE_ROWS),
        k,
        parallel,
        |p, lo, hi| {
            let (a, b) = (a.slice(s![lo..hi, ..]), b.slice(s![lo..hi, ..]));
            let (top, rest) = p.split_at_mut(whole * h);
            a_bt(level, a.slice(s![.., ..whole]).t(), b.t(), top, h);
            a_bt(level, a.slice(s![.., whole..]).t(), b.t(), rest, h);
        },
    );
    // In piece order, one piece after another: the same additions on any pool.
    for p in partial.chunks_exact(size) {
        for (o, &v) in dst.iter_mut().zip(p) {
            *o = *o + v;
        }
    }
    Ok(())
}

/// `out = a g` for `a` (`K x F`, any strides; fastest column-major) and `g`
/// (`F x h`); `out` is `K x h` in C order. `parallel` as in [`t_dot`]. Pieces
/// of [`PIECE_ROWS`] rows for a column-major `a`, else of at most 1 MiB of `a`
/// (at least 48 rows): fixed by the shape and layout, never by the threads.
pub fn dot<T: Real>(
    a: ArrayView2<T>,
    g: ArrayView2<T>,
    mut out: ArrayViewMut2<T>,
    parallel: bool,
) -> Result<()> {
    let (k, f) = a.dim();
    let h = g.ncols();
    if g.nrows() != f {
        return Err(shape_error(
            "g",
            format!("expected {f} rows (columns of a), found {}", g.nrows()),
        ));
    }
    let dst = output(&mut out, (k, h))?;
    if h == 0 || k == 0 {
        return Ok(());
    }
    let level = Simd::current();
    // gemm packs a left-hand side that is not column-major, whole, at every call:
    // then pieces of at most PACK_BYTES, so that the packed copies stay small.
    let rows = if a.strides()[0] == 1 || f == 0 {
        PIECE_ROWS
    } else {
        let fit = PACK_BYTES / (f * std::mem::size_of::<T>()) / LANES * LANES;
        fit.clamp(3 * LANES, PIECE_ROWS)
    };
    each_piece(dst, (rows * h, rows), k, parallel, |o, lo, hi| {
        a_bt(level, a.slice(s![lo..hi, ..]), g.t(), o, h)
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::lcg;
    use ndarray::Array2;

    fn random(rows: usize, cols: usize, seed: &mut u64) -> Array2<f64> {
        Array2::from_shape_fn((rows, cols), |_| lcg(seed))
    }

    fn run_both(
        a: &Array2<f64>,
        b: &Array2<f64>,
        g: &Array2<f64>,
        parallel: bool,
    ) -> (Array2<f64>, Array2<f64>) {
        let mut fwd = Array2::zeros((a.ncols(), b.ncols()));
        let mut grad = Array2::zeros((a.nrows(), g.ncols()));
        t_dot(a.view(), b.view(), fwd.view_mut(), parallel).unwrap();
        // a passed column-major, as the training step does.
        let a_cols = a.t().as_standard_layout().to_owned();
        dot(a_cols.t(), g.view(), grad.view_mut(), parallel).unwrap();
        (fwd, grad)
    }

    #[test]
    fn match_the_reference_and_every_pool_size() {
        let mut seed = 11u64;
        // Several pieces with a short last one, and odd widths.
        let (k, f, h) = (2 * PIECE_ROWS + 77, 37, 13);
        let (a, b, g) = (
            random(k, f, &mut seed),
            random(k, h, &mut seed),
            random(f, h, &mut seed),
        );
        let (fwd, grad) = run_both(&a, &b, &g, true);
        let (want_fwd, want_grad) = (a.t().dot(&b), a.dot(&g));
        assert!(fwd
            .iter()
            .zip(want_fwd.iter())
            .all(|(x, y)| (x - y).abs() < 1e-9));
        assert!(grad
            .iter()
            .zip(want_grad.iter())
            .all(|(x, y)| (x - y).abs() < 1e-9));
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let again = pool.install(|| run_both(&a, &b, &g, true));
            assert_eq!(again, (fwd.clone(), grad.clone()), "{threads} threads");
        }
        assert_eq!(
            run_both(&a, &b, &g, false),
            (fwd, grad),
            "on the calling thread"
        );
    }

    #[test]
    fn refuse_shapes_that_disagree() {
        let a = Array2::<f32>::zeros((5, 3));
        let mut out = Array2::<f32>::zeros((3, 2));
        let err = t_dot(a.view(), Array2::zeros((4, 2)).view(), out.view_mut(), true).unwrap_err();
        assert_eq!(err.argument(), "b");
        let err = dot(a.view(), Array2::zeros((4, 2)).view(), out.view_mut(), true).unwrap_err();
        assert_eq!(err.argument(), "g");
        let mut wrong = Array2::<f32>::zeros((2, 3));
        let err = t_dot(
            a.view(),
            Array2::zeros((5, 2)).view(),
            wrong.view_mut(),
            true,
        )
        .unwrap_err();
        assert_eq!(err.argument(), "out");
    }
}
