"""Throughput of the phenomenological models: KMC events/s (Numba sum tree vs plain NumPy) and StEP frames/s.

1. Trap-model KMC, one core: events per second of the Numba kernel (O(log N) sum tree) for the
   Monthus-Bouchaud model (T = 2, T0 = 1), the softness trap model (SystemIII law, T = 0.36) and the
   facilitated softness lattice (2D, eta0 = 0.5, r_c = 1.5), each against a plain NumPy KMC of the same
   model (cumulative sum + searchsorted per event, O(N); the same redraw law; vectorised neighbour kicks)
   run in the same script on the same N.
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


def _numpy_tnorm_upper(rng: np.random.Generator, a: float) -> float:
    """Standard normal restricted to [a, inf) (the same exact algorithm as the kernel, in plain Python)."""
    if a < 0.5:
        while True:
            z = rng.standard_normal()
            if z >= a:
                return z
    lam = 0.5 * (a + math.sqrt(a * a + 4.0))
    while True:
        z = a - math.log(1.0 - rng.random()) / lam
        if rng.random() <= math.exp(-0.5 * (z - lam) ** 2):
            return z


def _numpy_redraw(rng: np.random.Generator, law) -> float:
    """Post-rearrangement draw of a :class:`KernelLaw` (modes 0-2), plain Python/NumPy."""
    if law.redraw_mode == 0:
        return rng.exponential(law.p0)
    if law.redraw_mode == 1:
        return law.p0 + law.p1 * rng.standard_normal()
    if law.redraw_mode != 2:
        raise ValueError("the NumPy baseline implements redraw modes 0-2")
    m, xs, p_lin, side = law.rp
    p0, p1 = law.p0, law.p1
    if rng.random() < p_lin:
        if side > 0:
            return p0 - p1 * _numpy_tnorm_upper(rng, (p0 - xs) / p1)
        return p0 + p1 * _numpy_tnorm_upper(rng, (xs - p0) / p1)
    if side > 0:
        return m + p1 * _numpy_tnorm_upper(rng, (xs - m) / p1)
    return m - p1 * _numpy_tnorm_upper(rng, (m - xs) / p1)


def numpy_kmc(model: TrapModel, T: float, n: int | None, n_events: int, seed: int) -> float:
    """The same trap model as the Numba kernel, written as a plain NumPy KMC; returns events per second.

    Per event: cumulative sum of the rates + binary search (O(N)), a Gaussian jump of the chosen site, its
    redraw from the model's law, and (facilitated models) the vectorised AR(1) kick of its neighbours.
    """
    rng = np.random.default_rng(seed)
    law = model.kernel_law(T)
    if law.tab.size:
        raise ValueError("the NumPy baseline implements linear rate laws only")
    n_sites = model.n_sites(n)
    x = model.initial_states(T, n_sites, rng)

    def rate(v):
        return np.exp(np.minimum(law.c0 + law.c1 * v, law.lncap))

    rates = rate(x)
    pos = np.zeros((n_sites, model.dim))
    if model.facilitated:
        ptr, idx, eta, _, _ = model.neighbours()
        km, ks, kshift = model.kick(T)
        amp = np.sqrt(eta * (2.0 - eta)) * ks
    t = 0.0
    t0 = time.perf_counter()
    for _ in range(n_events):
        c = np.cumsum(rates)
        t += rng.exponential(1.0 / c[-1])
        i = min(int(np.searchsorted(c, rng.random() * c[-1], side="right")), n_sites - 1)
        pos[i] += model.b * rng.standard_normal(model.dim)
        x[i] = _numpy_redraw(rng, law)
        rates[i] = rate(x[i])
        if model.facilitated:
            sl = slice(ptr[i], ptr[i + 1])
            j, e = idx[sl], eta[sl]
            x[j] = km + (1.0 - e) * (x[j] - km) + e * kshift + amp[sl] * rng.standard_normal(j.size)
            rates[j] = rate(x[j])
    return n_events / (time.perf_counter() - t0)


def kmc_rate(model: TrapModel, T: float, n: int | None, events: int) -> float:
    never = np.array([1e300, 2e300])  # no snapshots: pure event throughput
    simulate(model, T, n=n, seed=0, times=never, p_stop=0, max_events=20_000, chunk_events=20_000)  # compile/warm
    best = 0.0
    for rep in range(3):
        r = simulate(model, T, n=n, seed=rep + 1, times=never, p_stop=0, max_events=events, chunk_events=events)
        best = max(best, r.events_per_s)
    return best


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
    ap.add_argument("--step-sizes", type=int, nargs="*", default=[64, 128, 256])
    ap.add_argument("--step-frames", type=int, default=200)
    args = ap.parse_args()
    load0 = os.getloadavg()
    law = load_softness_law("softness_systemIII")
    rows = []
    if args.step_sizes:
        warm = StepModel(StepParams(L=8), seed=0)  # compile the StEP kernels
        warm.e[:, 0] += 0.3
        warm.relax()
    for n in args.sizes:
        np_events = args.numpy_events if n <= 10_000 else args.numpy_events // 4
        for label, model, T, nn in (
            ("bouchaud", TrapModel(kind="bouchaud", T0=1.0), 2.0, n),
            ("softness", TrapModel(kind="softness", law=law), 0.36, n),
            ("softness-facilitated 2D", TrapModel(kind="softness-facilitated", law=law, dim=2,
                                                  L=int(round(math.sqrt(n))), eta0=0.5, r_c=1.5), 0.36, None),
        ):
            nb = kmc_rate(model, T, nn, args.events)
            npr = max(numpy_kmc(model, T, nn, np_events, seed) for seed in (1, 2))
            rows.append({"model": label, "N": model.n_sites(nn), "numba_events_per_s": nb,
                         "numpy_events_per_s": npr, "ratio_numba_numpy": nb / npr})
            print(rows[-1], flush=True)
    srows = []
    for L in args.step_sizes:
        srows.append(step_rate(L, args.step_frames))
        print(srows[-1], flush=True)
    for r in srows:
        base = srows[0]
        r["cost_per_frame_vs_L64"] = base["frames_per_s"] / r["frames_per_s"]
        r["cost_per_site_vs_L64"] = r["cost_per_frame_vs_L64"] / (r["N"] / base["N"])
    load1 = os.getloadavg()
    path = save("models", {"numba_threads": os.environ.get("NUMBA_NUM_THREADS"), "loadavg_before": load0,
                           "loadavg_after": load1, "cpu_count": os.cpu_count(),
                           "note": "numpy baseline: the same model as a plain NumPy KMC (cumsum + searchsorted per "
                                   "event, O(N); same redraw law; vectorised neighbour kicks), best of 2 runs",
                           "kmc": rows, "step": srows})
    print(table(rows, ["model", "N", "numba_events_per_s", "numpy_events_per_s", "ratio_numba_numpy"]))
    print(table(srows, ["L", "N", "frames", "events", "frames_per_s", "site_updates_per_s", "cost_per_frame_vs_L64",
                        "cost_per_site_vs_L64"]))
    print(f"load average before {load0}, after {load1}")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
