"""Shared pieces of the compute classes: the 'not computed yet' guard and text output with a header."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from glassgen.errors import GlassgenError
from glassgen.provenance import atomic_path, provenance_json

__all__ = ["NotComputedError", "write_columns"]


class NotComputedError(GlassgenError, RuntimeError):
    """A result property was read before ``compute`` was called."""


def _guard(obj: object, value: Any, name: str) -> Any:
    """Return ``value``, or raise :class:`NotComputedError` naming the property if it is ``None``."""
    if value is None:
        raise NotComputedError(f"{type(obj).__name__}.{name} is not available until compute() "
                               "has been called")
    return value


def write_columns(path: str | os.PathLike[str], columns: Sequence[np.ndarray], names: Sequence[str],
                  **meta: Any) -> None:
    """Write equal-length columns to a text file with a provenance header (atomic).

    The header has one line ``# provenance: {json}`` (command, version, time, host and ``meta``)
    and one line ``# name1 name2 ...``.

    Args:
        path: output file.
        columns: 1D arrays of equal length.
        names: one column name each (no spaces).
        **meta: extra provenance entries (parameters of the analysis).
    """
    data = np.column_stack([np.asarray(c, dtype=np.float64) for c in columns])
    header = f"provenance: {provenance_json(**meta)}\n" + " ".join(names)
    with atomic_path(path) as tmp:
        np.savetxt(tmp, data, header=header, fmt="%.10g")
