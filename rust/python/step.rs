//! Bindings of the training step's kernels: the first layer's two products
//! ([`crate::thin`]) and the loss over the few classes ([`crate::few_loss`]).
//! The step calls them on buffers it owns: every argument is a numpy view of a
//! torch tensor, and the results are written into `out` / `grad`.

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2};
use numpy::{PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1};
use pyo3::prelude::*;

use super::convert::{
    contiguous, guarded, mixed, owned_indices, run, to_py, typed, Float, Matrix, Vector,
};
use crate::error::KernelError;
use crate::few_loss::FewBatch;

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

/// One of the two products of [`crate::thin`], as the binding calls them.
type ThinProduct<T> = for<'a> fn(
    ArrayView2<'a, T>,
    ArrayView2<'a, T>,
    ArrayViewMut2<'a, T>,
    bool,
) -> Result<(), KernelError>;

/// `product(a, other, out, parallel)` with the arrays typed as `T`; `other` is
/// named `name` in errors.
fn thin_typed<T: Float>(
    py: Python<'_>,
    (a, other, name): (&Matrix<'_>, &Matrix<'_>, &str),
    out: &Bound<'_, PyAny>,
    parallel: bool,
    product: ThinProduct<T>,
) -> PyResult<()> {
    let (a, other) = (typed::<T>(a, "a")?, typed::<T>(other, name)?);
    let out = output::<T>(out)?;
    let mut o = out.try_readwrite()?;
    let view = o.as_array_mut();
    run_where(py, parallel, || product(a, other, view, parallel))
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
    guarded("thin_t_dot", || {
        by_dtype!(
            &a,
            thin_typed(py, (&a, &b, "b"), out, parallel, crate::thin::t_dot)
        )
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
    guarded("thin_dot", || {
        by_dtype!(
            &a,
            thin_typed(py, (&a, &g, "g"), out, parallel, crate::thin::dot)
        )
    })
}

fn vector<'a, T: Float>(v: &'a Vector<'_>, arg: &str) -> PyResult<ArrayView1<'a, T>> {
    Ok(ArrayView1::from(contiguous(
        T::vector(v).ok_or_else(|| mixed(arg))?,
        arg,
    )?))
}

/// The few-class loss's arguments after `target_few` (copied) and `own`.
struct LossArgs<'py> {
    neighbors: Matrix<'py>,
    base_lse: Vector<'py>,
    target_score: Vector<'py>,
    alphas: Matrix<'py>,
    few_bias: Vector<'py>,
}

fn few_loss_typed<T: Float>(
    py: Python<'_>,
    own: &Matrix<'_>,
    rest: &LossArgs<'_>,
    target_few: &[i64],
    scale: f64,
    grad: &Bound<'_, PyAny>,
) -> PyResult<f64> {
    let batch = FewBatch {
        own: typed::<T>(own, "own")?,
        neighbors: typed::<T>(&rest.neighbors, "neighbors")?,
        base_lse: vector::<T>(&rest.base_lse, "base_lse")?,
        target_score: vector::<T>(&rest.target_score, "target_score")?,
        target_few,
    };
    let (alphas, few_bias) = (
        typed::<T>(&rest.alphas, "alphas")?,
        vector::<T>(&rest.few_bias, "few_bias")?,
    );
    let grad = grad
        .cast::<PyArray2<T>>()
        .cloned()
        .map_err(|_| mixed("grad"))?;
    let mut g = grad.try_readwrite()?;
    let view = g.as_array_mut();
    // Small and serial: on the calling thread, without the interpreter.
    py.detach(|| crate::few_loss::few_loss(&batch, alphas, few_bias, scale, view))
        .map_err(to_py)
}

/// The mean cross-entropy of a batch over all classes from its frozen inputs and
/// the few classes' coefficients; `grad[...]` = its gradient in `alphas` (F x k).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn few_loss<'py>(
    py: Python<'py>,
    own: Matrix<'py>,
    neighbors: Matrix<'py>,
    base_lse: Vector<'py>,
    target_score: Vector<'py>,
    target_few: PyReadonlyArray1<'py, i64>,
    alphas: Matrix<'py>,
    few_bias: Vector<'py>,
    scale: f64,
    grad: &Bound<'py, PyAny>,
) -> PyResult<f64> {
    guarded("few_loss", || {
        let target_few = owned_indices(&target_few, "target_few")?;
        let rest = LossArgs {
            neighbors,
            base_lse,
            target_score,
            alphas,
            few_bias,
        };
        by_dtype!(
            &own,
            few_loss_typed(py, &own, &rest, &target_few, scale, grad)
        )
    })
}

fn few_best_typed<T: Float>(
    py: Python<'_>,
    own: &Matrix<'_>,
    neighbors: &Matrix<'_>,
    alphas: &Matrix<'_>,
    few_bias: &Vector<'_>,
    scale: f64,
    outputs: (&Bound<'_, PyAny>, &Bound<'_, PyArray1<i64>>),
) -> PyResult<()> {
    let (own, neighbors) = (typed::<T>(own, "own")?, typed::<T>(neighbors, "neighbors")?);
    let (alphas, few_bias) = (
        typed::<T>(alphas, "alphas")?,
        vector::<T>(few_bias, "few_bias")?,
    );
    let best = outputs
        .0
        .cast::<PyArray1<T>>()
        .cloned()
        .map_err(|_| mixed("best"))?;
    let (mut b, mut a) = (best.try_readwrite()?, outputs.1.try_readwrite()?);
    let (b, a) = (b.as_array_mut(), a.as_array_mut());
    run(py, || {
        crate::few_loss::few_best(own, neighbors, alphas, few_bias, scale, b, a)
    })
}

/// Per row of `own` (n x F) and `neighbors` (n x F k): the best few-class score
/// into `best[...]` and its few class into `arg[...]`, on the kernels' pool.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn few_best<'py>(
    py: Python<'py>,
    own: Matrix<'py>,
    neighbors: Matrix<'py>,
    alphas: Matrix<'py>,
    few_bias: Vector<'py>,
    scale: f64,
    best: &Bound<'py, PyAny>,
    arg: &Bound<'py, PyArray1<i64>>,
) -> PyResult<()> {
    guarded("few_best", || {
        let outputs = (best, arg);
        by_dtype!(
            &own,
            few_best_typed(py, &own, &neighbors, &alphas, &few_bias, scale, outputs)
        )
    })
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(few_best, m)?)?;
    m.add_function(wrap_pyfunction!(few_loss, m)?)?;
    m.add_function(wrap_pyfunction!(thin_t_dot, m)?)?;
    m.add_function(wrap_pyfunction!(thin_dot, m)?)?;
    m.add("THIN_PIECE_ROWS", crate::thin::PIECE_ROWS)?;
    Ok(())
}
