"""Is our shifted-force KA model (``ka3d_sf``) + NHC thermostat the one behind the GlassBench KA data?

Reference: the 15 shipped isoconfigurational files ``ka3d-T0.44-isoconfig/isoconfig_N4096T0.44_{i}_tc07.npz``
(BOTAN / GlassBench KA data, Shiba et al. JCP 158, 084503 (2023); N = 4096, L = 15.05658). Every stored
configuration is an equilibrium sample at T = 0.44: the initial configuration and the 32 replicas at
t = 4120. Reference U/N = mean over all 15 x 33 configurations; its standard error is taken from the 15
per-configuration means (the configurations are independent; the replicas of one configuration are not).

Runs: from ``initial_positions`` of training configurations (default i = 1, 2, 3; never 401-405) with
Maxwell-Boltzmann velocities at T = 0.44, NVT (Nose-Hoover chain, tau = 100 dt = 0.5, dt = 0.005) for
``--steps`` steps, U sampled every 20 steps. Per run: mean U/N with a 10-block error, the drift test of the
10 block means (:func:`glassgen.dynamics.initial.drift_test`), z = (run - ref) / sqrt(err_run^2 + err_ref^2),
the kinetic temperature.

PASS: on at least 3 runs no significant drift (|slope| <= 2 sigma) and |z| <= 3.

Also printed (diagnostic, not part of PASS): z against the run's own configuration (its initial
configuration + 32 replicas), and the same reference with the classic cut-and-shifted model ``ka3d``,
which shows how strongly U/N discriminates between the two cutoff treatments.

Run: ``.venv/bin/python benchmarks/nvt_T044.py [--configs 1 2 3] [--steps 20000] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np

from _common import save, table
from glassgen.config import data_dir
from glassgen.dynamics.forces import ForceField
from glassgen.dynamics.initial import drift_test
from glassgen.dynamics.md import MDSimulation
from glassgen.observables import block_average, integrated_autocorrelation_time
from glassgen.systems.configuration import Configuration
from glassgen.systems.model import load_model

T = 0.44
L = 15.05658
DT = 0.005
TAU = 100 * DT
SAMPLE_EVERY = 20
N_BLOCKS = 10
ALL_CONFIGS = [*range(1, 11), *range(401, 406)]
TEST_CONFIGS = set(range(401, 406))


def load(i: int) -> dict[str, np.ndarray]:
    path = data_dir() / "ka3d-T0.44-isoconfig" / f"isoconfig_N4096T0.44_{i}_tc07.npz"
    with np.load(path) as z:
        return {k: z[k] for k in ("types", "initial_positions", "positions")}


def reference(model_name: str) -> dict[str, object]:
    """U/N of the 15 x 33 shipped configurations with ``model_name`` (skin 0: exact energies)."""
    model = load_model(model_name)
    box = np.full(3, L)
    per_conf, samples = {}, []
    for i in ALL_CONFIGS:
        d = load(i)
        species = d["types"].astype(np.int32)
        ff = ForceField(model, species, box, skin=0.0)
        u = [ff.compute(d["initial_positions"]).energy]
        u += [ff.compute(p).energy for p in d["positions"]]
        u = np.asarray(u) / species.size
        per_conf[i] = {"initial": float(u[0]), "replicas_mean": float(u[1:].mean()),
                       "replicas_std": float(u[1:].std(ddof=1)), "mean": float(u.mean()),
                       "err": float(u[1:].std(ddof=1) / np.sqrt(u.size - 1))}
        samples.append(u)
    means = np.array([per_conf[i]["mean"] for i in ALL_CONFIGS])
    allu = np.concatenate(samples)
    return {"model": model_name, "mean": float(allu.mean()), "err": float(means.std(ddof=1) / np.sqrt(means.size)),
            "between_config_std": float(means.std(ddof=1)), "single_sample_std": float(allu.std(ddof=1)),
            "n_configs": int(means.size), "n_samples": int(allu.size), "per_config": per_conf}


def run_one(i: int, steps: int, threads: int | None, ref: dict, seed: int) -> dict[str, object]:
    d = load(i)
    species = d["types"].astype(np.int32)
    conf = Configuration(d["initial_positions"], species, np.full(3, L), load_model("ka3d_sf"))
    sim = MDSimulation(conf, T=T, dt=DT, ensemble="nvt", thermostat="nhc", tau=TAU, seed=seed, threads=threads)
    t0 = time.perf_counter()
    res = sim.run(steps, thermo_every=SAMPLE_EVERY)
    wall = time.perf_counter() - t0
    n = conf.n
    u = res.thermo.potential[1:] / n  # drop the starting configuration itself (it is in the reference)
    mean, err = block_average(u, N_BLOCKS)
    b = u.size // N_BLOCKS
    blocks = u[u.size - b * N_BLOCKS:].reshape(N_BLOCKS, b).mean(axis=1)
    slope, slope_err, no_drift = drift_test(blocks)
    temp = res.thermo.temperature[1:]
    t_mean, t_err = block_average(temp, N_BLOCKS)
    own = ref["per_config"][i]
    z = (mean - ref["mean"]) / np.hypot(err, ref["err"])
    z_own = (mean - own["mean"]) / np.hypot(err, own["err"])
    return {"config": i, "seed": seed, "steps": steps, "U/N": mean, "err": err,
            "tau_int_samples": integrated_autocorrelation_time(u),
            "slope_per_block": slope, "slope_err": slope_err, "no_drift": bool(no_drift),
            "slope/err": slope / slope_err if slope_err > 0 else float("nan"),
            "z_ref": float(z), "consistent": bool(abs(z) <= 3.0),
            "U/N_own_ref": own["mean"], "z_own": float(z_own),
            "T_kin": t_mean, "T_kin_err": t_err, "conserved_drift_per_N": float(
                (res.thermo.conserved[-1] - res.thermo.conserved[0]) / n),
            "block_means": blocks.tolist(), "wall_s": wall, "particle_steps_per_s": n * steps / wall,
            "threads": res.info.get("threads")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=2024, help="velocity seed = seed + config index")
    args = ap.parse_args()
    bad = sorted(set(args.configs) & TEST_CONFIGS)
    if bad:
        ap.error(f"configurations {bad} are the held-out test set; use training ones (1..10)")
    if args.threads is not None:
        numba.set_num_threads(args.threads)

    t0 = time.perf_counter()
    ref = reference("ka3d_sf")
    ref_cs = reference("ka3d")
    print(f"reference U/N (ka3d_sf, shifted force): {ref['mean']:.5f} +- {ref['err']:.5f} "
          f"({ref['n_samples']} configurations; between-configuration std {ref['between_config_std']:.5f}, "
          f"single-sample std {ref['single_sample_std']:.5f})")
    print(f"same configurations with ka3d (cut and shifted): {ref_cs['mean']:.5f} +- {ref_cs['err']:.5f}")
    print(f"reference took {time.perf_counter() - t0:.1f} s", flush=True)

    rows = []
    for i in args.configs:
        row = run_one(i, args.steps, args.threads, ref, args.seed + i)
        rows.append(row)
        print({k: v for k, v in row.items() if k != "block_means"}, flush=True)

    n_ok = sum(r["no_drift"] and r["consistent"] for r in rows)
    passed = n_ok >= 3 and all(r["no_drift"] and r["consistent"] for r in rows)
    pooled = np.array([r["U/N"] for r in rows])
    cols = ["config", "U/N", "err", "slope/err", "no_drift", "z_ref", "U/N_own_ref", "z_own", "T_kin",
            "T_kin_err", "wall_s"]
    print()
    print(f"Reference U/N = {ref['mean']:.5f} +- {ref['err']:.5f} (ka3d_sf, GlassBench T = 0.44, "
          f"15 configurations x 33 samples)")
    print(table(rows, cols))
    print(f"\nmean of run means: {pooled.mean():.5f} (spread {pooled.std(ddof=1) if pooled.size > 1 else 0:.5f})")
    print(f"PASS criterion: no drift and |z_ref| <= 3 on >= 3 runs (and on every run): "
          f"{n_ok}/{len(rows)} -> {'PASS' if passed else 'FAIL'}")
    path = save("nvt_T044", {
        "model": "ka3d_sf", "T": T, "dt": DT, "tau": TAU, "thermostat": "nhc", "N": 4096, "L": L,
        "steps": args.steps, "sample_every": SAMPLE_EVERY, "n_blocks": N_BLOCKS,
        "reference": ref, "reference_cut_shift": {k: v for k, v in ref_cs.items() if k != "per_config"},
        "runs": rows, "n_pass": n_ok, "passed": passed, "wall_s_total": time.perf_counter() - t0})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
