"""Command-line options shared by the glassgen commands (one definition each, imported by every cli module)."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["ConfigOpt", "InputOpt", "ModelOpt", "NOpt", "DensOpt", "TOpt", "SeedOpt", "ProgOpt", "Split",
           "split_value", "progress_flag", "print_summary"]


#: The ``--out`` of the run command in progress, as resolved from options and config (read by the Ctrl-C report).
RUN_OUT: list[str | None] = [None]


def progress_flag(flag: bool | None) -> bool:
    """Whether to draw progress bars: ``--progress/--no-progress`` if given, else when stderr is a terminal."""
    return sys.stderr.isatty() if flag is None else flag


def print_summary(summary: dict[str, Any]) -> None:
    """Print a command's summary, one ``key: value`` line each: (value, error) pairs as ``v +- e``, floats to 6
    significant digits, flat dicts as ``k=v, ...``, other dicts and lists as JSON with floats to 4 digits (the
    output files keep every digit)."""
    def pair(x: Any) -> bool:
        return isinstance(x, tuple) and len(x) == 2 and all(isinstance(y, float) for y in x)

    def flat(kk: str, vv: Any) -> str:
        if pair(vv):
            return f"{kk}={vv[0]:.4g}+-{vv[1]:.2g}"
        return f"{kk}={vv:.4g}" if isinstance(vv, float) else f"{kk}={vv}"

    for k, v in summary.items():
        if pair(v):
            text = f"{v[0]:.6g} +- {v[1]:.2g}"
        elif isinstance(v, float):
            text = f"{v:.6g}"
        elif isinstance(v, dict) and v and not any(isinstance(x, (dict, list)) or (isinstance(x, tuple) and not pair(x))
                                                   for x in v.values()):
            text = ", ".join(flat(kk, vv) for kk, vv in v.items())
        elif isinstance(v, (dict, list)):
            text = json.dumps(_rounded(v))
        else:
            text = str(v)
        typer.echo(f"{k:>36}: {text}")


def _rounded(v: Any) -> Any:
    """v with every float inside (nested dicts, lists, tuples) rounded to 4 significant digits, for printing."""
    if isinstance(v, float):
        return float(f"{v:.4g}")
    if isinstance(v, dict):
        return {k: _rounded(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_rounded(x) for x in v]
    return v


class Split(str, Enum):
    """GlassBench split of a command's samples (typer checks the value: test, train or all)."""

    test = "test"
    train = "train"
    all = "all"


def split_value(split: Split | str) -> str | None:
    """The API's split argument: None for all samples, else "test" or "train"."""
    v = split.value if isinstance(split, Split) else str(split)
    return None if v == "all" else v

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config; command-line options win.")]
InputOpt = Annotated[Path | None, typer.Option("--input", "-i", help="Starting configuration (.xyz, .data, .h5).")]
ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Model name (ka3d, ka3d_sf, ka2d, ka2) or TOML.")]
NOpt = Annotated[int | None, typer.Option("--N", "--n", help="Particles of a random initial state.")]
DensOpt = Annotated[float | None, typer.Option("--density", help="Number density (default: the model's).")]
TOpt = Annotated[float | None, typer.Option("--T", "-T", help="Temperature (LJ units).")]
SeedOpt = Annotated[int | None, typer.Option("--seed", min=0, max=2**63 - 1,
                                             help="Random seed >= 0 (recorded in the output).")]
ProgOpt = Annotated[bool | None, typer.Option("--progress/--no-progress",
                                              help="Progress bar (default: on a terminal).")]
