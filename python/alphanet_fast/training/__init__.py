"""AlphaNet training: :func:`correct` and the stages it is made of.

The stages, in the order a run goes through them (ARCHITECTURE.md has the map):

* :mod:`.sampling`: the memory :class:`Budgets`, class-balanced draws
  (:func:`class_balanced_rows`) and every epoch's samples, cut into windows;
* :mod:`.scoring`: the scores against the original weights, computed once
  (:class:`~.scoring.FrozenScores`) and fed to the steps (:class:`~.scoring.Feed`);
* :mod:`.network`: the network and its training step, written out by hand;
* :mod:`.trainer`: the epochs of steps, validation, the kept epoch, the history;
* :mod:`.pieces`: the first layer's fixed pieces, shared with helper threads
  when that is measured faster;
* :mod:`.correct`: :func:`correct` itself (check, split, choose neighbours,
  train, combine).

Examples
--------
>>> from alphanet_fast.training import Budgets, correct
>>> Budgets().frozen == 96 << 20, Budgets(val=0).val
(True, 0)
"""

from alphanet_fast.training.correct import LOOP_THREADS, correct
from alphanet_fast.training.sampling import (
    Budgets,
    ClassBalancedSampler,
    class_balanced_rows,
    current_budgets,
    using_budgets,
)

__all__ = [
    "Budgets",
    "ClassBalancedSampler",
    "LOOP_THREADS",
    "class_balanced_rows",
    "correct",
    "current_budgets",
    "using_budgets",
]
