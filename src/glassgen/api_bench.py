"""User-level jobs of the GlassBench area: dataset generation, scoring, reference checks and reports.

The CLI (:mod:`glassgen.cli_bench`) parses options and calls exactly one of these functions.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from glassgen.api import load_config
from glassgen.errors import InputError

__all__ = ["dataset_make", "dataset_spec_from_config"]

PathLike = str | os.PathLike[str]

_SPEC_KEYS = ("model", "n", "n_configs", "n_replicas", "time_factors", "spacing", "equil_tau", "q", "dt",
              "ensemble", "engine", "r_in", "r_out", "seed", "keep_replicas", "tau_alpha", "n_test")


def dataset_spec_from_config(config: PathLike | None, **cli: Any) -> tuple[list[Any], dict[str, Any]]:
    """Dataset specs (one per temperature) from a TOML ``[dataset]`` table overridden by CLI options.

    Returns:
        (specs, other options: out, workers).
    """
    from glassgen.bench.dataset import DatasetSpec

    opts = load_config(config, "dataset")
    allowed = set(_SPEC_KEYS) | {"temperatures", "out", "workers"}
    unknown = sorted(set(opts) - allowed)
    if unknown:
        raise InputError(f"unknown key(s) in {config}: {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
    opts.update({k: v for k, v in cli.items() if v is not None and v != []})
    temps = opts.pop("temperatures", None)
    if not temps:
        raise InputError("give at least one temperature (--T, or temperatures = [...] in the config)")
    if "time_factors" in opts:
        opts["time_factors"] = tuple(float(f) for f in opts["time_factors"])
    other = {k: opts.pop(k) for k in ("out", "workers") if k in opts}
    try:
        specs = [DatasetSpec(T=float(T), **opts) for T in temps]
    except TypeError as exc:
        raise InputError(f"bad dataset option: {exc}") from None
    return specs, other


def dataset_make(*, specs: list[Any], out: PathLike, workers: int = 1, shard: str | None = None,
                 progress: bool = False) -> dict[str, Any]:
    """Generate (or resume) isoconfigurational datasets, one per spec, under ``out``.

    Args:
        specs: :class:`glassgen.bench.dataset.DatasetSpec` per temperature.
        out: dataset directory (``out/T{T}/N{N}T{T}_{i}.npz``).
        workers: local processes for the replica runs.
        shard: ``k/K`` (this launch does configurations with (i-1) mod K == k), ``mpi`` (rank/size from the
            MPI launcher's environment), or None (everything).
    """
    from glassgen.bench.dataset import make_dataset, shard_from_env

    if workers < 1:
        raise InputError(f"workers must be >= 1, got {workers}")
    if shard is None:
        sh = (0, 1)
    elif shard == "mpi":
        sh = shard_from_env()
    else:
        try:
            a, b = shard.split("/")
            sh = (int(a), int(b))
        except ValueError:
            raise InputError(f"shard must be 'k/K' or 'mpi', got {shard!r}") from None
    summary: dict[str, Any] = {}
    for spec in specs:
        res = make_dataset(spec, out, workers=workers, shard=sh, progress=progress,
                           log=lambda s: print(s, file=sys.stderr))
        res.pop("prep_info", None)
        summary[f"T={spec.T:g}"] = res
    summary["out"] = str(Path(out))
    return summary
