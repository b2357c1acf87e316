"""Reading TOML configs and type checks of their values: ``n = "ten"`` is a one-line error naming the key.

:func:`read_toml` is the one reader of every TOML file the package takes (command configs, model files,
softness laws): a missing file, text that is not UTF-8, malformed TOML and NaN values are one-line errors
naming the file.

The accepted TOML types of a key come from the annotation of the parameter or dataclass field it feeds
(``int``, ``float``, ``str``, ``bool``, paths, and their optional forms); other annotations are left to the
code that uses the value.
"""

from __future__ import annotations

import json
import math
import os
import re
import types
import typing
from pathlib import Path
from typing import Any

import tomllib

from glassgen.errors import InputError

__all__ = ["accepted_types", "check_types", "type_hints", "read_toml", "MINIMUMS"]

#: smallest allowed value of integer keys, whatever the command (the command line enforces the same minimums)
MINIMUMS = {"seed": 0, "threads": 1, "traj_every": 1, "traj_blocks": 1, "thermo_every": 1, "tune_sweeps": 0,
            "sample_every": 1, "checkpoint_every": 1, "equilibrate": 0, "equilibrate_sweeps": 0, "replicas": 1,
            "max_events": 1, "equilibrate_steps": 0, "n_blocks": 1, "n_chains": 1, "chains": 1}


def _nan_key(data: Any, where: str = "", skip: tuple[str, ...] = ()) -> str | None:
    """The dotted key of the first NaN number in a parsed document, or None; entries whose dotted key, list
    indices dropped (``a.b[2].c`` -> ``a.b.c``), is in ``skip`` are not searched."""
    if where and skip and re.sub(r"\[\d+\]", "", where) in skip:
        return None
    if isinstance(data, float) and math.isnan(data):
        return where or "a value"
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for k, v in items:
        found = _nan_key(v, f"{where}.{k}" if where and isinstance(k, str) else f"{where}[{k}]" if where else str(k),
                         skip)
        if found:
            return found
    return None


def read_toml(path: str | os.PathLike[str], what: str = "config",
              allow_json: bool = False, nan_tables: tuple[str, ...] = ()) -> tuple[dict[str, Any], str]:
    """(parsed document, text) of the TOML file ``path`` (JSON too if ``allow_json`` and it ends in .json).

    ``what`` names the file in errors ("config", "model file", ...). Raises :class:`InputError` (one line)
    for a missing file, text that is not UTF-8, malformed TOML or JSON, and a NaN anywhere in it (TOML's
    ``nan`` is never a valid parameter here) except in the entries named in ``nan_tables`` (dotted keys,
    list indices dropped, of measured values where NaN means "no data", e.g. ``softness.bins``).
    """
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{what} {p} is a folder, not a file")
    if not p.is_file():
        raise InputError(f"{what} file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"malformed {what} {p}: not UTF-8 text") from None
    try:
        data = json.loads(text) if allow_json and p.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"malformed {what} {p}: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise InputError(f"malformed {what} {p}: expected a table of keys")
    bad = _nan_key(data, skip=nan_tables)
    if bad:
        raise InputError(f"{p}: {bad} is NaN")
    return data, text


def accepted_types(hint: Any) -> tuple[type, ...] | None:
    """The TOML value types a parameter annotated ``hint`` accepts (None: not checked)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if len(args) != 1:
            return None if not all(a in (int, float) for a in args) else (int, float)
        hint = args[0]
    if hint is float:
        return (int, float)
    if hint in (int, str, bool):
        return (hint,)
    if hint is Path or getattr(hint, "__name__", "") == "PathLike" or hint == os.PathLike:
        return (str,)
    return None


def type_hints(target: Any) -> dict[str, Any]:
    """Resolved annotations of a function or dataclass ({} when they cannot be resolved)."""
    try:
        return typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - unresolvable annotations: leave the checks to the code itself
        return {}


def check_types(values: dict[str, Any], hints: dict[str, Any], where: str) -> dict[str, Any]:
    """``values`` with integral floats turned into ints where an int is expected (``steps = 1e6``);
    a value of the wrong type is an :class:`InputError` naming ``where`` and the key."""
    out = dict(values)
    for k, v in values.items():
        if v is None:  # TOML has no null: None is a default or a value the caller already translated
            continue
        ok = accepted_types(hints.get(k))
        if ok == (int,) and isinstance(v, float) and v.is_integer():
            v = out[k] = int(v)
        elif ok is not None and (not isinstance(v, ok) or (isinstance(v, bool) and bool not in ok)):
            raise InputError(f"{where}: {k} must be {' or '.join(t.__name__ for t in ok)}, got {v!r}")
        if k in MINIMUMS and isinstance(v, int) and not isinstance(v, bool) and v < MINIMUMS[k]:
            raise InputError(f"{where}: {k} must be >= {MINIMUMS[k]}, got {v}")
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 2**63 - 1:
            raise InputError(f"{where}: {k} = {v} does not fit in 64 bits")
    return out
