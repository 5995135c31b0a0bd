//! Between Python objects and kernel arguments: typed array views (one generic
//! [`Float`] for float32 and float64), index arrays copied while the interpreter
//! is held, count arguments, numpy-allocated outputs, and kernel errors and
//! panics turned into Python exceptions.

use std::any::Any;
use std::ffi::CString;
use std::panic::{catch_unwind, AssertUnwindSafe};

use ndarray::ArrayView2;
use numpy::{PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::{
    PyMemoryError, PyOverflowError, PyRuntimeError, PyRuntimeWarning, PyTypeError,
};
use pyo3::prelude::*;

use crate::error::KernelError;
use crate::{pool, Real};

/// `alphanet_fast.ArgumentError(message, argument, row)`. The class is defined in
/// Python, next to the argument checks that raise it too, and looked up in the
/// already imported module at each error rather than cached: a cache being
/// filled by one thread while another forks would leave the child waiting.
pub(super) fn kernel_error(message: String, arg: &str, row: Option<usize>) -> PyErr {
    Python::attach(|py| {
        let made = py
            .import("alphanet_fast._errors")
            .and_then(|m| m.getattr("ArgumentError"))
            .and_then(|class| class.call1((message, arg, row)));
        match made {
            Ok(exception) => PyErr::from_value(exception),
            Err(e) => e,
        }
    })
}

/// The Python exception for a kernel error.
pub(super) fn to_py(e: KernelError) -> PyErr {
    if e.is_out_of_memory() {
        PyMemoryError::new_err(e.to_string())
    } else {
        kernel_error(e.to_string(), e.argument(), e.row())
    }
}

/// Run a binding's body; a panic becomes a `RuntimeError` naming the kernel
/// instead of unwinding into Python.
pub(super) fn guarded<R>(kernel: &str, body: impl FnOnce() -> PyResult<R>) -> PyResult<R> {
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
pub(super) fn run_at<R: Send>(
    py: Python<'_>,
    row_offset: usize,
    kernel: impl FnOnce() -> Result<R, KernelError> + Send,
) -> PyResult<R> {
    let outcome = py.detach(|| pool::install(kernel));
    warn_pool_note(py)?;
    outcome.map_err(|e| to_py(e.with_row_offset(row_offset)))
}

pub(super) fn run<R: Send>(
    py: Python<'_>,
    kernel: impl FnOnce() -> Result<R, KernelError> + Send,
) -> PyResult<R> {
    run_at(py, 0, kernel)
}

/// A thread-count setting the pool had to override is reported once, as a warning.
pub(super) fn warn_pool_note(py: Python<'_>) -> PyResult<()> {
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
pub(super) enum Matrix<'py> {
    F32(PyReadonlyArray2<'py, f32>),
    F64(PyReadonlyArray2<'py, f64>),
}

#[derive(FromPyObject)]
pub(super) enum Vector<'py> {
    F32(PyReadonlyArray1<'py, f32>),
    F64(PyReadonlyArray1<'py, f64>),
}

/// The element types of [`Matrix`] and [`Vector`], as typed views.
pub(super) trait Float: Real + numpy::Element {
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

pub(super) fn mixed(arg: &str) -> PyErr {
    PyTypeError::new_err(format!(
        "{arg}: dtype differs from the first array's (float32 vs float64)"
    ))
}

/// Reject arrays whose elements are not naturally aligned (possible for buffers
/// unpickled from another process): the kernels read them through references.
/// The Python wrappers copy such arrays before they get here.
pub(super) fn aligned<T: numpy::Element, D: ndarray::Dimension>(
    a: &numpy::PyReadonlyArray<'_, T, D>,
    arg: &str,
) -> PyResult<()> {
    if !(a.data() as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(kernel_error(
            format!(
                "{arg}: the array's data are not aligned for its dtype; pass a copy \
                 (np.require(x, requirements='A'))"
            ),
            arg,
            None,
        ));
    }
    Ok(())
}

/// `m` as a view of element type `T` (the dtype of the call's first matrix).
pub(super) fn typed<'a, T: Float>(m: &'a Matrix<'_>, arg: &str) -> PyResult<ArrayView2<'a, T>> {
    let a = T::matrix(m).ok_or_else(|| mixed(arg))?;
    aligned(a, arg)?;
    Ok(a.as_array())
}

pub(super) fn contiguous<'a, T: numpy::Element>(
    a: &'a PyReadonlyArray1<'_, T>,
    arg: &str,
) -> PyResult<&'a [T]> {
    aligned(a, arg)?;
    a.as_slice()
        .map_err(|_| kernel_error(format!("{arg}: expected a contiguous 1-d array"), arg, None))
}

/// A copy of an index array, taken while the interpreter is held: the kernel
/// validates and reads the copy, which no other thread can change.
pub(super) fn owned_indices(a: &PyReadonlyArray1<'_, i64>, arg: &str) -> PyResult<Vec<i64>> {
    Ok(contiguous(a, arg)?.to_vec())
}

/// A count argument (`n_classes`, `k`, `row_offset`): an integer beyond the
/// platform's range is a `KernelError` naming it, not an `OverflowError`.
pub(super) fn count(ob: &Bound<'_, PyAny>, arg: &'static str) -> PyResult<usize> {
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
pub(super) fn zeros<'py, T: numpy::Element>(
    py: Python<'py>,
    shape: impl IntoPyObject<'py>,
) -> PyResult<Bound<'py, PyAny>> {
    py.import("numpy")?
        .getattr("zeros")?
        .call1((shape, numpy::dtype::<T>(py)))
}

pub(super) fn zeros2<'py, T: numpy::Element>(
    py: Python<'py>,
    rows: usize,
    cols: usize,
) -> PyResult<Bound<'py, PyArray2<T>>> {
    Ok(zeros::<T>(py, (rows, cols))?.cast_into::<PyArray2<T>>()?)
}
