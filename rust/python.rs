//! The PyO3 binding: converts arrays (no copies), leaves the interpreter while a
//! kernel runs on the thread pool, and turns kernel errors into `ValueError`.
//! It knows nothing of the algorithms; argument checks that need Python types
//! (dtypes, ndim) live in the Python wrappers.

use std::panic::{catch_unwind, AssertUnwindSafe};

use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::error::KernelError;
use crate::{pool, Metric};

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

/// Run a kernel without the GIL, on the kernels' pool. A panic is caught here
/// and reported as a RuntimeError: it never unwinds into Python.
fn run<R: Send>(
    py: Python<'_>,
    kernel: impl FnOnce() -> Result<R, KernelError> + Send,
) -> PyResult<R> {
    let outcome = py.detach(|| pool::install(|| catch_unwind(AssertUnwindSafe(kernel))));
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(PyValueError::new_err(e.to_string())),
        Err(_) => Err(PyRuntimeError::new_err(
            "internal error in an alphanet_fast kernel; please report it with the input shapes",
        )),
    }
}

fn contiguous<'a, T: numpy::Element>(
    a: &'a PyReadonlyArray1<'_, T>,
    arg: &str,
) -> PyResult<&'a [T]> {
    aligned(a, arg)?;
    a.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{arg}: expected a contiguous 1-d array")))
}

/// Reject arrays whose elements are not naturally aligned (possible for buffers
/// unpickled from another process): the kernels read them through references.
/// The Python wrappers copy such arrays before they get here.
fn aligned<T: numpy::Element, D: ndarray::Dimension>(
    a: &numpy::PyReadonlyArray<'_, T, D>,
    arg: &str,
) -> PyResult<()> {
    if (a.data() as usize) % std::mem::align_of::<T>() != 0 {
        return Err(PyValueError::new_err(format!(
            "{arg}: the array's data are not aligned for its dtype; pass a copy (np.require(x, requirements='A'))"
        )));
    }
    Ok(())
}

impl Matrix<'_> {
    fn aligned(&self, arg: &str) -> PyResult<()> {
        match self {
            Matrix::F32(a) => aligned(a, arg),
            Matrix::F64(a) => aligned(a, arg),
        }
    }
}

fn mixed(arg: &str) -> PyErr {
    PyTypeError::new_err(format!(
        "{arg}: dtype differs from the first array's (float32 vs float64)"
    ))
}

/// Float64 sums and int64 counts per class.
type SumsAndCounts<'py> = (Bound<'py, PyArray2<f64>>, Bound<'py, PyArray1<i64>>);

/// Per-class sums into buffers from numpy's allocator, which asks the kernel for
/// huge pages: first-touching a large fresh buffer page by page costs more
/// than the whole pass over the features on some machines.
fn sums_in_numpy<'py>(
    py: Python<'py>,
    features: &Matrix<'py>,
    labels: &[i64],
    n_classes: usize,
) -> PyResult<SumsAndCounts<'py>> {
    let d = match features {
        Matrix::F32(x) => x.shape()[1],
        Matrix::F64(x) => x.shape()[1],
    };
    let sums = PyArray2::<f64>::zeros(py, [n_classes, d], false);
    let counts = PyArray1::<i64>::zeros(py, n_classes, false);
    {
        let mut s = sums.readwrite();
        let mut c = counts.readwrite();
        let (s, c) = (s.as_array_mut(), c.as_slice_mut()?);
        match features {
            Matrix::F32(x) => {
                let x = x.as_array();
                run(py, || crate::accumulate_class_sums(x, labels, s, c))?
            }
            Matrix::F64(x) => {
                let x = x.as_array();
                run(py, || crate::accumulate_class_sums(x, labels, s, c))?
            }
        }
    }
    Ok((sums, counts))
}

fn means_in_numpy<'py, T: crate::Real + numpy::Element>(
    py: Python<'py>,
    sums: &Bound<'py, PyArray2<f64>>,
    counts: &Bound<'py, PyArray1<i64>>,
) -> PyResult<Bound<'py, PyAny>> {
    let (s, c) = (sums.readonly(), counts.readonly());
    let means = PyArray2::<T>::zeros(py, [s.shape()[0], s.shape()[1]], false);
    {
        let mut m = means.readwrite();
        let (s, c, m) = (s.as_array(), c.as_slice()?, m.as_array_mut());
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
    n_classes: usize,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyArray1<i64>>)> {
    let labels = contiguous(&labels, "labels")?;
    features.aligned("features")?;
    let (sums, counts) = sums_in_numpy(py, &features, labels, n_classes)?;
    let means = match &features {
        Matrix::F32(_) => means_in_numpy::<f32>(py, &sums, &counts)?,
        Matrix::F64(_) => means_in_numpy::<f64>(py, &sums, &counts)?,
    };
    Ok((means, counts))
}

#[pyfunction]
fn class_sums<'py>(
    py: Python<'py>,
    features: Matrix<'py>,
    labels: PyReadonlyArray1<'py, i64>,
    n_classes: usize,
) -> PyResult<SumsAndCounts<'py>> {
    let labels = contiguous(&labels, "labels")?;
    features.aligned("features")?;
    sums_in_numpy(py, &features, labels, n_classes)
}

/// Add rows to running per-class sums and counts, in place.
#[pyfunction]
fn accumulate_class_sums<'py>(
    py: Python<'py>,
    features: Matrix<'py>,
    labels: PyReadonlyArray1<'py, i64>,
    mut sums: numpy::PyReadwriteArray2<'py, f64>,
    mut counts: numpy::PyReadwriteArray1<'py, i64>,
) -> PyResult<()> {
    let labels = contiguous(&labels, "labels")?;
    features.aligned("features")?;
    let (s, c) = (sums.as_array_mut(), counts.as_slice_mut()?);
    match &features {
        Matrix::F32(x) => {
            let x = x.as_array();
            run(py, || crate::accumulate_class_sums(x, labels, s, c))
        }
        Matrix::F64(x) => {
            let x = x.as_array();
            run(py, || crate::accumulate_class_sums(x, labels, s, c))
        }
    }
}

/// Per-class means from float64 sums and counts, in the given dtype.
#[pyfunction]
fn means_from_sums<'py>(
    py: Python<'py>,
    sums: Bound<'py, PyArray2<f64>>,
    counts: Bound<'py, PyArray1<i64>>,
    double: bool,
) -> PyResult<Bound<'py, PyAny>> {
    if double {
        means_in_numpy::<f64>(py, &sums, &counts)
    } else {
        means_in_numpy::<f32>(py, &sums, &counts)
    }
}

fn parse_metric(metric: &str) -> PyResult<Metric> {
    match metric {
        "euclidean" => Ok(Metric::Euclidean),
        "cosine" => Ok(Metric::Cosine),
        other => Err(PyValueError::new_err(format!(
            "metric: expected 'euclidean' or 'cosine', found {other:?}"
        ))),
    }
}

/// Exact neighbours from caller-supplied dot products (candidates only).
#[pyfunction]
fn nearest_neighbors_from_dots<'py>(
    py: Python<'py>,
    queries: Matrix<'py>,
    pool: Matrix<'py>,
    dots: Matrix<'py>,
    k: usize,
    metric: &str,
) -> PyResult<(Bound<'py, PyArray2<i64>>, Bound<'py, PyAny>)> {
    let metric = parse_metric(metric)?;
    queries.aligned("queries")?;
    pool.aligned("pool")?;
    dots.aligned("dots")?;
    match (&queries, &pool, &dots) {
        (Matrix::F32(q), Matrix::F32(p), Matrix::F32(g)) => {
            let (q, p, g) = (q.as_array(), p.as_array(), g.as_array());
            let (i, d) = run(py, || {
                crate::nearest_neighbors_from_dots(q, p, g, k, metric)
            })?;
            Ok((i.into_pyarray(py), d.into_pyarray(py).into_any()))
        }
        (Matrix::F64(q), Matrix::F64(p), Matrix::F64(g)) => {
            let (q, p, g) = (q.as_array(), p.as_array(), g.as_array());
            let (i, d) = run(py, || {
                crate::nearest_neighbors_from_dots(q, p, g, k, metric)
            })?;
            Ok((i.into_pyarray(py), d.into_pyarray(py).into_any()))
        }
        _ => Err(mixed("pool/dots")),
    }
}

#[pyfunction]
fn nearest_neighbors<'py>(
    py: Python<'py>,
    queries: Matrix<'py>,
    pool: Matrix<'py>,
    k: usize,
    metric: &str,
) -> PyResult<(Bound<'py, PyArray2<i64>>, Bound<'py, PyAny>)> {
    let metric = parse_metric(metric)?;
    queries.aligned("queries")?;
    pool.aligned("pool")?;
    match (&queries, &pool) {
        (Matrix::F32(q), Matrix::F32(p)) => {
            let (q, p) = (q.as_array(), p.as_array());
            let (i, d) = run(py, || crate::nearest_neighbors(q, p, k, metric))?;
            Ok((i.into_pyarray(py), d.into_pyarray(py).into_any()))
        }
        (Matrix::F64(q), Matrix::F64(p)) => {
            let (q, p) = (q.as_array(), p.as_array());
            let (i, d) = run(py, || crate::nearest_neighbors(q, p, k, metric))?;
            Ok((i.into_pyarray(py), d.into_pyarray(py).into_any()))
        }
        _ => Err(mixed("pool")),
    }
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
    let targets = contiguous(&targets, "targets")?;
    W.aligned("W")?;
    aligned(&neighbors, "neighbors")?;
    aligned(&alphas, "alphas")?;
    let (n, a) = (neighbors.as_array(), alphas.as_array());
    // The output comes from numpy's allocator (huge pages for large arrays):
    // first-touching a fresh W-sized buffer page by page costs more than the copy.
    match &W {
        Matrix::F32(w) => combine_in_numpy(py, w.as_array(), targets, n, a),
        Matrix::F64(w) => combine_in_numpy(py, w.as_array(), targets, n, a),
    }
}

fn combine_in_numpy<'py, T: crate::Real + numpy::Element>(
    py: Python<'py>,
    w: ndarray::ArrayView2<'_, T>,
    targets: &[i64],
    neighbors: ndarray::ArrayView2<'_, i64>,
    alphas: ndarray::ArrayView2<'_, f64>,
) -> PyResult<Bound<'py, PyAny>> {
    let out = PyArray2::<T>::zeros(py, [w.nrows(), w.ncols()], false);
    {
        let mut o = out.readwrite();
        let o = o.as_array_mut();
        run(py, || crate::combine_into(w, targets, neighbors, alphas, o))?;
    }
    Ok(out.into_any())
}

#[pyfunction]
#[pyo3(signature = (features, W, b, k))]
#[allow(non_snake_case)]
fn topk_scores<'py>(
    py: Python<'py>,
    features: Matrix<'py>,
    W: Matrix<'py>,
    b: Option<Vector<'py>>,
    k: usize,
) -> PyResult<(Bound<'py, PyArray2<i64>>, Bound<'py, PyAny>)> {
    features.aligned("features")?;
    W.aligned("W")?;
    match (&features, &W) {
        (Matrix::F32(x), Matrix::F32(w)) => {
            let bias = match &b {
                None => None,
                Some(Vector::F32(v)) => Some(v),
                Some(Vector::F64(_)) => return Err(mixed("b")),
            };
            let bias = bias.map(|v| contiguous(v, "b")).transpose()?;
            let (x, w) = (x.as_array(), w.as_array());
            let (i, s) = run(py, || crate::topk_scores(x, w, bias, k))?;
            Ok((i.into_pyarray(py), s.into_pyarray(py).into_any()))
        }
        (Matrix::F64(x), Matrix::F64(w)) => {
            let bias = match &b {
                None => None,
                Some(Vector::F64(v)) => Some(v),
                Some(Vector::F32(_)) => return Err(mixed("b")),
            };
            let bias = bias.map(|v| contiguous(v, "b")).transpose()?;
            let (x, w) = (x.as_array(), w.as_array());
            let (i, s) = run(py, || crate::topk_scores(x, w, bias, k))?;
            Ok((i.into_pyarray(py), s.into_pyarray(py).into_any()))
        }
        _ => Err(mixed("W")),
    }
}

/// Sum of every element: a plain parallel read, the bandwidth yardstick of the benchmarks.
#[pyfunction]
fn _read_probe(py: Python<'_>, x: Matrix<'_>) -> PyResult<f64> {
    x.aligned("x")?;
    match &x {
        Matrix::F32(a) => {
            let a = a.as_array();
            run(py, || Ok(crate::probe::sum_all(a)))
        }
        Matrix::F64(a) => {
            let a = a.as_array();
            run(py, || Ok(crate::probe::sum_all(a)))
        }
    }
}

/// Number of threads the kernels use.
#[pyfunction]
fn get_num_threads() -> usize {
    pool::num_threads()
}

/// Set the kernels' thread count; 0 restores the default.
#[pyfunction]
fn set_num_threads(n: usize) {
    pool::set_num_threads(n)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(class_means, m)?)?;
    m.add_function(wrap_pyfunction!(class_sums, m)?)?;
    m.add_function(wrap_pyfunction!(accumulate_class_sums, m)?)?;
    m.add_function(wrap_pyfunction!(means_from_sums, m)?)?;
    m.add_function(wrap_pyfunction!(nearest_neighbors, m)?)?;
    m.add_function(wrap_pyfunction!(nearest_neighbors_from_dots, m)?)?;
    m.add_function(wrap_pyfunction!(combine, m)?)?;
    m.add_function(wrap_pyfunction!(topk_scores, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(_read_probe, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add("THREADS_ENV", pool::THREADS_ENV)?;
    m.add("TOPK_ROW_BLOCK", crate::topk::ROW_BLOCK)?;
    Ok(())
}
