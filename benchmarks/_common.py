"""Shared helpers of the benchmark scripts: JSON results with provenance, table printing."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

from glassgen.provenance import atomic_path, provenance

RESULTS = Path(__file__).resolve().parent / "results"


def save(name: str, payload: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/<name>.json`` atomically with provenance and machine info."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    doc = {"benchmark": name, "provenance": provenance(), "machine": {"cpu": platform.processor() or platform.machine(),
                                                                      "cores": __import__("os").cpu_count()},
           **payload}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, default=float))
    return path


def table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    """A Markdown table of ``rows`` restricted to ``cols``."""
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)

    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def add_chain_arguments(ap: Any, default_t: tuple[str, ...]) -> None:
    """The options of a checkpointed multi-chain reference run: --T T:SWEEPS:EVERY (repeatable), --chains,
    --workers, --seed, --resume."""
    ap.add_argument("--T", action="append", default=None, metavar="T:SWEEPS:EVERY",
                    help=f"temperature, sampling sweeps per chain, sweeps between frames (default {default_t})")
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--resume", action="store_true", help="reuse finished chains from results/ckpt/")


def chain_specs(values: list[str]) -> list[tuple[float, int, int]]:
    """[(T, sampling sweeps per chain, sweeps between frames)] from ``T:SWEEPS:EVERY`` strings."""
    specs = []
    for v in values:
        t, sw, ev = v.split(":")
        specs.append((float(t), int(float(sw)), int(float(ev))))
    return specs


def run_jobs(fn: Any, jobs: list[tuple], workers: int) -> list[Any]:
    """[fn(*job) for job in jobs], in ``workers`` spawned processes if > 1 (``fn`` must be importable)."""
    if workers <= 1:
        return [fn(*j) for j in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as ex:
        return list(ex.map(fn, *zip(*jobs, strict=True)))
