//! The one error type of the kernels. Each variant names the argument at fault
//! (with the public parameter name) so that the binding can pass the message on
//! unchanged.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum KernelError {
    /// An argument has a shape that does not fit the others, or is empty.
    Shape { arg: &'static str, message: String },
    /// A floating-point argument holds NaN or infinity.
    NonFinite { arg: &'static str, row: usize },
    /// An index argument (labels, targets, neighbours) is out of its range.
    IndexOutOfRange {
        arg: &'static str,
        row: usize,
        value: i64,
        bound: usize,
    },
    /// Any other bad value (k out of range, duplicate targets, zero vectors for cosine).
    Value { arg: &'static str, message: String },
    /// Accumulated sums overflowed even though every input was finite.
    Overflow { arg: &'static str },
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::Shape { arg, message } => write!(f, "{arg}: {message}"),
            KernelError::NonFinite { arg, row } => {
                write!(
                    f,
                    "{arg}: row {row} contains NaN or infinity; all values must be finite"
                )
            }
            KernelError::IndexOutOfRange {
                arg,
                row,
                value,
                bound,
            } => write!(
                f,
                "{arg}: entry {row} is {value}, expected an integer in [0, {bound})"
            ),
            KernelError::Value { arg, message } => write!(f, "{arg}: {message}"),
            KernelError::Overflow { arg } => write!(
                f,
                "{arg}: sums overflowed float64 although every value is finite; rescale the input"
            ),
        }
    }
}

impl std::error::Error for KernelError {}

pub type Result<T> = std::result::Result<T, KernelError>;
