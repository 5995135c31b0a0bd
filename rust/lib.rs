//! Exact, multi-threaded kernels behind alphanet_fast.
//!
//! The kernels are plain functions over `ndarray` views and know nothing of
//! Python: [`class_means`], [`nearest_neighbors`], [`combine`] and
//! [`topk_scores`]. Every kernel splits its work into pieces whose boundaries
//! depend only on the input shapes, never on the number of threads, so results
//! are bitwise identical whatever the size of the thread pool ([`pool`]). The PyO3 binding lives in
//! `python.rs`, behind the `python` feature.

pub mod class_means;
pub mod combine;
pub mod error;
pub mod few_loss;
#[doc(hidden)]
pub mod matmul;
pub mod neighbors;
pub mod pool;
pub mod probe;
pub mod real;
mod select;
pub mod simd;
#[cfg(test)]
mod test_rng;
pub mod thin;
pub mod topk;
mod validate;

#[cfg(feature = "python")]
mod python;

pub use class_means::{accumulate_class_sums, class_means, class_sums, means_from_sums, ClassSums};
pub use combine::{combine, combine_into};
pub use error::KernelError;
pub use neighbors::{nearest_neighbors, nearest_neighbors_from_dots, Metric};
pub use real::Real;
pub use topk::topk_scores;
