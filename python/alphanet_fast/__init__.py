"""alphanet_fast: AlphaNet post-hoc correction of long-tailed classifiers.

Rare classes of a long-tailed classifier get their last-layer weights moved by
a learned combination of their nearest frequent classes' weights (AlphaNet,
arXiv 2008.07073). The heavy kernels are exact, multi-threaded Rust.
"""

from alphanet_fast.kernels import (
    class_means,
    class_sums,
    combine,
    get_num_threads,
    nearest_neighbors,
    set_num_threads,
    topk_scores,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "class_means",
    "class_sums",
    "combine",
    "get_num_threads",
    "nearest_neighbors",
    "set_num_threads",
    "topk_scores",
]
