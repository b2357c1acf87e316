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
