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

__all__ = ["provenance", "atomic_path", "provenance_json", "strict_json", "check_hdf5_name", "check_output_name"]


def provenance(**extra: Any) -> dict[str, Any]:
    """Return the provenance record stored in every output file.

    Args:
        **extra: job-specific entries (``seed``, ``model``, ``T``, ...). ``None`` values are dropped; an
            entry named like a standard one (``time``, ``command``, ...) is kept as ``job_<name>``.

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
    standard = set(rec)
    for k, v in extra.items():
        if v is not None:
            rec[f"job_{k}" if k in standard else k] = v
    return rec


def _finite_or_none(obj: Any) -> Any:
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy arrays and scalars
        obj = obj.tolist()
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


def strict_json(obj: Any, indent: int | None = 1) -> str:
    """JSON text that strict parsers accept: NaN and infinities become null (the bare ``NaN`` of Python's
    json module is not JSON), numpy values become lists and numbers, anything else unknown a string."""
    return json.dumps(_finite_or_none(obj), indent=indent, allow_nan=False, default=str)


_OUTPUT_SUFFIXES = {"HDF5": (".h5", ".hdf5"), "JSON": (".json",), "NumPy .npz": (".npz",),
                    "a PyTorch checkpoint": (".pt", ".pth")}


def check_output_name(out: str | os.PathLike[str], kind: str) -> None:
    """One-line error unless ``out`` ends as files of ``kind`` do ("HDF5", "JSON", "NumPy .npz"), for commands
    whose output has that format whatever its name (``run.xyz`` holding HDF5 would mislead every reader)."""
    ok = _OUTPUT_SUFFIXES[kind]
    if Path(str(out)).suffix.lower() not in ok:
        raise InputError(f"--out {out}: this command writes {kind}; name the file {' or '.join(ok)}")
    if ".ckpt." in Path(str(out)).name.lower():  # <out>.ckpt.h5, <out>.eq.ckpt.h5, ... hold runs in progress
        raise InputError(f"--out {out}: names with '.ckpt.' are glassgen's checkpoints (an interrupted run's work "
                         "may be kept there); choose another name")


def check_hdf5_name(out: str | os.PathLike[str]) -> None:
    """:func:`check_output_name` for HDF5 outputs."""
    check_output_name(out, "HDF5")


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
