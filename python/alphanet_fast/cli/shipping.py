"""Writing a chosen classifier: the ``-o`` of ``baseline`` and ``compare``.

The classifier is written in the given classifier's format (as ``correct -o``
does, by :func:`alphanet_fast.files.classifiers.save_classifier`), with a JSON
file beside it that says what it is. That JSON is one object:

``command``
    ``"baseline"`` or ``"compare"`` (after ``alphanet_fast``, the version).
    The fields from ``method`` to ``test`` are those of
    :meth:`alphanet_fast.comparison.ComparisonRun.to_dict`.
``method``
    ``"plain"``, a baseline's name (``"tau_norm"``) or ``"alphanet"``.
``name``
    The row's label (``"tau-norm"``, ``"LWS + AlphaNet (rho=1)"``).
``base``, ``rho``
    For AlphaNet: the classifier it corrected and its rho (else null).
``settings``
    What was used and chosen (``tau``, ``best_epoch``, ``seed``, ...).
``feature_transform``
    Null (a row of transformed features is not written).
``val``, ``test``
    Its evaluation reports (``EvaluationReport.to_dict()``), null when not run.
``inputs``, ``output``, ``left_out``
    The files read, the classifier written, and the data entries of the
    classifier's file that it left out.

``compare`` adds ``criterion``, ``recommended`` (the recommended row's name)
and ``shipped_recommended`` (whether this is it).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from alphanet_fast.files.classifiers import Classifier, save_classifier
from alphanet_fast.files.data_files import InputError

from . import report

__all__ = ["add_output_options", "left_out_note", "output_paths", "write_shipped"]


def add_output_options(p: argparse.ArgumentParser, what: str, default: str) -> Any:
    """``-o/--output`` and ``--report`` (the JSON beside it); returns the group."""
    o = p.add_argument_group("outputs")
    o.add_argument(
        "-o", "--output", type=Path, metavar="PATH",
        help=f"write {what} here, in the given classifier's format, with a JSON beside it "
        f"(default: {default} in the current directory)",
    )  # fmt: skip
    o.add_argument(
        "--report", type=Path, metavar="PATH", help="the JSON (default: the output with .json)"
    )
    return o


def output_paths(
    output: Path | None, clf: Classifier, tag: str, json_path: Path | None = None
) -> tuple[Path, Path]:
    """The classifier's output (``output``, else ``<classifier>.<tag><suffix>`` here) and
    its JSON (``json_path``, else the output with ``.json``)."""
    out = output or Path(f"{clf.path.stem}.{tag}{clf.suffix}")
    if out.suffix.lower() != clf.suffix.lower():
        raise InputError(
            f"-o/--output {out}: the classifier is written in its input's format; "
            f"use a {clf.suffix} name"
        )
    return out, json_path or out.with_suffix(".json")


def left_out_note(clf: Classifier, out: Path) -> str | None:
    """One line naming the data entries a written classifier left out (None if none)."""
    if not clf.data_entries:
        return None
    return (
        f"left out of {out}: {', '.join(clf.data_entries)} (data bundled in {clf.path}; "
        "the classifier's entries and the file's other entries were kept)"
    )


def row_fields(run: Any) -> dict[str, Any]:
    """The JSON fields of a shipped run, as :meth:`ComparisonRun.to_dict` gives them:
    name, method, base, rho, settings, feature_transform, val, test."""
    if hasattr(run, "to_dict"):
        return run.to_dict()
    return {
        "name": run.name,
        "method": run.method,
        "base": run.base,
        "rho": run.rho,
        "settings": run.settings,
        "feature_transform": None if run.transform is None else "cl2n",
        "val": None if run.val is None else run.val.to_dict(),
        "test": None if run.test is None else run.test.to_dict(),
    }


def write_shipped(
    clf: Classifier, run: Any, out: Path, json_path: Path, command: str, **fields: Any
) -> list[Path]:
    """Write ``run.W``, ``run.b`` as ``clf``'s format to ``out`` and the JSON; print the notes.

    ``run`` has ``W``, ``b``, ``transform`` and the fields of :func:`row_fields`.
    A row of transformed features (``transform`` not None) cannot be a
    classifier file: that is an error naming the row.
    """
    if run.transform is not None:
        raise InputError(
            f"{run.name} scores cl2n-transformed features, which a classifier file cannot "
            "hold; choose another row (compare --ship NAME)"
        )
    written = [save_classifier(clf, run.W, out, b=run.b)]
    note = left_out_note(clf, out)
    if note is not None:
        print(note)
    written.append(
        report.write(
            json_path,
            command,
            **row_fields(run),
            **fields,
            output=out,
            left_out=list(clf.data_entries),
        )  # fmt: skip
    )
    return written
