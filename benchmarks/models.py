"""Throughput of the phenomenological models: KMC events/s (Numba sum tree vs plain NumPy) and StEP frames/s.

1. Trap-model KMC, one core: events per second of the Numba kernel (O(log N) sum tree) for the
   Monthus-Bouchaud model (T = 2, T0 = 1), the softness trap model (SystemIII law, T = 0.36) and the
   facilitated softness lattice (2D, eta0 = 0.5, r_c = 1.5), against a plain NumPy KMC of the Bouchaud model
   (cumulative sum + searchsorted per event, O(N)) run in the same script on the same N.
   Targets: >= 1e6 events/s and >= 50x NumPy.
2. StEP avalanche frames per second at L = 64, 128, 256 (PRR parameters, 2D): every site is loaded just past
   its yield point once, then one avalanche is relaxed for a fixed number of frames; cost vs L reported.

Run with one thread: ``NUMBA_NUM_THREADS=1 .venv/bin/python benchmarks/models.py``. The machine load
(``os.getloadavg``) before and after is stored with the results, since other jobs may share the cores.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
from _common import save, table

from glassgen.models.softness_law import load_softness_law
from glassgen.models.step import StepModel, StepParams
from glassgen.models.trap import TrapModel, simulate


def numpy_bouchaud(x: np.ndarray, T: float, T0: float, n_events: int, seed: int) -> float:
    """Plain NumPy KMC of the Monthus-Bouchaud model: O(N) cumulative sum + binary search per event."""
    rng = np.random.default_rng(seed)
    x = np.array(x, dtype=np.float64)
    rates = np.exp(-x / T)
    pos = np.zeros((x.shape[0], 3))
    t = 0.0
    for _ in range(n_events):
        c = np.cumsum(rates)
        t += rng.exponential(1.0 / c[-1])
        i = min(int(np.searchsorted(c, rng.random() * c[-1], side="right")), x.shape[0] - 1)
        pos[i] += rng.standard_normal(3)
        x[i] = rng.exponential(T0)
        rates[i] = np.exp(-x[i] / T)
    return t


def kmc_rate(model: TrapModel, T: float, n: int | None, events: int) -> float:
    never = np.array([1e300, 2e300])  # no snapshots: pure event throughput
    simulate(model, T, n=n, seed=0, times=never, p_stop=0, max_events=20_000, chunk_events=20_000)  # compile/warm
    best = 0.0
    for rep in range(3):
        r = simulate(model, T, n=n, seed=rep + 1, times=never, p_stop=0, max_events=events, chunk_events=events)
        best = max(best, r.events_per_s)
    return best


def numpy_rate(n: int, events: int) -> float:
    rng = np.random.default_rng(0)
    x = rng.exponential(1.0 / (1.0 - 0.5), n)
    t0 = time.perf_counter()
    numpy_bouchaud(x, 2.0, 1.0, events, 1)
    return events / (time.perf_counter() - t0)


def step_rate(L: int, frames: int) -> dict[str, float]:
    mdl = StepModel(StepParams(L=L, max_frames=frames), seed=1)
    mdl.e[:, 0] += 0.3  # everything unstable: a system-spanning avalanche, cut at `frames`
    t0 = time.perf_counter()
    fr, ev, si, rel, ok = mdl.relax()
    wall = time.perf_counter() - t0
    return {"L": L, "N": L * L, "frames": fr, "events": ev, "frames_per_s": fr / wall,
            "site_updates_per_s": fr / wall * L * L}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--numpy-events", type=int, default=20_000)
    ap.add_argument("--step-sizes", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--step-frames", type=int, default=200)
    args = ap.parse_args()
    load0 = os.getloadavg()
    law = load_softness_law("softness_systemIII")
    rows = []
    warm = StepModel(StepParams(L=8), seed=0)  # compile the StEP kernels
    warm.e[:, 0] += 0.3
    warm.relax()
    for n in args.sizes:
        npr = numpy_rate(n, args.numpy_events if n <= 10_000 else args.numpy_events // 4)
        for label, model, T, nn in (
            ("bouchaud", TrapModel(kind="bouchaud", T0=1.0), 2.0, n),
            ("softness", TrapModel(kind="softness", law=law), 0.36, n),
            ("softness-facilitated 2D", TrapModel(kind="softness-facilitated", law=law, dim=2,
                                                  L=int(round(math.sqrt(n))), eta0=0.5, r_c=1.5), 0.36, None),
        ):
            nb = kmc_rate(model, T, nn, args.events)
            rows.append({"model": label, "N": nn if nn else int(round(math.sqrt(n))) ** 2, "numba_events_per_s": nb,
                         "numpy_events_per_s": npr, "ratio_numba_numpy": nb / npr})
            print(rows[-1], flush=True)
    srows = []
    for L in args.step_sizes:
        srows.append(step_rate(L, args.step_frames))
        print(srows[-1], flush=True)
    base = srows[0]
    for r in srows:
        r["cost_per_frame_vs_L64"] = base["frames_per_s"] / r["frames_per_s"]
        r["cost_per_site_vs_L64"] = r["cost_per_frame_vs_L64"] / (r["N"] / base["N"])
    load1 = os.getloadavg()
    path = save("models", {"numba_threads": os.environ.get("NUMBA_NUM_THREADS"), "loadavg_before": load0,
                           "loadavg_after": load1, "cpu_count": os.cpu_count(),
                           "note": "numpy baseline: Monthus-Bouchaud KMC with cumsum + searchsorted per event "
                                   "(O(N)); the same numpy rate is the denominator of every row of that N",
                           "kmc": rows, "step": srows})
    print(table(rows, ["model", "N", "numba_events_per_s", "numpy_events_per_s", "ratio_numba_numpy"]))
    print(table(srows, ["L", "N", "frames", "events", "frames_per_s", "site_updates_per_s", "cost_per_frame_vs_L64",
                        "cost_per_site_vs_L64"]))
    print(f"load average before {load0}, after {load1}")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
