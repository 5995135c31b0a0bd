//! `A · Bᵀ` on one thread, through the `gemm` crate.
//!
//! Kernels call this on tiles whose shapes depend only on the inputs, so the
//! summation order of every output element (and hence the result) is the same
//! whatever thread runs the tile.

use ndarray::ArrayView2;

use crate::real::Real;

/// `out[i * ld + j] = a.row(i) · b.row(j)` for the `a.nrows() x b.nrows()` block.
///
/// `a` and `b` may have any strides (C order, F order, views with steps); `out`
/// must hold at least `(a.nrows() - 1) * ld + b.nrows()` elements.
pub fn a_bt<T: Real>(a: ArrayView2<T>, b: ArrayView2<T>, out: &mut [T], ld: usize) {
    let (m, k) = a.dim();
    let n = b.nrows();
    assert_eq!(b.ncols(), k, "inner dimensions differ");
    assert!(ld >= n, "leading dimension too small");
    if m == 0 || n == 0 {
        return;
    }
    assert!(out.len() >= (m - 1) * ld + n, "output buffer too small");
    if k == 0 {
        for i in 0..m {
            out[i * ld..i * ld + n].fill(T::zero());
        }
        return;
    }
    let sa = a.strides();
    let sb = b.strides();
    // SAFETY: the pointers and strides come from live ndarray views of the given
    // shapes and `out` was checked to be large enough for an m x n block with
    // row stride `ld`. gemm reads `a` and `b` only and writes only `out`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            ld as isize,
            false,
            a.as_ptr(),
            sa[1],
            sa[0],
            b.as_ptr(),
            sb[0],
            sb[1],
            T::zero(),
            T::one(),
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}
