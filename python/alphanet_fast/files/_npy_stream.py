"""Write a ``.npy`` file row block by row block, without knowing the row count up front.

The file is written to a temporary name in the destination's folder, with room
kept for the header; the header, which holds the shape, is written last and the
file renamed into place, so a reader never sees a half-written file. Nothing is
held in memory but the block being written, and no mapping of the file grows
the process's resident memory.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
from pathlib import Path

import numpy as np

from alphanet_fast.files._atomic import create_exclusive, remove_stale_temps, temp_name

# Room for the header of any shape up to (2**63 - 1, 2**63 - 1): a multiple of 64,
# so the data that follows stays aligned as numpy's own files are.
HEADER_BYTES = 192


def labels_path_for(features_path: Path) -> Path:
    """``feats.npy`` -> ``feats.labels.npy``."""
    return features_path.with_name(features_path.stem + ".labels.npy")


def npy_header(shape: tuple[int, ...], dtype: np.dtype, size: int = HEADER_BYTES) -> bytes:
    """A version 1.0 ``.npy`` header for a C-ordered array, padded to ``size`` bytes."""
    descr = np.lib.format.dtype_to_descr(np.dtype(dtype))
    text = repr({"descr": descr, "fortran_order": False, "shape": tuple(shape)}).encode("latin1")
    pad = size - 10 - len(text) - 1
    if pad < 0:  # pragma: no cover - only for shapes beyond int64
        raise ValueError(f"shape {shape} does not fit a {size}-byte .npy header")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", size - 10) + text + b" " * pad + b"\n"


class NpyWriter:
    """Appends row blocks of one dtype and row shape to a ``.npy`` file.

    The temporary file (``.NAME.PID.RANDOM.tmp`` beside ``path``, see
    :func:`~alphanet_fast.files._atomic.temp_name`) is created exclusively and
    never through a link; :meth:`finish` completes it and :meth:`commit`
    renames it into place, so two writers can be completed first and renamed
    together.

    Parameters
    ----------
    path : Path
        The final file.
    dtype : numpy dtype
    """

    def __init__(self, path: Path, dtype: np.dtype) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.tmp = temp_name(self.path)
        self.row_shape: tuple[int, ...] | None = None
        self.rows = 0
        self.file: io.BufferedWriter | None = None
        self.created = False

    def write(self, block: np.ndarray) -> None:
        """Append ``block`` (its first axis is rows), cast to the writer's dtype."""
        if self.file is None:
            if self.created:
                raise ValueError("out: the file is already finished")
            if not self.path.parent.is_dir():
                raise ValueError(f"out: folder {str(self.path.parent)!r} does not exist")
            remove_stale_temps(self.path)
            self.file = os.fdopen(create_exclusive(self.tmp), "wb")
            self.created = True
            self.file.write(b"\0" * HEADER_BYTES)  # the header goes here once the rows are known
            self.row_shape = tuple(block.shape[1:])
        if tuple(block.shape[1:]) != self.row_shape:
            raise ValueError(
                f"out: rows of shape {self.row_shape} so far, then {tuple(block.shape[1:])}"
            )
        self.file.write(np.ascontiguousarray(block, dtype=self.dtype).data.cast("B"))
        self.rows += block.shape[0]

    def finish(self) -> None:
        """Write the header and close the temporary file (not yet renamed)."""
        if self.file is None or self.row_shape is None:
            raise ValueError("out: nothing was written")
        self.file.seek(0)
        self.file.write(npy_header((self.rows, *self.row_shape), self.dtype))
        self.file.close()
        self.file = None

    def commit(self) -> None:
        """Rename the finished temporary file over :attr:`path`."""
        os.replace(self.tmp, self.path)

    def close(self) -> None:
        """:meth:`finish` and :meth:`commit`."""
        self.finish()
        self.commit()

    def discard(self) -> None:
        """Remove the temporary file (after an error); the final path is untouched."""
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.created:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)


def commit_together(writers: tuple[NpyWriter, ...]) -> None:
    """Finish every writer, then rename them all into place, or leave none behind.

    Each target is checked first (an existing folder there cannot be
    replaced); if a rename still fails, the files already renamed are removed
    and the rest discarded, so a failed write leaves no output at all.
    """
    for w in writers:
        if w.path.is_dir():
            raise ValueError(f"out: {str(w.path)!r} is a folder")
    for w in writers:
        w.finish()
    done: list[NpyWriter] = []
    try:
        for w in writers:
            w.commit()
            done.append(w)
    except BaseException:
        for w in done:
            with contextlib.suppress(OSError):
                os.unlink(w.path)
        for w in writers:
            if w not in done:
                w.discard()
        raise
