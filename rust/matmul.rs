//! `A · Bᵀ` on one thread, through the `gemm` crate's packing and micro-kernels,
//! on the instruction set that [`Simd::current`] names.
//!
//! `gemm::gemm` picks its kernel once per process from the CPU alone, so it
//! would ignore `ALPHANET_FAST_SIMD`. We call the crate's generic driver with
//! the micro-kernels of the level we choose instead: AVX-512F (16 float32 or 8
//! float64 lanes), AVX2+FMA (8 or 4), or plain scalar code on older CPUs.
//! Other architectures (NEON on aarch64) keep `gemm::gemm`'s own choice.
//!
//! Kernels call this on tiles whose shapes depend only on the inputs, so the
//! summation order of every output element (and hence the result) is the same
//! whatever thread runs the tile. The order does depend on the level (the
//! micro-kernels' register blocks differ), so products, unlike the other
//! kernels' loops, may differ in the last bits from one level to another.

use gemm_common::gemm::gemm_basic_generic;
use gemm_common::Parallelism;
use ndarray::ArrayView2;

use crate::real::Real;
use crate::simd::Simd;

/// The arguments of one product, as `gemm_basic_generic` takes them.
struct Product<T> {
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    dst_rs: isize,
    lhs: *const T,
    lhs_cs: isize,
    lhs_rs: isize,
    rhs: *const T,
    rhs_cs: isize,
    rhs_rs: isize,
}

/// `run!(type, micro-kernel module, pulp SIMD type, lanes, product)`: one call
/// of the generic driver with one level's micro-kernels.
macro_rules! run {
    ($t:ident, $krate:ident, $module:ident, $simd:ty, $lanes:expr, $p:expr) => {{
        use $krate::microkernel::$module::$t as ukr;
        let p = $p;
        let simd = <$simd as gemm_common::simd::MixedSimd<$t, $t, $t, $t>>::try_new()
            .expect("the caller checked that the CPU has this level");
        gemm_basic_generic::<
            _,
            $t,
            { $lanes },
            { ukr::MR_DIV_N * $lanes },
            { ukr::NR },
            { ukr::MR_DIV_N },
            { ukr::H_M },
            { ukr::H_N },
        >(
            simd,
            p.m,
            p.n,
            p.k,
            p.dst,
            1,
            p.dst_rs,
            false,
            p.lhs,
            p.lhs_cs,
            p.lhs_rs,
            p.rhs,
            p.rhs_cs,
            p.rhs_rs,
            0.0,
            1.0,
            false,
            false,
            false,
            |a, b, c| a * b + c,
            &ukr::UKR,
            &ukr::H_UKR,
            false,
            Parallelism::None,
        )
    }};
}

/// # Safety
/// The pointers and strides of `p` describe live, non-overlapping buffers of
/// the stated shapes, and the CPU has `level`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
unsafe fn product_f32(level: Simd, p: Product<f32>) {
    match level {
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => run!(f32, gemm_f32, avx512f, gemm_common::simd::V4, 16, p),
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => run!(f32, gemm_f32, fma, gemm_common::simd::V3, 8, p),
        _ => run!(f32, gemm_f32, scalar, gemm_common::simd::Scalar, 1, p),
    }
}

/// # Safety
/// As [`product_f32`].
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
unsafe fn product_f64(level: Simd, p: Product<f64>) {
    match level {
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => run!(f64, gemm_f64, avx512f, gemm_common::simd::V4, 8, p),
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => run!(f64, gemm_f64, fma, gemm_common::simd::V3, 4, p),
        _ => run!(f64, gemm_f64, scalar, gemm_common::simd::Scalar, 1, p),
    }
}

/// The product through `gemm::gemm`, which picks its kernel from the CPU once
/// per process.
///
/// # Safety
/// As [`product_f32`].
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
unsafe fn product_any<T: Real>(p: Product<T>) {
    gemm::gemm(
        p.m,
        p.n,
        p.k,
        p.dst,
        1,
        p.dst_rs,
        false,
        p.lhs,
        p.lhs_cs,
        p.lhs_rs,
        p.rhs,
        p.rhs_cs,
        p.rhs_rs,
        T::zero(),
        T::one(),
        false,
        false,
        false,
        gemm::Parallelism::None,
    )
}

/// `out[i * ld + j] = a.row(i) · b.row(j)` for the `a.nrows() x b.nrows()` block,
/// on the level `level` (at most [`Simd::detected`]; callers read
/// [`Simd::current`] once per kernel call, so every tile of a call uses one).
///
/// `a` and `b` may have any strides (C order, F order, views with steps); `out`
/// must hold at least `(a.nrows() - 1) * ld + b.nrows()` elements.
pub fn a_bt<T: Real>(level: Simd, a: ArrayView2<T>, b: ArrayView2<T>, out: &mut [T], ld: usize) {
    let (m, k) = a.dim();
    let n = b.nrows();
    assert_eq!(b.ncols(), k, "inner dimensions differ");
    assert!(ld >= n, "leading dimension too small");
    assert!(level <= Simd::detected(), "SIMD level beyond the CPU");
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
    let (sa, sb) = (a.strides(), b.strides());
    let product = Product {
        m,
        n,
        k,
        dst: out.as_mut_ptr(),
        dst_rs: ld as isize,
        lhs: a.as_ptr(),
        lhs_cs: sa[1],
        lhs_rs: sa[0],
        rhs: b.as_ptr(),
        rhs_cs: sb[0],
        rhs_rs: sb[1],
    };
    // SAFETY: the pointers and strides come from live ndarray views of the
    // given shapes, `out` was checked to be large enough for an m x n block
    // with row stride `ld`, and `level` was checked against the CPU. The casts
    // change nothing: T is f32 (or f64) exactly when the TypeId says so.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        use std::any::TypeId;
        if TypeId::of::<T>() == TypeId::of::<f32>() {
            product_f32(
                level,
                std::mem::transmute::<Product<T>, Product<f32>>(product),
            );
        } else if TypeId::of::<T>() == TypeId::of::<f64>() {
            product_f64(
                level,
                std::mem::transmute::<Product<T>, Product<f64>>(product),
            );
        } else {
            unreachable!("Real is implemented for f32 and f64 only");
        }
    }
    // SAFETY: as above; gemm picks a kernel this CPU has.
    #[cfg(not(target_arch = "x86_64"))]
    unsafe {
        product_any(product)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::lcg;
    use ndarray::Array2;

    fn check<T: Real>(tol: f64) {
        let mut seed = 3u64;
        // Odd sizes: partial register blocks on every edge.
        let (m, n, k) = (37usize, 53usize, 300usize);
        let a = Array2::from_shape_fn((m, k), |_| T::from_f64(lcg(&mut seed)));
        let b = Array2::from_shape_fn((n, k), |_| T::from_f64(lcg(&mut seed)));
        let bf = b.t().as_standard_layout().t().to_owned(); // F order
        let want = a.mapv(|v| v.to_f64()).dot(&b.mapv(|v| v.to_f64()).t());
        for level in Simd::available() {
            for rhs in [b.view(), bf.view(), b.slice(ndarray::s![..;1, ..])] {
                let ld = n + 3;
                let mut out = vec![T::zero(); (m - 1) * ld + n];
                a_bt(level, a.view(), rhs, &mut out, ld);
                for i in 0..m {
                    for j in 0..n {
                        let err = (out[i * ld + j].to_f64() - want[[i, j]]).abs();
                        assert!(err < tol, "{level:?} ({i}, {j}): off by {err}");
                    }
                }
            }
        }
    }

    #[test]
    fn every_level_matches_the_float64_reference() {
        check::<f32>(1e-4);
        check::<f64>(1e-12);
    }
}
