//! Bindings of the first layer's two products ([`crate::thin`]), which the
//! training step calls on buffers it owns: every argument is a numpy view of a
//! torch tensor, and the result is written into `out`.

use numpy::{PyArray2, PyArrayMethods};
use pyo3::prelude::*;

use super::convert::{guarded, mixed, run, to_py, typed, Float, Matrix};
use crate::error::KernelError;

/// On the kernels' pool, or on the calling thread (without the interpreter).
fn run_where<R: Send>(
    py: Python<'_>,
    parallel: bool,
    kernel: impl FnOnce() -> Result<R, KernelError> + Send,
) -> PyResult<R> {
    if parallel {
        run(py, kernel)
    } else {
        py.detach(kernel).map_err(to_py)
    }
}

/// `out`, writeable, of the element type `T`.
fn output<'py, T: Float>(out: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyArray2<T>>> {
    out.cast::<PyArray2<T>>().cloned().map_err(|_| mixed("out"))
}

fn t_dot_typed<T: Float>(
    py: Python<'_>,
    a: &Matrix<'_>,
    b: &Matrix<'_>,
    out: &Bound<'_, PyAny>,
    parallel: bool,
) -> PyResult<()> {
    let (a, b) = (typed::<T>(a, "a")?, typed::<T>(b, "b")?);
    let out = output::<T>(out)?;
    let mut o = out.try_readwrite()?;
    let view = o.as_array_mut();
    run_where(py, parallel, || crate::thin::t_dot(a, b, view, parallel))
}

fn dot_typed<T: Float>(
    py: Python<'_>,
    a: &Matrix<'_>,
    g: &Matrix<'_>,
    out: &Bound<'_, PyAny>,
    parallel: bool,
) -> PyResult<()> {
    let (a, g) = (typed::<T>(a, "a")?, typed::<T>(g, "g")?);
    let out = output::<T>(out)?;
    let mut o = out.try_readwrite()?;
    let view = o.as_array_mut();
    run_where(py, parallel, || crate::thin::dot(a, g, view, parallel))
}

/// `out[...] = a.T @ b` for a tall `a` (K x F) and `b` (K x h); `out` (F x h), C order;
/// on the kernels' pool if `parallel`, else on the calling thread (the same bits).
#[pyfunction]
fn thin_t_dot<'py>(
    py: Python<'py>,
    a: Matrix<'py>,
    b: Matrix<'py>,
    out: &Bound<'py, PyAny>,
    parallel: bool,
) -> PyResult<()> {
    guarded("thin_t_dot", || match &a {
        Matrix::F32(_) => t_dot_typed::<f32>(py, &a, &b, out, parallel),
        Matrix::F64(_) => t_dot_typed::<f64>(py, &a, &b, out, parallel),
    })
}

/// `out[...] = a @ g` for a tall `a` (K x F, fastest column-major) and `g` (F x h);
/// `out` (K x h), C order.
#[pyfunction]
fn thin_dot<'py>(
    py: Python<'py>,
    a: Matrix<'py>,
    g: Matrix<'py>,
    out: &Bound<'py, PyAny>,
    parallel: bool,
) -> PyResult<()> {
    guarded("thin_dot", || match &a {
        Matrix::F32(_) => dot_typed::<f32>(py, &a, &g, out, parallel),
        Matrix::F64(_) => dot_typed::<f64>(py, &a, &g, out, parallel),
    })
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(thin_t_dot, m)?)?;
    m.add_function(wrap_pyfunction!(thin_dot, m)?)?;
    m.add("THIN_PIECE_ROWS", crate::thin::PIECE_ROWS)?;
    Ok(())
}
