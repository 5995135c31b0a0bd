"""alphanet_fast: AlphaNet post-hoc correction of long-tailed classifiers.

Rare classes of a long-tailed classifier get their last-layer weights moved by
a learned combination of their nearest frequent classes' weights (AlphaNet,
arXiv 2008.07073). The heavy kernels are exact, multi-threaded Rust.
"""

from typing import TYPE_CHECKING, Any

from alphanet_fast import _core
from alphanet_fast._errors import ArgumentError, ArgumentTypeError
from alphanet_fast.evaluation import EvaluationReport, evaluate, format_table
from alphanet_fast.kernels import (
    KernelError,
    class_means,
    class_sums,
    combine,
    get_num_threads,
    nearest_neighbors,
    set_num_threads,
    topk_scores,
)
from alphanet_fast.result import AlphaNetResult, load_result
from alphanet_fast.splits import Splits, splits_from_counts

if TYPE_CHECKING:
    from alphanet_fast import baselines, datasets
    from alphanet_fast import torch as torch
    from alphanet_fast.comparison import ComparisonReport, ComparisonRun, compare
    from alphanet_fast.training import correct

# Provided on first use by __getattr__ (each imports torch).
_LAZY = (
    "correct", "datasets", "torch", "baselines", "compare", "ComparisonReport", "ComparisonRun",
)  # fmt: skip


def __getattr__(name: str) -> Any:
    # torch is imported only when training (or the synthetic data, whose
    # baseline is trained) is first used: the kernels, evaluation and file
    # formats work without paying for it.
    if name == "correct":
        from alphanet_fast.training import correct

        return correct
    if name in ("datasets", "torch", "baselines"):
        import importlib

        return importlib.import_module(f"alphanet_fast.{name}")
    if name in ("compare", "ComparisonReport", "ComparisonRun"):
        # The comparison imports torch only when it trains (LWS, cRT, AlphaNet).
        from alphanet_fast import comparison

        return getattr(comparison, name)
    raise AttributeError(f"module 'alphanet_fast' has no attribute {name!r}")


def __dir__() -> list[str]:
    # The lazy names too, so that tab completion offers them.
    return sorted(set(globals()) | set(_LAZY))


#: Cargo.toml's version, compiled into the extension (the one place it is written).
__version__: str = _core.__version__

__all__ = [
    "__version__",
    "AlphaNetResult",
    "ComparisonReport",
    "ComparisonRun",
    "Splits",
    "baselines",
    "compare",
    "correct",
    "datasets",
    "load_result",
    "splits_from_counts",
    "EvaluationReport",
    "evaluate",
    "format_table",
    "ArgumentError",
    "ArgumentTypeError",
    "KernelError",
    "class_means",
    "class_sums",
    "combine",
    "get_num_threads",
    "nearest_neighbors",
    "set_num_threads",
    "topk_scores",
]
