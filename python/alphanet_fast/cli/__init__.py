"""The ``alphanet-fast`` command line.

Subcommands: ``demo`` (the whole pipeline on built-in synthetic data),
``correct``, ``compare`` (every post-hoc fix, one recommended; ``-o`` writes
it), ``baseline`` (one post-hoc fix, written), ``evaluate``, ``neighbors``,
``sweep`` and ``explain``. Run
``alphanet-fast <command> --help`` for the options of each.

A user error (a missing file or entry, shapes that disagree, a bad value, an
output that would overwrite an input, memory that cannot be had) prints one
line, ``alphanet-fast: error: ...``, to stderr and exits with status 1 (2 for
a malformed command line); ``--debug`` shows the traceback instead. Every
output file is written under a temporary name and renamed; Ctrl-C and
SIGTERM remove the temporary file. Output to a closed pipe (``| head``) ends
quietly with status 0.

Layout: :mod:`.parser` (shared options; the settings' flags generated from
:class:`alphanet_fast.settings.Settings`), one module per command group
(:mod:`.train`: correct, sweep, explain; :mod:`.compare`; :mod:`.baseline`;
:mod:`.evaluate`; :mod:`.neighbors`; :mod:`.demo`), :mod:`.shipping` (writing a
chosen classifier and its JSON), :mod:`.report` (the JSON reports) and :mod:`.common`.

Examples
--------
The settings' flags take their defaults from
:class:`~alphanet_fast.settings.Settings`, as :func:`alphanet_fast.correct` does:

>>> from alphanet_fast.cli import build_parser
>>> from alphanet_fast.settings import Settings
>>> args = build_parser().parse_args(["correct", "train.npz", "clf.pt", "-k", "3"])
>>> args.k, args.rho == Settings().rho, args.epochs == Settings().epochs
(3, True, True)
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence

from alphanet_fast.files._atomic import Terminated, sigterm_raises

from .parser import PROG, build_parser
from .train import explain_text

__all__ = ["build_parser", "explain_text", "main"]

# Errors a user can cause; anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, TypeError, OSError, MemoryError)


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    text = " ".join(str(exc).split())
    if isinstance(exc, MemoryError):
        return text if "memory" in text else f"out of memory{': ' + text if text else ''}"
    return text or type(exc).__name__


def _quiet_stdout() -> None:
    # The reader of our output is gone: send what Python still flushes at exit nowhere.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is no real file (tests capture it)
        pass


def _fill_closed_streams() -> None:
    """Put ``/dev/null`` on a standard descriptor the caller closed (``>&-``).

    Otherwise Python leaves ``sys.stdout`` None (a flush would raise), and the
    next file opened would get descriptor 1, so anything written to standard
    output would land in it. Output to a closed stream is dropped, as to a
    closed pipe.
    """
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        with contextlib.suppress(OSError):
            fresh = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
            if fresh != fd:  # a lower descriptor was closed too and took it
                os.dup2(fresh, fd)
                os.close(fresh)
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "r" if fd == 0 else "w"))  # noqa: SIM115


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``alphanet-fast`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status.

    Examples
    --------
    Three classes in the plane; class 2 has two training rows, so it is the few
    class, and its neighbours are the other classes' means at distances 4 and 5:

    >>> import os, tempfile
    >>> import numpy as np
    >>> from alphanet_fast.cli import main
    >>> features = np.repeat([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]], [30, 30, 2], axis=0)
    >>> labels = np.repeat([0, 1, 2], [30, 30, 2])
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = os.path.join(folder, "train.npz")
    ...     np.savez(path, features=features, labels=labels)
    ...     main(["neighbors", path, "-k", "2"])
    1 few classes, 2 nearest base classes each (euclidean distance between class means):
    [class 2] (2 training samples): [class 0] 4.0000, [class 1] 5.0000
    0

    A malformed command line prints its usage to stderr and returns 2:

    >>> main(["neighbors", "train.npz", "-k", "two"])
    2
    """
    _fill_closed_streams()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        with sigterm_raises():
            code = int(args.func(args) or 0)
            sys.stdout.flush()  # a closed pipe shows here, inside the handler below
            return code
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except USER_ERRORS as exc:
        # InputError and the library's argument errors are ValueError/TypeError and
        # name what is wrong; a missing or unwritable path is an OSError.
        if args.debug:
            raise
        print(f"{PROG}: error: {_message(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"{PROG}: terminated", file=sys.stderr)
        return 143
