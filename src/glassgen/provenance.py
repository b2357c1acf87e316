"""Provenance records and atomic file writing, shared by every writer in glassgen."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import shlex
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from glassgen import __version__
from glassgen.errors import InputError

__all__ = ["provenance", "atomic_path", "provenance_json"]


def provenance(**extra: Any) -> dict[str, Any]:
    """Return the provenance record stored in every output file.

    Args:
        **extra: job-specific entries (``seed``, ``model``, ``T``, ...). ``None`` values are dropped.

    Returns:
        dict with ``command`` (the command line), ``glassgen_version``, ``time`` (UTC ISO 8601),
        ``host``, ``python`` and the extra entries.
    """
    rec: dict[str, Any] = {
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "glassgen_version": __version__,
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": platform.python_version(),
    }
    for k, v in extra.items():
        if v is not None:
            rec[k] = v
    return rec


def provenance_json(**extra: Any) -> str:
    """Provenance as a compact JSON string (for text headers)."""
    return json.dumps(provenance(**extra), default=str, separators=(",", ":"))


def png_metadata(record: dict[str, Any]) -> dict[str, str]:
    """PNG text chunks for matplotlib's ``savefig(metadata=...)``: the software and a provenance record
    (``record``, e.g. from :func:`provenance`) as JSON."""
    return {"Software": f"glassgen {__version__}", "Description": json.dumps(record, default=str)}


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path`` atomically.

    On an exception the temporary file is removed and ``path`` is left untouched, so an interrupted
    writer never leaves a half-written output.
    """
    target = Path(path)
    if target.is_dir():
        raise InputError(f"cannot write {target}: it is a folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:  # a parent that is a file, a read-only folder: name the output, not the temp file
        why = ("a folder on its path is a file" if isinstance(exc, (FileExistsError, NotADirectoryError))
               else exc.strerror or type(exc).__name__)
        raise InputError(f"cannot write {target}: {why}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes 0600 files; give the output the usual permissions
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise
