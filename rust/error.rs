//! The one error type of the kernels. Each variant names the argument at fault
//! (with the public parameter name) and, where there is one, the first offending
//! row or entry, so that the binding can raise a Python exception carrying both
//! as fields: nobody has to parse the message.

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
    /// Any other bad value (k out of range, duplicate targets, zero vectors for
    /// cosine), with the offending row where there is one.
    Value {
        arg: &'static str,
        row: Option<usize>,
        message: String,
    },
    /// Accumulated sums overflowed even though every input was finite.
    Overflow { arg: &'static str },
    /// The input read twice gave two answers: another thread wrote to it during
    /// the call (inputs are read in place, not copied).
    Changed { arg: &'static str },
    /// A result overflows its floating-point type although every input is
    /// finite (`row`: the first result row that does, where known).
    ResultOverflow {
        arg: &'static str,
        row: Option<usize>,
        message: String,
    },
    /// An output sized by the arguments needs more bytes than can be addressed
    /// (`bytes: None`) or than the machine has (`bytes: Some(..)`).
    TooLarge {
        arg: &'static str,
        what: String,
        bytes: Option<u128>,
        limit: u128,
    },
}

impl KernelError {
    /// The public name of the argument at fault.
    pub fn argument(&self) -> &'static str {
        match self {
            KernelError::Shape { arg, .. }
            | KernelError::NonFinite { arg, .. }
            | KernelError::IndexOutOfRange { arg, .. }
            | KernelError::Value { arg, .. }
            | KernelError::Overflow { arg }
            | KernelError::Changed { arg }
            | KernelError::ResultOverflow { arg, .. }
            | KernelError::TooLarge { arg, .. } => arg,
        }
    }

    /// The first offending row (or entry of a 1-d argument), if the error has one.
    pub fn row(&self) -> Option<usize> {
        match self {
            KernelError::NonFinite { row, .. } | KernelError::IndexOutOfRange { row, .. } => {
                Some(*row)
            }
            KernelError::Value { row, .. } | KernelError::ResultOverflow { row, .. } => *row,
            _ => None,
        }
    }

    /// The same error with its row counted from `offset` rows earlier: for a
    /// kernel that saw rows `offset..` of a larger array.
    pub fn with_row_offset(mut self, offset: usize) -> Self {
        match &mut self {
            KernelError::NonFinite { row, .. } | KernelError::IndexOutOfRange { row, .. } => {
                *row += offset
            }
            KernelError::Value { row: Some(row), .. }
            | KernelError::ResultOverflow { row: Some(row), .. } => *row += offset,
            _ => {}
        }
        self
    }

    /// True when the machine lacks the memory (a `MemoryError` in Python), as
    /// opposed to a bad value (a `ValueError`).
    pub fn is_out_of_memory(&self) -> bool {
        matches!(self, KernelError::TooLarge { bytes: Some(_), .. })
    }
}

fn gigabytes(bytes: u128) -> String {
    format!("{:.1} GB", bytes as f64 / 1e9)
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::Shape { arg, message }
            | KernelError::Value { arg, message, .. }
            | KernelError::ResultOverflow { arg, message, .. } => write!(f, "{arg}: {message}"),
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
            KernelError::Overflow { arg } => write!(
                f,
                "{arg}: sums overflowed float64 although every value is finite; rescale the input"
            ),
            KernelError::Changed { arg } => write!(
                f,
                "{arg}: the array changed while the kernel read it (another thread wrote to \
                 it during the call); pass an array that no one modifies until the call returns"
            ),
            KernelError::TooLarge {
                arg,
                what,
                bytes: None,
                limit,
            } => write!(
                f,
                "{arg}: {what} would need more than {limit} bytes, more than can be addressed"
            ),
            KernelError::TooLarge {
                arg,
                what,
                bytes: Some(bytes),
                limit,
            } => write!(
                f,
                "{arg}: {what} would need {}, more than this machine's {} of memory",
                gigabytes(*bytes),
                gigabytes(*limit)
            ),
        }
    }
}

impl std::error::Error for KernelError {}

pub type Result<T> = std::result::Result<T, KernelError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_row_offset() {
        let e = KernelError::NonFinite {
            arg: "features",
            row: 3,
        };
        assert_eq!((e.argument(), e.row()), ("features", Some(3)));
        let shifted = e.with_row_offset(100);
        assert_eq!(shifted.row(), Some(103));
        assert!(shifted.to_string().starts_with("features: row 103 "));
        let k = KernelError::Value {
            arg: "k",
            row: None,
            message: "expected 1 <= k <= 4".into(),
        };
        assert_eq!(k.clone().with_row_offset(9), k);
        assert_eq!((k.argument(), k.row()), ("k", None));
    }

    #[test]
    fn too_large_says_which_limit() {
        let unaddressable = KernelError::TooLarge {
            arg: "n_classes",
            what: "sums".into(),
            bytes: None,
            limit: 8,
        };
        assert!(!unaddressable.is_out_of_memory());
        let beyond_memory = KernelError::TooLarge {
            arg: "n_classes",
            what: "sums".into(),
            bytes: Some(3_000_000_000),
            limit: 2_000_000_000,
        };
        assert!(beyond_memory.is_out_of_memory());
        assert_eq!(
            beyond_memory.to_string(),
            "n_classes: sums would need 3.0 GB, more than this machine's 2.0 GB of memory"
        );
    }
}
