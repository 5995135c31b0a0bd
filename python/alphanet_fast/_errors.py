"""The one error type of bad arguments, and the one helper that raises it.

Every public entry point (the kernels, ``correct``, ``compare``, the baselines,
``evaluate``, ``alphanet_fast.torch``, ``Settings``, ``load_result``) reports a
bad argument as an :class:`ArgumentError` built by :func:`fail`, so a caller
(the command line, Dask, a user's code) reads ``.argument`` instead of parsing
a message. The Rust kernels raise the same class (looked up here by name).
"""

from __future__ import annotations

from typing import Any


class ArgumentError(ValueError):
    """A bad argument: a ``ValueError`` that names it.

    Parameters
    ----------
    message : str
        The whole message, starting with the argument's name.
    argument : str or None
        The public name of the argument at fault (``"features"``, ``"k"``,
        ``"tau"``, ...). Every error the package raises sets it.
    row : int or None
        The first offending row (or entry, for a 1-d argument) in the caller's
        numbering, or None where the fault is not in one row.
    value : object or None
        The offending value, for a scalar argument (None otherwise).

    Examples
    --------
    >>> import numpy as np, alphanet_fast as af
    >>> try:
    ...     af.class_means(np.array([[1.0], [np.nan]]), [0, 0])
    ... except af.ArgumentError as exc:
    ...     print(exc.argument, exc.row)
    features 1
    """

    def __init__(
        self,
        message: str,
        argument: str | None = None,
        row: int | None = None,
        value: Any = None,
    ) -> None:
        super().__init__(message)
        self.argument = argument
        self.row = row
        self.value = value

    @property
    def detail(self) -> str:
        """The message after its leading ``"{argument}: "``: what was expected and found.

        Every message of the package starts with the argument's name (:func:`fail`
        and the Rust kernels write it so), so a caller can put its own name for
        the argument in front, as the command line puts the flag.
        """
        text = str(self)
        prefix = f"{self.argument}: "
        return text[len(prefix) :] if self.argument and text.startswith(prefix) else text

    def __reduce__(self) -> tuple[Any, ...]:
        # Picklable with its fields (Dask sends errors from workers to the client).
        return (type(self), (str(self), self.argument, self.row, self.value))


class ArgumentTypeError(ArgumentError, TypeError):
    """An argument of the wrong kind (type or dtype): an :class:`ArgumentError`
    that is also a ``TypeError``, so ``except TypeError`` keeps working."""


def fail(
    argument: str,
    detail: str,
    row: int | None = None,
    *,
    value: Any = None,
    type_error: bool = False,
) -> ArgumentError:
    """The error ``"{argument}: {detail}"``, to be raised by the caller.

    ``type_error=True`` gives an :class:`ArgumentTypeError` (wrong kind of
    object); otherwise an :class:`ArgumentError` (wrong value or shape).
    """
    cls = ArgumentTypeError if type_error else ArgumentError
    return cls(f"{argument}: {detail}", argument, row, value)
