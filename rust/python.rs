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

/// Calls the generic `$f::<T>(...)` with `T` the dtype of the matrix `$m`: the
/// one place where the bindings branch on float32 / float64. Defined before the
/// submodules so that they use it too.
macro_rules! by_dtype {
    ($m:expr, $f:ident($($arg:expr),* $(,)?)) => {
        match $m {
            Matrix::F32(_) => $f::<f32>($($arg),*),
            Matrix::F64(_) => $f::<f64>($($arg),*),
        }
    };
}

mod convert;
mod step;

use ndarray::{Array2, ArrayView2};
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use crate::error::KernelError;
use crate::validate::{max_abs, max_row_norm, require_allocatable};
use crate::{pool, Metric};
use convert::{
    aligned, contiguous, count, guarded, mixed, owned_indices, run, run_at, to_py, typed,
    warn_pool_note, zeros, zeros2, Float, Matrix, Vector,
};

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
    k: usize,
    metric: Metric,
) -> PyResult<Ranked<'py>> {
    let (q, p) = (typed::<T>(queries, "queries")?, typed::<T>(pool, "pool")?);
    let (i, d) = run(py, || crate::nearest_neighbors(q, p, k, metric))?;
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

/// Exact k nearest pool rows of every query row.
#[pyfunction]
fn nearest_neighbors<'py>(
    py: Python<'py>,
    queries: Matrix<'py>,
    pool: Matrix<'py>,
    k: &Bound<'py, PyAny>,
    metric: &str,
) -> PyResult<Ranked<'py>> {
    guarded("nearest_neighbors", || {
        let (k, metric) = (count(k, "k")?, parse_metric(metric)?);
        by_dtype!(&queries, neighbors_typed(py, &queries, &pool, k, metric))
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
    // Build numpy's lazily initialised state (its C API table, the borrow
    // checker's shared flags) now, while the importing thread is the only user:
    // a fork while another thread is building it would leave the child waiting
    // on it forever.
    let probe = PyArray1::<f64>::zeros(m.py(), 1, false);
    drop(probe.readwrite());
    m.add_function(wrap_pyfunction!(class_means, m)?)?;
    m.add_function(wrap_pyfunction!(class_sums, m)?)?;
    m.add_function(wrap_pyfunction!(accumulate_class_sums, m)?)?;
    m.add_function(wrap_pyfunction!(means_from_sums, m)?)?;
    m.add_function(wrap_pyfunction!(nearest_neighbors, m)?)?;
    m.add_function(wrap_pyfunction!(combine, m)?)?;
    m.add_function(wrap_pyfunction!(topk_scores, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(_read_probe, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(max_threads, m)?)?;
    step::register(m)?;
    m.add("THREADS_ENV", pool::THREADS_ENV)?;
    m.add("TOPK_ROW_BLOCK", crate::topk::ROW_BLOCK)?;
    // The package's one version, Cargo.toml's (maturin gives it to the wheel too).
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
