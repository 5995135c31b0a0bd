//! The PyO3 binding: converts arrays (no copies of the large ones), leaves the
//! interpreter while a kernel runs on the thread pool, and turns a
//! [`KernelError`] into `alphanet_fast.KernelError` (a `ValueError` carrying the
//! argument's name and the offending row) or, for outputs larger than the
//! machine's memory, a `MemoryError`. It knows nothing of the algorithms;
//! argument checks that need Python types (dtypes, ndim) live in the Python
//! wrappers.
//!
//! Three rules keep every failure a Python exception:
//! - outputs sized by the arguments are checked against memory and allocated by
//!   numpy (which raises `MemoryError`) before a kernel runs;
//! - index arrays (labels, targets, neighbours) are copied while the
//!   interpreter is held, then validated: another thread writing to them while
//!   the kernel runs cannot make it index out of bounds;
//! - a panic anywhere in a binding becomes a `RuntimeError` naming the kernel.

use std::any::Any;
use std::ffi::CString;
use std::panic::{catch_unwind, AssertUnwindSafe};

use ndarray::{Array2, ArrayView2};
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{
    PyMemoryError, PyOverflowError, PyRuntimeError, PyRuntimeWarning, PyTypeError,
};
use pyo3::prelude::*;

use crate::error::KernelError;
use crate::validate::{max_abs, max_row_norm, require_allocatable};
use crate::{pool, Metric, Real};

mod exc {
    // The Python class, defined next to the argument checks that raise it too.
    pyo3::import_exception!(alphanet_fast._validation, KernelError);
}

/// The Python exception for a kernel error.
fn to_py(e: KernelError) -> PyErr {
    if e.is_out_of_memory() {
        PyMemoryError::new_err(e.to_string())
    } else {
        exc::KernelError::new_err((e.to_string(), e.argument(), e.row()))
    }
}

/// Run a binding's body; a panic becomes a `RuntimeError` naming the kernel
/// instead of unwinding into Python.
fn guarded<R>(kernel: &str, body: impl FnOnce() -> PyResult<R>) -> PyResult<R> {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload: Box<dyn Any + Send>| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(PyRuntimeError::new_err(format!(
            "internal error in the alphanet_fast kernel {kernel} ({what}); please report it \
             with the input shapes"
        )))
    })
}

/// Run a kernel without the GIL, on the kernels' pool; rows in its error are
/// counted from `row_offset` (the kernel saw rows `row_offset..` of an array).
fn run_at<R: Send>(
    py: Python<'_>,
    row_offset: usize,
    kernel: impl FnOnce() -> Result<R, KernelError> + Send,
) -> PyResult<R> {
    let outcome = py.detach(|| pool::install(kernel));
    warn_pool_note(py)?;
    outcome.map_err(|e| to_py(e.with_row_offset(row_offset)))
}

fn run<R: Send>(
    py: Python<'_>,
    kernel: impl FnOnce() -> Result<R, KernelError> + Send,
) -> PyResult<R> {
    run_at(py, 0, kernel)
}

/// A thread-count setting the pool had to override is reported once, as a warning.
fn warn_pool_note(py: Python<'_>) -> PyResult<()> {
    match pool::take_note() {
        Some(note) => {
            let message = CString::new(note).unwrap_or_default();
            PyErr::warn(py, &py.get_type::<PyRuntimeWarning>(), &message, 1)
        }
        None => Ok(()),
    }
}

/// A float32 or float64 matrix, borrowed from numpy without a copy.
#[derive(FromPyObject)]
enum Matrix<'py> {
    F32(PyReadonlyArray2<'py, f32>),
    F64(PyReadonlyArray2<'py, f64>),
}

#[derive(FromPyObject)]
enum Vector<'py> {
    F32(PyReadonlyArray1<'py, f32>),
    F64(PyReadonlyArray1<'py, f64>),
}

/// Calls the generic `$f::<T>(...)` with `T` the dtype of the matrix `$m`: the
/// one place where the bindings branch on float32 / float64.
macro_rules! by_dtype {
    ($m:expr, $f:ident($($arg:expr),* $(,)?)) => {
        match $m {
            Matrix::F32(_) => $f::<f32>($($arg),*),
            Matrix::F64(_) => $f::<f64>($($arg),*),
        }
    };
}

/// The element types of [`Matrix`] and [`Vector`], as typed views.
trait Float: Real + numpy::Element {
    const NAME: &'static str;
    const MAX: f64;
    fn matrix<'a>(m: &'a Matrix<'_>) -> Option<&'a PyReadonlyArray2<'a, Self>>;
    fn vector<'a>(v: &'a Vector<'_>) -> Option<&'a PyReadonlyArray1<'a, Self>>;
}

macro_rules! impl_float {
    ($t:ty, $variant:ident) => {
        impl Float for $t {
            const NAME: &'static str = stringify!($t);
            const MAX: f64 = <$t>::MAX as f64;
            fn matrix<'a>(m: &'a Matrix<'_>) -> Option<&'a PyReadonlyArray2<'a, Self>> {
                match m {
                    Matrix::$variant(a) => Some(a),
                    _ => None,
                }
            }
            fn vector<'a>(v: &'a Vector<'_>) -> Option<&'a PyReadonlyArray1<'a, Self>> {
                match v {
                    Vector::$variant(a) => Some(a),
                    _ => None,
                }
            }
        }
    };
}
impl_float!(f32, F32);
impl_float!(f64, F64);

fn mixed(arg: &str) -> PyErr {
    PyTypeError::new_err(format!(
        "{arg}: dtype differs from the first array's (float32 vs float64)"
    ))
}

/// Reject arrays whose elements are not naturally aligned (possible for buffers
/// unpickled from another process): the kernels read them through references.
/// The Python wrappers copy such arrays before they get here.
fn aligned<T: numpy::Element, D: ndarray::Dimension>(
    a: &numpy::PyReadonlyArray<'_, T, D>,
    arg: &str,
) -> PyResult<()> {
    if (a.data() as usize) % std::mem::align_of::<T>() != 0 {
        return Err(exc::KernelError::new_err((
            format!(
                "{arg}: the array's data are not aligned for its dtype; pass a copy \
                 (np.require(x, requirements='A'))"
            ),
            arg.to_string(),
            None::<usize>,
        )));
    }
    Ok(())
}

/// `m` as a view of element type `T` (the dtype of the call's first matrix).
fn typed<'a, T: Float>(m: &'a Matrix<'_>, arg: &str) -> PyResult<ArrayView2<'a, T>> {
    let a = T::matrix(m).ok_or_else(|| mixed(arg))?;
    aligned(a, arg)?;
    Ok(a.as_array())
}

fn contiguous<'a, T: numpy::Element>(
    a: &'a PyReadonlyArray1<'_, T>,
    arg: &str,
) -> PyResult<&'a [T]> {
    aligned(a, arg)?;
    a.as_slice().map_err(|_| {
        exc::KernelError::new_err((
            format!("{arg}: expected a contiguous 1-d array"),
            arg.to_string(),
            None::<usize>,
        ))
    })
}

/// A copy of an index array, taken while the interpreter is held: the kernel
/// validates and reads the copy, which no other thread can change.
fn owned_indices(a: &PyReadonlyArray1<'_, i64>, arg: &str) -> PyResult<Vec<i64>> {
    Ok(contiguous(a, arg)?.to_vec())
}

/// A count argument (`n_classes`, `k`, `row_offset`): an integer beyond the
/// platform's range is a `KernelError` naming it, not an `OverflowError`.
fn count(ob: &Bound<'_, PyAny>, arg: &'static str) -> PyResult<usize> {
    ob.extract::<usize>().map_err(|e| {
        if e.is_instance_of::<PyOverflowError>(ob.py()) {
            to_py(KernelError::Value {
                arg,
                row: None,
                message: format!("expected a non-negative integer below 2**64, found {ob}"),
            })
        } else {
            e
        }
    })
}

/// A zero-filled array from numpy's allocator: an allocation failure is
/// numpy's `MemoryError`, and large buffers get huge pages (first-touching a
/// large fresh buffer page by page costs more than a whole pass over the data
/// on some machines).
fn zeros<'py, T: numpy::Element>(
    py: Python<'py>,
    shape: impl IntoPyObject<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    py.import("numpy")?
        .getattr("zeros")?
        .call1((shape, numpy::dtype::<T>(py)))
}

fn zeros2<'py, T: numpy::Element>(
    py: Python<'py>,
    rows: usize,
    cols: usize,
) -> PyResult<Bound<'py, PyArray2<T>>> {
    Ok(zeros::<T>(py, (rows, cols))?.cast_into::<PyArray2<T>>()?)
}

/// Float64 sums and int64 counts per class.
type SumsAndCounts<'py> = (Bound<'py, PyArray2<f64>>, Bound<'py, PyArray1<i64>>);

/// Per-class sums in fresh numpy buffers. `means_itemsize` is the size of the
/// means the caller will allocate next (0 if none), counted in the memory check.
fn sums_in_numpy<'py, T: Float>(
    py: Python<'py>,
    features: &Matrix<'py>,
    labels: &[i64],
    n_classes: usize,
    means_itemsize: usize,
) -> PyResult<SumsAndCounts<'py>> {
    let x = typed::<T>(features, "features")?;
    let d = x.ncols();
    require_allocatable(
        "n_classes",
        format!("{n_classes} classes x {d} columns of per-class sums"),
        &[(&[n_classes, d], 8 + means_itemsize), (&[n_classes], 8)],
    )
    .map_err(to_py)?;
    let sums = zeros2::<f64>(py, n_classes, d)?;
    let counts = zeros::<i64>(py, (n_classes,))?.cast_into::<PyArray1<i64>>()?;
    {
        let mut s = sums.readwrite();
        let mut c = counts.readwrite();
        let (s, c) = (s.as_array_mut(), c.as_slice_mut()?);
        run(py, || crate::accumulate_class_sums(x, labels, s, c))?;
    }
    Ok((sums, counts))
}

fn means_in_numpy<'py, T: Float>(
    py: Python<'py>,
    sums: &Bound<'py, PyArray2<f64>>,
    counts: &Bound<'py, PyArray1<i64>>,
) -> PyResult<Bound<'py, PyAny>> {
    let (s, c) = (sums.readonly(), counts.readonly());
    let (rows, cols) = (s.shape()[0], s.shape()[1]);
    if c.len() != rows {
        return Err(to_py(KernelError::Shape {
            arg: "counts",
            message: format!("expected {rows} entries (rows of sums), found {}", c.len()),
        }));
    }
    let means = zeros2::<T>(py, rows, cols)?;
    {
        let mut m = means.readwrite();
        let (s, c, m) = (s.as_array(), contiguous(&c, "counts")?, m.as_array_mut());
        run(py, || {
            crate::means_from_sums(s, c, m);
            Ok(())
        })?;
    }
    Ok(means.into_any())
}

#[pyfunction]
fn class_means<'py>(
    py: Python<'py>,
    features: Matrix<'py>,
    labels: PyReadonlyArray1<'py, i64>,
    n_classes: &Bound<'py, PyAny>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyArray1<i64>>)> {
    guarded("class_means", || {
        let labels = owned_indices(&labels, "labels")?;
        let n_classes = count(n_classes, "n_classes")?;
        let itemsize = by_dtype!(&features, size_of());
        let (sums, counts) = by_dtype!(
            &features,
            sums_in_numpy(py, &features, &labels, n_classes, itemsize)
        )?;
        let means = by_dtype!(&features, means_in_numpy(py, &sums, &counts))?;
        Ok((means, counts))
    })
}

#[pyfunction]
fn class_sums<'py>(
    py: Python<'py>,
    features: Matrix<'py>,
    labels: PyReadonlyArray1<'py, i64>,
    n_classes: &Bound<'py, PyAny>,
) -> PyResult<SumsAndCounts<'py>> {
    guarded("class_sums", || {
        let labels = owned_indices(&labels, "labels")?;
        let n_classes = count(n_classes, "n_classes")?;
        by_dtype!(
            &features,
            sums_in_numpy(py, &features, &labels, n_classes, 0)
        )
    })
}

fn accumulate_typed<T: Float>(
    py: Python<'_>,
    features: &Matrix<'_>,
    labels: &[i64],
    sums: &mut numpy::PyReadwriteArray2<'_, f64>,
    counts: &mut numpy::PyReadwriteArray1<'_, i64>,
    row_offset: usize,
) -> PyResult<()> {
    let x = typed::<T>(features, "features")?;
    let (s, c) = (sums.as_array_mut(), counts.as_slice_mut()?);
    run_at(py, row_offset, || {
        crate::accumulate_class_sums(x, labels, s, c)
    })
}

/// Add rows to running per-class sums and counts, in place. Rows in an error
/// are counted from `row_offset` (the chunk's first row in the whole array).
#[pyfunction]
#[pyo3(signature = (features, labels, sums, counts, row_offset=None))]
fn accumulate_class_sums<'py>(
    py: Python<'py>,
    features: Matrix<'py>,
    labels: PyReadonlyArray1<'py, i64>,
    mut sums: numpy::PyReadwriteArray2<'py, f64>,
    mut counts: numpy::PyReadwriteArray1<'py, i64>,
    row_offset: Option<&Bound<'py, PyAny>>,
) -> PyResult<()> {
    guarded("accumulate_class_sums", || {
        let labels = owned_indices(&labels, "labels")?;
        let row_offset = row_offset.map_or(Ok(0), |r| count(r, "row_offset"))?;
        by_dtype!(
            &features,
            accumulate_typed(py, &features, &labels, &mut sums, &mut counts, row_offset)
        )
    })
}

/// Per-class means from float64 sums and counts, in the given dtype.
#[pyfunction]
fn means_from_sums<'py>(
    py: Python<'py>,
    sums: Bound<'py, PyArray2<f64>>,
    counts: Bound<'py, PyArray1<i64>>,
    double: bool,
) -> PyResult<Bound<'py, PyAny>> {
    guarded("means_from_sums", || {
        if double {
            means_in_numpy::<f64>(py, &sums, &counts)
        } else {
            means_in_numpy::<f32>(py, &sums, &counts)
        }
    })
}

fn parse_metric(metric: &str) -> PyResult<Metric> {
    match metric {
        "euclidean" => Ok(Metric::Euclidean),
        "cosine" => Ok(Metric::Cosine),
        other => Err(to_py(KernelError::Value {
            arg: "metric",
            row: None,
            message: format!("expected 'euclidean' or 'cosine', found {other:?}"),
        })),
    }
}

/// Indices and values, `n x k`, as numpy arrays.
type Ranked<'py> = (Bound<'py, PyArray2<i64>>, Bound<'py, PyAny>);

fn ranked<'py, T: Float>(py: Python<'py>, (i, v): (Array2<i64>, Array2<T>)) -> Ranked<'py> {
    (i.into_pyarray(py), v.into_pyarray(py).into_any())
}

fn neighbors_typed<'py, T: Float>(
    py: Python<'py>,
    queries: &Matrix<'py>,
    pool: &Matrix<'py>,
    dots: &Matrix<'py>,
    k: usize,
    metric: Metric,
) -> PyResult<Ranked<'py>> {
    let q = typed::<T>(queries, "queries")?;
    let (p, g) = (typed::<T>(pool, "pool")?, typed::<T>(dots, "dots")?);
    let (i, d) = run(py, || {
        crate::nearest_neighbors_from_dots(q, p, g, k, metric)
    })?;
    if let Some(row) = d
        .outer_iter()
        .position(|r| r.iter().any(|v| !v.is_finite()))
    {
        // Finite inputs whose distances leave the dtype's range.
        return Err(to_py(KernelError::ResultOverflow {
            arg: "queries",
            row: Some(row),
            message: format!(
                "row {row}: distances exceed the {} range; rescale the inputs",
                T::NAME
            ),
        }));
    }
    Ok(ranked(py, (i, d)))
}

/// Exact neighbours from caller-supplied dot products (candidates only).
#[pyfunction]
fn nearest_neighbors_from_dots<'py>(
    py: Python<'py>,
    queries: Matrix<'py>,
    pool: Matrix<'py>,
    dots: Matrix<'py>,
    k: &Bound<'py, PyAny>,
    metric: &str,
) -> PyResult<Ranked<'py>> {
    guarded("nearest_neighbors", || {
        let (k, metric) = (count(k, "k")?, parse_metric(metric)?);
        by_dtype!(
            &queries,
            neighbors_typed(py, &queries, &pool, &dots, k, metric)
        )
    })
}

fn combine_typed<'py, T: Float>(
    py: Python<'py>,
    weight: &Matrix<'py>,
    targets: &[i64],
    neighbors: ndarray::ArrayView2<'_, i64>,
    alphas: ndarray::ArrayView2<'_, f64>,
) -> PyResult<Bound<'py, PyAny>> {
    let w = typed::<T>(weight, "W")?;
    let out = zeros2::<T>(py, w.nrows(), w.ncols())?;
    {
        let mut o = out.readwrite();
        let mut o = o.as_array_mut();
        let view = o.view_mut();
        run(py, || {
            crate::combine_into(w, targets, neighbors, alphas, view)
        })?;
        // Every input is finite (checked); a non-finite row is an overflow.
        let bad = targets
            .iter()
            .position(|&t| o.row(t as usize).iter().any(|v| !v.is_finite()));
        if let Some(t) = bad {
            return Err(to_py(KernelError::ResultOverflow {
                arg: "alphas",
                row: Some(t),
                message: format!(
                    "row {t} combines rows of W into values beyond the {} range; \
                     rescale W or alphas",
                    T::NAME
                ),
            }));
        }
    }
    Ok(out.into_any())
}

#[pyfunction]
#[allow(non_snake_case)]
fn combine<'py>(
    py: Python<'py>,
    W: Matrix<'py>,
    targets: PyReadonlyArray1<'py, i64>,
    neighbors: PyReadonlyArray2<'py, i64>,
    alphas: PyReadonlyArray2<'py, f64>,
) -> PyResult<Bound<'py, PyAny>> {
    guarded("combine", || {
        let targets = owned_indices(&targets, "targets")?;
        aligned(&neighbors, "neighbors")?;
        aligned(&alphas, "alphas")?;
        let neighbors = neighbors.as_array().to_owned();
        let alphas = alphas.as_array();
        by_dtype!(
            &W,
            combine_typed(py, &W, &targets, neighbors.view(), alphas)
        )
    })
}

/// Scores `x · w + b` can overflow only if `max|x_i| max|w_j| + max|b|`
/// (Cauchy-Schwarz on the rows, rounding included) reaches the dtype's range;
/// checked cheaply first with the largest elements.
fn require_scores_fit<T: Float>(
    x: ArrayView2<'_, T>,
    w: ArrayView2<'_, T>,
    bias: Option<&[T]>,
) -> Result<(), KernelError> {
    let b = bias.map_or(0.0, |b| {
        b.iter().fold(0.0f64, |m, v| m.max(v.to_f64().abs()))
    });
    let cheap = max_abs(x) * max_abs(w) * x.ncols() as f64 * 1.01 + b;
    if cheap < T::MAX / 2.0 {
        return Ok(());
    }
    let (xn, wn) = (max_row_norm(x), max_row_norm(w));
    if !(xn.is_finite() && wn.is_finite() && b.is_finite()) || xn * wn * 1.01 + b < T::MAX {
        // Non-finite inputs are reported by the kernel, with their row.
        return Ok(());
    }
    Err(KernelError::ResultOverflow {
        arg: "features",
        row: None,
        message: format!(
            "the scores features @ W.T + b can exceed the {} range (row norms up to {xn:.3e} \
             and {wn:.3e}); rescale features or W",
            T::NAME
        ),
    })
}

fn topk_typed<'py, T: Float>(
    py: Python<'py>,
    features: &Matrix<'py>,
    weight: &Matrix<'py>,
    b: Option<&Vector<'py>>,
    k: usize,
    row_offset: usize,
) -> PyResult<Ranked<'py>> {
    let (x, w) = (typed::<T>(features, "features")?, typed::<T>(weight, "W")?);
    let bias = match b {
        None => None,
        Some(v) => Some(contiguous(T::vector(v).ok_or_else(|| mixed("b"))?, "b")?),
    };
    let (n, c) = (x.nrows(), w.nrows());
    if k >= 1 && k <= c {
        require_allocatable(
            "k",
            format!("the top {k} of {c} classes for {n} rows"),
            &[(&[n, k], 8 + std::mem::size_of::<T>())],
        )
        .map_err(to_py)?;
    }
    run_at(py, row_offset, || {
        require_scores_fit(x, w, bias)?;
        crate::topk_scores(x, w, bias, k)
    })
    .map(|r| ranked(py, r))
}

/// The top-k classes of `features @ W.T + b`. Rows in an error are counted
/// from `row_offset` (the chunk's first row in the whole array).
#[pyfunction]
#[pyo3(signature = (features, W, b, k, row_offset=None))]
#[allow(non_snake_case)]
fn topk_scores<'py>(
    py: Python<'py>,
    features: Matrix<'py>,
    W: Matrix<'py>,
    b: Option<Vector<'py>>,
    k: &Bound<'py, PyAny>,
    row_offset: Option<&Bound<'py, PyAny>>,
) -> PyResult<Ranked<'py>> {
    guarded("topk_scores", || {
        let k = count(k, "k")?;
        let row_offset = row_offset.map_or(Ok(0), |r| count(r, "row_offset"))?;
        by_dtype!(
            &features,
            topk_typed(py, &features, &W, b.as_ref(), k, row_offset)
        )
    })
}

fn probe_typed<T: Float>(py: Python<'_>, x: &Matrix<'_>) -> PyResult<f64> {
    let x = typed::<T>(x, "x")?;
    run(py, || Ok(crate::probe::sum_all(x)))
}

/// Sum of every element: a plain parallel read, the bandwidth yardstick of the benchmarks.
#[pyfunction]
fn _read_probe(py: Python<'_>, x: Matrix<'_>) -> PyResult<f64> {
    guarded("_read_probe", || by_dtype!(&x, probe_typed(py, &x)))
}

/// Number of threads the kernels use.
#[pyfunction]
fn get_num_threads(py: Python<'_>) -> PyResult<usize> {
    let n = pool::num_threads();
    warn_pool_note(py)?;
    Ok(n)
}

/// Set the kernels' thread count (0 restores the default; at most `max_threads()`).
#[pyfunction]
fn set_num_threads(n: usize) {
    pool::set_num_threads(n)
}

/// The most threads the kernels' pool starts (4 per available CPU).
#[pyfunction]
fn max_threads() -> usize {
    pool::max_threads()
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(class_means, m)?)?;
    m.add_function(wrap_pyfunction!(class_sums, m)?)?;
    m.add_function(wrap_pyfunction!(accumulate_class_sums, m)?)?;
    m.add_function(wrap_pyfunction!(means_from_sums, m)?)?;
    m.add_function(wrap_pyfunction!(nearest_neighbors_from_dots, m)?)?;
    m.add_function(wrap_pyfunction!(combine, m)?)?;
    m.add_function(wrap_pyfunction!(topk_scores, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(_read_probe, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(max_threads, m)?)?;
    m.add("THREADS_ENV", pool::THREADS_ENV)?;
    m.add("TOPK_ROW_BLOCK", crate::topk::ROW_BLOCK)?;
    Ok(())
}
