"""Type stubs for the compiled extension ``alphanet_fast._core``."""

import numpy as np
import numpy.typing as npt

__all__ = [
    "class_means",
    "class_sums",
    "accumulate_class_sums",
    "means_from_sums",
    "nearest_neighbors",
    "combine",
    "topk_scores",
    "thin_t_dot",
    "thin_dot",
    "few_loss",
    "few_best",
    "get_num_threads",
    "_read_probe",
    "set_num_threads",
    "max_threads",
    "THREADS_ENV",
    "TOPK_ROW_BLOCK",
    "THIN_PIECE_ROWS",
    "__version__",
]

THREADS_ENV: str
TOPK_ROW_BLOCK: int
THIN_PIECE_ROWS: int
__version__: str

def class_means(
    features: npt.NDArray[np.floating], labels: npt.NDArray[np.int64], n_classes: int
) -> tuple[npt.NDArray[np.floating], npt.NDArray[np.int64]]: ...
def class_sums(
    features: npt.NDArray[np.floating], labels: npt.NDArray[np.int64], n_classes: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]: ...
def accumulate_class_sums(
    features: npt.NDArray[np.floating],
    labels: npt.NDArray[np.int64],
    sums: npt.NDArray[np.float64],
    counts: npt.NDArray[np.int64],
    row_offset: int | None = None,
) -> None: ...
def means_from_sums(
    sums: npt.NDArray[np.float64], counts: npt.NDArray[np.int64], double: bool
) -> npt.NDArray[np.floating]: ...
def nearest_neighbors(
    queries: npt.NDArray[np.floating],
    pool: npt.NDArray[np.floating],
    k: int,
    metric: str,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.floating]]: ...
def combine(
    W: npt.NDArray[np.floating],
    targets: npt.NDArray[np.int64],
    neighbors: npt.NDArray[np.int64],
    alphas: npt.NDArray[np.float64],
) -> npt.NDArray[np.floating]: ...
def topk_scores(
    features: npt.NDArray[np.floating],
    W: npt.NDArray[np.floating],
    b: npt.NDArray[np.floating] | None,
    k: int,
    row_offset: int | None = None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.floating]]: ...
def thin_t_dot(
    a: npt.NDArray[np.floating],
    b: npt.NDArray[np.floating],
    out: npt.NDArray[np.floating],
    parallel: bool,
) -> None: ...
def thin_dot(
    a: npt.NDArray[np.floating],
    g: npt.NDArray[np.floating],
    out: npt.NDArray[np.floating],
    parallel: bool,
) -> None: ...
def few_loss(
    own: npt.NDArray[np.floating],
    neighbors: npt.NDArray[np.floating],
    base_lse: npt.NDArray[np.floating],
    target_score: npt.NDArray[np.floating],
    target_few: npt.NDArray[np.int64],
    alphas: npt.NDArray[np.floating],
    few_bias: npt.NDArray[np.floating],
    scale: float,
    grad: npt.NDArray[np.floating],
) -> float: ...
def few_best(
    own: npt.NDArray[np.floating],
    neighbors: npt.NDArray[np.floating],
    alphas: npt.NDArray[np.floating],
    few_bias: npt.NDArray[np.floating],
    scale: float,
    best: npt.NDArray[np.floating],
    arg: npt.NDArray[np.int64],
) -> None: ...
def get_num_threads() -> int: ...
def set_num_threads(n: int) -> None: ...
def max_threads() -> int: ...
def _read_probe(x: npt.NDArray[np.floating]) -> float: ...
