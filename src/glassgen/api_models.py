"""User-level jobs of the phenomenological models: trap-model temperature sweeps and StEP shear runs.

Each job validates its input (one-line :class:`~glassgen.errors.InputError`), writes one HDF5 file
atomically with provenance attributes (command, glassgen version, seed, model, temperatures/softness)
and a PNG summary next to it, and keeps a checkpoint ``<out>.ckpt.h5`` with the finished temperatures
(or softness values) so that an interrupted sweep resumes without recomputing them. A trap-model sweep also
keeps the finished replicas of the temperature in progress and, every minute and at a Ctrl-C, the whole
state of the replica in progress (group ``running``), from which the rerun continues the same random stream:
its result is that of the uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from glassgen.config_values import read_toml
from glassgen.dynamics.schedule import DeferredInterrupt
from glassgen.errors import InputError, check_temperature
from glassgen.provenance import atomic_path, check_hdf5_name, provenance

__all__ = ["trap_model_run", "step_model_run", "load_model_config"]

PathLike = str | os.PathLike[str]
_TRAP_SCALARS = ("tau_alpha", "tau_persistence", "D", "D_tau_alpha", "chi4_peak", "t_chi4_peak", "xi4",
                 "omega_peak", "slope_low", "beta_high", "events_per_s", "n_events", "truncated")
_TRAP_CURVES = ("times", "persistence", "persistence_all", "msd", "fs", "chi4", "omega", "chi_loss", "local_times")


def load_model_config(path: PathLike | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(job options, model parameters) of a TOML config: top-level keys and the ``[params]`` table."""
    if path is None:
        return {}, {}
    p = Path(path)
    data, _ = read_toml(p)
    unknown = sorted(k for k, v in data.items() if isinstance(v, dict) and k != "params")
    if unknown:
        raise InputError(f"unknown table(s) in {p}: {', '.join(f'[{k}]' for k in unknown)} (model parameters "
                         "go in [params], job options at the top level)")
    job = {k: v for k, v in data.items() if not isinstance(v, dict)}
    return job, dict(data.get("params", {}))


def _ckpt(out: PathLike) -> Path:
    return Path(str(out) + ".ckpt.h5")


def _read_ckpt(path: Path, signature: str) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    with h5py.File(path, "r") as f:
        if f.attrs.get("signature") != signature:
            raise InputError(f"checkpoint {path} belongs to a different job (other model or options); "
                             "delete it or choose another --out")
        done = {}
        for key in f:
            if key == _RUNNING:  # the temperature in progress (trap models): _read_running
                continue
            g = f[key]
            done[key] = {k: g[k][()] for k in g} | {k: v for k, v in g.attrs.items()}
        return done


def _write_groups(f: h5py.File, done: dict[str, dict[str, Any]]) -> None:
    """One HDF5 group per finished case: arrays as datasets, scalars as attributes."""
    for key, res in done.items():
        g = f.create_group(key)
        for k, v in res.items():
            if isinstance(v, np.ndarray):
                g.create_dataset(k, data=v)
            else:
                g.attrs[k] = v


_RUNNING = "running"


def _write_ckpt(path: Path, signature: str, done: dict[str, dict[str, Any]],
                running: dict[str, Any] | None = None) -> None:
    """The finished cases, and (trap models) the temperature in progress: ``running`` holds its T, its finished
    replicas (TrapRun objects) and the saved state of the replica in progress (or None)."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["signature"] = signature
        _write_groups(f, done)
        if running is not None:
            g = f.create_group(_RUNNING)
            g.attrs["T"] = float(running["T"])
            g.attrs["n_runs"] = len(running["runs"])
            for i, run in enumerate(running["runs"]):
                _write_dict(g.create_group(f"replica_{i}"),
                            {k.name: getattr(run, k.name) for k in dataclasses.fields(run)})
            if running["state"] is not None:
                _write_dict(g.create_group("state"), running["state"])


def _write_dict(g: h5py.Group, d: dict[str, Any]) -> None:
    """Arrays as datasets, scalars and strings as attributes, None left out."""
    for k, v in d.items():
        if isinstance(v, np.ndarray):
            g.create_dataset(k, data=v)
        elif v is not None:
            g.attrs[k] = v


def _read_dict(g: h5py.Group) -> dict[str, Any]:
    return {k: g[k][()] for k in g} | {k: (v.item() if isinstance(v, np.generic) else v) for k, v in g.attrs.items()}


def _read_running(path: Path) -> dict[str, Any] | None:
    """The temperature in progress of a trap-model checkpoint (signature checked by :func:`_read_ckpt`)."""
    from glassgen.models.trap import TrapRun

    if not path.is_file():
        return None
    with h5py.File(path, "r") as f:
        if _RUNNING not in f:
            return None
        g = f[_RUNNING]
        try:
            runs = []
            for i in range(int(g.attrs["n_runs"])):
                d = _read_dict(g[f"replica_{i}"])
                runs.append(TrapRun(**{k.name: d.get(k.name) for k in dataclasses.fields(TrapRun)}))
            return {"T": float(g.attrs["T"]), "runs": runs, "state": _read_dict(g["state"]) if "state" in g else None}
        except KeyError:
            raise InputError(f"checkpoint {path} is damaged (its temperature in progress is incomplete); delete it "
                             "or change --out") from None


def _check_T(T: Any) -> list[float]:
    if isinstance(T, str):
        raise InputError(f"temperatures must be positive numbers, got T={T!r}")
    Ts = [T] if isinstance(T, (int, float)) else list(T or [])
    if not Ts:
        raise InputError("give at least one temperature (--T)")
    for t in Ts:
        check_temperature(t)
    if len({float(t) for t in Ts}) != len(Ts):
        raise InputError(f"a temperature is given twice: {Ts}")
    return [float(t) for t in Ts]


def trap_model_run(model: str, T: float | list[float], out: PathLike, *, n: int | None = None,
                   replicas: int = 1, seed: int = 0, q: float | None = None, p_stop: float = 0.05,
                   t_max: float | None = None, max_events: int = 500_000_000, n_per_decade: int = 8,
                   n_blocks: int = 4, params: dict[str, Any] | None = None, softness_law: PathLike | None = None,
                   input: PathLike | None = None, plot: bool = True, progress: bool = False,
                   checkpoint_every_s: float = 60.0) -> dict[str, Any]:
    """Run a trap model at one or several temperatures and write observables to ``out`` (HDF5) + PNG.

    Args:
        model: ``bouchaud``, ``bouchaud-gaussian``, ``softness``, ``softness-facilitated`` or ``facilitated``.
        T: temperature(s); several make a sweep (tau_alpha against T_low / T, its steepness at T_low,
            D*tau_alpha(T)).
        out: output HDF5 path (a PNG with the same stem is written next to it).
        n: number of traps (non-facilitated models only; default 4000).
        replicas: independent runs per temperature (pooled; chi_4 uses all blocks of all replicas).
        seed: base seed; temperature T and replica r use SeedSequence([seed, round(1e6 T), r]).
        q: wave number of F_s (default pi / b).
        p_stop: stop a run once this fraction of sites has never rearranged.
        t_max: last sampling time (default automatic).
        max_events: event budget per run.
        n_per_decade: sampling times per decade.
        n_blocks: blocks per side of the chi_4 estimator.
        params: model parameters (keys of :class:`glassgen.models.trap.TrapModel`).
        softness_law: softness-law file or name (softness models).
        input: configuration file for off-lattice facilitation (``softness-facilitated``).
        plot: write the PNG summary.
        progress: draw a progress bar.
        checkpoint_every_s: wall seconds between two saved states of the replica in progress (also saved at a
            Ctrl-C, after which the job raises KeyboardInterrupt; the same call then resumes it).

    Returns:
        summary dict: per temperature tau_alpha, D, D*tau_alpha, chi_4 peak, xi_4, wing exponent, events/s;
        the fragility; output paths.
    """
    from glassgen.models.observables import analyze_runs, fragility
    from glassgen.models.trap import load_trap_model, simulate, unused_options
    from glassgen.progress import progress_bar

    check_hdf5_name(out)
    Ts = _check_T(T)
    if replicas < 1:
        raise InputError(f"replicas must be >= 1, got {replicas}")
    if not (0 <= p_stop < 1):  # (NaN fails too)
        raise InputError(f"p_stop must be in [0, 1), got {p_stop}")
    if q is not None and not (math.isfinite(q) and q > 0):
        raise InputError(f"the wave number q must be positive, got q={q}")
    mdl = load_trap_model(model, params or {}, softness_law=softness_law, input=input)
    if n is not None and (msg := unused_options(model, {"N": "n"})):  # facilitated models: L^dim or the input's
        raise InputError(msg)
    for T_ in Ts:  # every temperature is checked before the first run (onset, T0, ...)
        mdl.check_temperature(T_)
    n_eff = mdl.n_sites(n if n is not None else 4000)
    qq = float(q) if q is not None else math.pi / mdl.b
    desc = mdl.describe()
    signature = json.dumps({"model": desc, "n": n_eff, "replicas": replicas, "seed": seed, "q": qq,
                            "p_stop": p_stop, "t_max": t_max, "max_events": max_events,
                            "n_per_decade": n_per_decade, "n_blocks": n_blocks}, sort_keys=True, default=str)
    ck = _ckpt(out)
    done = _read_ckpt(ck, signature)
    running = _read_running(ck)
    t0 = time.perf_counter()
    # one Ctrl-C scope over the sweep: a Ctrl-C during a replica's last kernel call (which lets the replica end)
    # stops the sweep once that replica is saved, instead of being forgotten (it often was: short replicas
    # could not be interrupted at all)
    with DeferredInterrupt() as interrupted, \
            progress_bar(len(Ts) * replicas, f"{model} sweep", enabled=progress) as advance:
        for i_T, T_ in enumerate(Ts):
            key = f"T_{T_:.6g}"
            if key in done:
                advance(replicas)
                continue
            runs: list[Any] = []
            state = None
            if running is not None and running["T"] == T_:  # resume the temperature in progress
                runs, state = running["runs"][:replicas], running["state"]
                if len(runs) >= replicas:
                    state = None
                advance(len(runs))
            for r in range(len(runs), replicas):
                def save(st: dict[str, Any], T_: float = T_, runs: list[Any] = runs) -> None:
                    _write_ckpt(ck, signature, done, {"T": T_, "runs": runs, "state": st})

                ss = np.random.SeedSequence([int(seed), int(round(T_ * 1e6)), r])
                runs.append(simulate(mdl, T_, n=n_eff, seed=np.random.default_rng(ss), t_max=t_max,
                                     p_stop=p_stop, n_per_decade=n_per_decade, max_events=max_events,
                                     progress=advance, resume=state, save_state=save,
                                     save_every_s=checkpoint_every_s))  # advances by 1 in all (log time)
                state = None
                if r + 1 < replicas:  # the finished replicas are kept
                    _write_ckpt(ck, signature, done, {"T": T_, "runs": runs, "state": None})
                    if interrupted.seen:
                        raise KeyboardInterrupt
            res = analyze_runs(runs, qq, n_blocks=n_blocks, stationary=mdl.start == "equilibrium")
            entry: dict[str, Any] = {k: np.asarray(res[k], np.float64) for k in _TRAP_CURVES}
            entry.update({k: res[k] for k in _TRAP_SCALARS})
            if replicas >= 2:  # error bars: the spread of the replicas' own values / sqrt(replicas)
                per = [analyze_runs([r_], qq, n_blocks=n_blocks, stationary=mdl.start == "equilibrium")
                       for r_ in runs]
                for k in ("tau_alpha", "D"):  # NaN unless every replica has a value (dropping the slow ones biases)
                    v = np.array([p_[k] for p_ in per], np.float64)
                    entry[f"{k}_err"] = float(v.std(ddof=1) / math.sqrt(v.size)) if np.all(np.isfinite(v)) \
                        else float("nan")
            entry["T"] = T_
            if mdl.law is not None:
                entry["P_S_extrapolated"] = mdl.law.extrapolated(T_)
            entry["final_states"] = np.concatenate([r_.final_states for r_ in runs])
            exact = mdl.exact(T_)
            for k, v in exact.items():
                entry[f"exact_{k}"] = v
            done[key] = entry
            _write_ckpt(ck, signature, done)
            if interrupted.seen and i_T + 1 < len(Ts):  # (after the last temperature the output is written)
                raise KeyboardInterrupt
    results = {float(v["T"]): v for v in done.values() if float(v["T"]) in Ts}
    taus = [float(results[t_]["tau_alpha"]) for t_ in Ts]
    frag = fragility(Ts, taus)
    prov = provenance(seed=seed, model=model, T=Ts, N=n_eff, replicas=replicas, q=qq,
                      model_params=json.dumps(desc, default=str))
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        for k, v in prov.items():
            f.attrs[k] = v if isinstance(v, (str, int, float)) else json.dumps(v, default=str)
        f.attrs["steepness_m_at_T_low"] = frag["m"]  # d log10 tau / d(T_low/T) at T_low (not Angell's m)
        f.attrs["T_low"] = frag["Tg"]
        sw = f.create_group("sweep")
        sw.create_dataset("T", data=np.array(Ts))
        for k in ("tau_alpha", "D", "D_tau_alpha", "chi4_peak", "xi4", "beta_high", "slope_low"):
            sw.create_dataset(k, data=np.array([float(results[t_][k]) for t_ in Ts]))
        for t_ in Ts:
            g = f.create_group(f"T_{t_:.6g}")
            for k, v in results[t_].items():
                if isinstance(v, np.ndarray):
                    g.create_dataset(k, data=v)
                else:
                    g.attrs[k] = v
    png = None
    if plot:
        from glassgen.models.plots import plot_trap_sweep

        png = plot_trap_sweep({t_: results[t_] for t_ in Ts}, Path(out).with_suffix(".png"),
                              title=f"{model} trap model", fragility=frag, model=model, seed=seed, T=Ts)
    ck.unlink(missing_ok=True)
    summary: dict[str, Any] = {"model": model, "N": n_eff, "replicas": replicas}
    for t_ in Ts:
        r = results[t_]
        summary[f"T={t_:g}"] = {k: float(r[k]) for k in ("tau_alpha", "D", "D_tau_alpha", "chi4_peak", "xi4",
                                                          "beta_high", "events_per_s")}
        for k in ("tau_alpha", "D"):
            if f"{k}_err" in r:  # several replicas: value +- the standard error over them
                summary[f"T={t_:g}"][k] = (float(r[k]), float(r[f"{k}_err"]))
        if mdl.start != "equilibrium":
            summary[f"T={t_:g}"]["aging"] = True  # D is NaN, tau_alpha is from the quench (t_w = 0)
        if bool(r["truncated"]):
            summary[f"T={t_:g}"]["truncated"] = True
            warnings.warn(f"T={t_:g}: stopped by the event budget (max_events={max_events}) before the correlations "
                          "decayed; D and the spectrum are NaN, tau_alpha only if F_s crossed 1/e (raise --max-events "
                          "or lower t_max in --config)", stacklevel=2)
        if bool(r.get("P_S_extrapolated", False)):
            summary[f"T={t_:g}"]["P_S_extrapolated"] = True
            warnings.warn(f"T={t_:g}: P(S; T) of softness law {mdl.law.name!r} is extrapolated linearly outside its "
                          f"table (T = {mdl.law.ps_T[0]:g} ... {mdl.law.ps_T[-1]:g})", stacklevel=2)
        for k, v in r.items():
            if k.startswith("exact_"):
                summary[f"T={t_:g}"][k] = float(v)
    if len(Ts) > 1:  # a steepness needs two temperatures with a finite tau_alpha (else NaN, said below)
        summary["steepness_m_at_T_low"] = frag["m"]  # d log10 tau / d(T_low/T): not Angell's m (Tg at tau = 100 s)
        summary["T_low"] = frag["Tg"]
        if not math.isfinite(frag["m"]):
            summary["steepness_note"] = "fewer than two temperatures reached tau_alpha"
    summary["wall_s"] = time.perf_counter() - t0
    summary["out"] = str(out)
    if png is not None:
        summary["plot"] = str(png)
    return summary


def step_model_run(out: PathLike, *, s_mean: float | list[float] | None = None, gamma_max: float = 0.2,
                   seed: int = 0, params: dict[str, Any] | None = None, plot: bool = True,
                   progress: bool = False) -> dict[str, Any]:
    """StEP lattice model under AQS shear, for one or several initial mean softnesses.

    Args:
        out: output HDF5 path (PNG next to it).
        s_mean: initial mean softness value(s) (default: the parameters' ``s_mean``, PRR -1.66).
        gamma_max: final applied strain.
        seed: seed (the run at softness S uses SeedSequence([seed, round(1e6 |S|), S < 0]), whatever the order
            of the list).
        params: :class:`glassgen.models.step.StepParams` fields (L, dim, ...).
        plot: write the PNG summary.
        progress: draw a progress bar.

    Returns:
        summary dict: per softness the peak and flow stress, overshoot, localisation, ductility, avalanche
        statistics and frames per second; output paths.
    """
    from dataclasses import replace

    from glassgen.models.step import StepModel, StepParams, ductility
    from glassgen.progress import progress_bar

    check_hdf5_name(out)
    try:  # checked first: a NaN is named as such, whatever else is wrong
        given = None if s_mean is None else [float(sm) for sm in ([s_mean] if isinstance(s_mean, (int, float))
                                                                  else list(s_mean))]
    except (TypeError, ValueError):
        raise InputError(f"initial mean softness s_mean must be a number or a list, got {s_mean!r}") from None
    if given is not None and not all(math.isfinite(sm) for sm in given):
        raise InputError(f"initial mean softness s_mean must be finite, got {given}")
    base = StepParams.from_dict(dict(params or {}))
    base.check_ranges()
    if not (isinstance(gamma_max, (int, float)) and 0 < gamma_max <= 100):
        raise InputError(f"gamma_max must be a strain in (0, 100], got {gamma_max}")
    s_list = [float(base.s_mean)] if given is None else given
    if len({f"{sm:.6g}" for sm in s_list}) != len(s_list):
        raise InputError(f"an initial mean softness is given twice: {s_list}")
    for sm in s_list:  # every softness is checked (Weibull law in range) before the first run
        replace(base, s_mean=sm)
    signature = json.dumps({"params": base.__dict__, "gamma_max": gamma_max, "seed": seed}, sort_keys=True,
                           default=str)
    ck = _ckpt(out)
    done = _read_ckpt(ck, signature)
    runs: dict[str, Any] = {}
    t0 = time.perf_counter()
    with progress_bar(gamma_max * len(s_list), "StEP shear", enabled=progress) as advance:
        for sm in s_list:
            key = f"S_{sm:.6g}"
            if key in done:
                advance(gamma_max)
                continue
            # the seed of a run depends on its softness, not on its place in the list
            rng = np.random.default_rng(np.random.SeedSequence([seed, int(round(abs(sm) * 1e6)), int(sm < 0)]))
            mdl = StepModel(replace(base, s_mean=float(sm)), seed=rng)
            res = mdl.shear(gamma_max, progress=advance)
            entry = {f: getattr(res, f) for f in ("gamma", "stress_before", "stress_after", "aval_events",
                                                  "aval_sites", "aval_frames", "aval_released", "softness_mean",
                                                  "softness_std", "plastic_map", "softness_map",
                                                  "softness_initial")}
            entry = {k2: np.asarray(v) for k2, v in entry.items()}
            entry.update(ductility(res))
            entry.update({"s_mean": float(sm), "frames_per_s": res.frames_per_s, "completed": res.completed,
                          "wall_s": res.wall_s})
            done[key] = entry
            _write_ckpt(ck, signature, done)
    from glassgen.models.step import StepResult

    done = {f"S_{sm:.6g}": done[f"S_{sm:.6g}"] for sm in s_list}  # the requested runs only (a checkpoint may hold more)
    for key, e in done.items():
        runs[key] = StepResult(**{f: e[f] for f in ("gamma", "stress_before", "stress_after", "aval_events",
                                                   "aval_sites", "aval_frames", "aval_released", "softness_mean",
                                                   "softness_std", "plastic_map", "softness_map",
                                                   "softness_initial")},
                               frames_per_s=float(e["frames_per_s"]), wall_s=float(e["wall_s"]),
                               completed=bool(e["completed"]))
    prov = provenance(seed=seed, model="StEP", s_mean=[float(s) for s in s_list], gamma_max=gamma_max,
                      params=json.dumps(base.__dict__, default=str))
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        for k, v in prov.items():
            f.attrs[k] = v if isinstance(v, (str, int, float)) else json.dumps(v, default=str)
        _write_groups(f, done)
    png = None
    if plot:
        from glassgen.models.plots import plot_step_runs

        png = plot_step_runs({f"S0={float(done[k]['s_mean']):g}": runs[k] for k in done}, Path(out).with_suffix(".png"),
                             title=f"StEP {base.dim}D, L={base.L}", model="StEP",
                             dim=base.dim, L=base.L, seed=seed)
    ck.unlink(missing_ok=True)
    summary: dict[str, Any] = {"model": f"StEP {base.dim}D", "L": base.L}
    for e in done.values():
        summary[f"S0={float(e['s_mean']):g}"] = {
            k: float(e[k]) for k in ("sigma_peak", "gamma_peak", "sigma_flow", "overshoot", "flow_fluctuation",
                                     "overshoot_peak", "localization", "ductility", "frames_per_s")} | {
            "avalanches": int(np.sum(e["aval_events"] > 0)), "mean_aval_sites": float(np.mean(e["aval_sites"]))}
    summary["wall_s"] = time.perf_counter() - t0
    summary["out"] = str(out)
    if png is not None:
        summary["plot"] = str(png)
    return summary
