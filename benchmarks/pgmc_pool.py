"""Pool several seed studies of ``benchmarks/pgmc.py --seeds K`` (same method, disjoint seeds) into one summary.

Every input must have been run with the same PGMC settings (local fraction, flip, swap fraction, hidden units);
rows with a repeated seed are refused. The summary (mean +- standard error over all seeds of tau_alpha in sweeps,
ratio best baseline / PGMC and the CPU-second ratio) is computed by ``pgmc.seed_summary`` and saved as
``benchmarks/results/pgmc_seeds_<tag>.json``.

A tag names ``pgmc_seeds_<tag>.json`` or, for a single-seed run, ``pgmc_<tag>.json`` (the tag ``grid`` names the
grid run ``pgmc.json``); ``--only MODEL:N:T`` keeps the rows of one case (e.g. one case of the grid).

Run: ``.venv/bin/python benchmarks/pgmc_pool.py lf08_flip05 lf08_flip05_more --tag lf08_flip05_pooled``
"""

from __future__ import annotations

import argparse
import json
import sys

from _common import RESULTS, save, table
from pgmc import seed_summary

SETTINGS = ("local_fraction_2d", "flip_2d", "swap_fraction_2d", "hidden", "uniform_selection", "learn_iters",
            "feature_updates",  # absent (None) in studies before the deferred features: the incremental kernel
            "local_fraction_3d")  # absent in studies before the option: 0.3, its default


def fail(msg: str) -> None:
    """Bad input: one line on stderr, exit status 2."""
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("tags", nargs="+", help="suffixes of pgmc_seeds_<tag>.json to pool")
    ap.add_argument("--tag", required=True, help="suffix of the pooled results name")
    ap.add_argument("--only", default=None, metavar="MODEL:N:T", help="keep only the rows of this case")
    args = ap.parse_args()
    only = None
    if args.only is not None:
        try:
            m, n, t = args.only.split(":")
            only = (m, int(n), float(t))
        except ValueError:
            fail(f"--only must be MODEL:N:T, got {args.only!r}")
    rows, sources, settings = [], [], None
    for t in args.tags:
        names = ["pgmc.json"] if t == "grid" else [f"pgmc_seeds_{t}.json", f"pgmc_{t}.json"]
        path = next((RESULTS / nm for nm in names if (RESULTS / nm).exists()), RESULTS / names[0])
        if not path.exists():
            fail(f"{path} not found")
        try:
            doc = json.loads(path.read_text())
            s = {k: doc["args"].get(k) for k in SETTINGS}
            s["local_fraction_3d"] = 0.3 if s["local_fraction_3d"] is None else s["local_fraction_3d"]
            _ = [(r["model"], r["N"], r["T"], r["seed"]) for r in doc["rows"]]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            fail(f"{path.name} is not a seed study of benchmarks/pgmc.py ({type(e).__name__}: {e})")
        if settings is not None and s != settings:
            fail(f"{path.name} was run with other PGMC settings ({s} != {settings})")
        settings = s
        rows += [r for r in doc["rows"] if only is None or (r["model"], r["N"], r["T"]) == only]
        sources.append(path.name)
    seeds = [(r["model"], r["N"], r["T"], r["seed"]) for r in rows]
    if len(set(seeds)) != len(seeds):
        fail("the inputs share seeds; pooled seeds must be independent")
    summary = seed_summary(rows)
    path = save(f"pgmc_seeds_{args.tag}", {"mode": "pooled", "sources": sources, "settings": settings,
                                           "rows": rows, "complete": True, "summary": summary})
    print(table(summary, ["model", "N", "T", "seeds", "tau_metropolis", "tau_swap", "tau_pgmc", "tau_pgmc_err",
                          "ratio_sweeps", "ratio_sweeps_err", "ratio_cpu"]))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
