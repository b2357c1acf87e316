"""User-level predictor jobs: train, evaluate (GlassBench metrics), score configurations.

Each job writes its output atomically with a provenance record (command, glassgen version, seed, model, T).
Configs: ``configs/predictors/*.toml`` with a ``[predictor]`` table (keys of :func:`train` plus ``hyper`` and
``descriptors`` sub-tables); command-line options override the file.
"""

from __future__ import annotations

import json
import math
import os
import time as _time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from glassgen.config_values import check_types, read_toml, type_hints
from glassgen.errors import InputError, check_temperature
from glassgen.provenance import atomic_path, check_output_name, provenance, strict_json

__all__ = ["train_spec_from_config", "train", "evaluate", "score_file", "build_predictor"]

PathLike = str | os.PathLike[str]

_TRAIN_KEYS = {"kind", "data", "T", "time", "split", "indices", "seed", "out", "hyper", "descriptors",
               "time_index"}


def train_spec_from_config(config: PathLike | None, **cli: Any) -> dict[str, Any]:
    """Merge a ``[predictor]`` TOML table with command-line values (which win when not None)."""
    spec: dict[str, Any] = {}
    if config is not None:
        p = Path(config)
        doc, _ = read_toml(p)
        other = sorted(set(doc) - {"predictor"})
        if other:
            raise InputError(f"{p}: {', '.join(other)} outside the [predictor] table (predict train reads only it)")
        table = doc.get("predictor")
        if not isinstance(table, dict):
            raise InputError(f"{p}: no [predictor] table")
        bad = set(table) - _TRAIN_KEYS
        if bad:
            raise InputError(f"{p}: unknown key(s) {sorted(bad)} (allowed: {sorted(_TRAIN_KEYS)})")
        for k, kind in (("hyper", dict), ("descriptors", dict), ("indices", list)):
            if k in table and not isinstance(table[k], kind):
                raise InputError(f"{p}: {k} must be a {'table' if kind is dict else 'list'}, got {table[k]!r}")
        spec.update(check_types(table, {k: v for k, v in type_hints(train).items() if k not in ("hyper", "indices")},
                                f"{p} [predictor]"))
        if isinstance(spec.get("data"), str):  # $GLASSGEN_DATA/..., or relative to the repository root
            from glassgen.config import config_path

            spec["data"] = config_path(spec["data"])
    given = {k: v for k, v in cli.items() if v is not None}
    if "time" in given and "time_index" in given:
        raise InputError("give the lag time as --time or as --time-index, not both")
    for a, b in (("time", "time_index"), ("time_index", "time")):
        if a in given:  # the command line's lag replaces the config's, in whichever form the config gave it
            spec.pop(b, None)
    spec.update(given)
    return spec


def build_predictor(kind: str, descriptors: dict[str, Any] | None = None, hyper: dict[str, Any] | None = None) -> Any:
    """A fresh predictor of ``kind`` ('ridge', 'glassmlp', 'gnn') with descriptor settings and hyperparameters."""
    from glassgen.predictors import REGISTRY
    from glassgen.predictors.descriptors import DescriptorSettings

    cls = REGISTRY.get(kind)
    if cls is None:
        raise InputError(f"unknown predictor kind {kind!r} (known: {', '.join(sorted(REGISTRY))})")
    settings = DescriptorSettings.from_dict(descriptors or {})
    try:
        return cls(settings, **(hyper or {}))
    except TypeError as exc:
        raise InputError(f"bad hyperparameters for {kind}: {exc}") from None


def _resolve_time(ds: Any, T: float | None, time: float | None, time_index: int | None) -> float | None:
    if T is not None:
        check_temperature(T)
    if time is not None:
        if not (isinstance(time, (int, float)) and math.isfinite(time) and time > 0):
            raise InputError(f"the lag time must be positive, got time={time}")
        return time
    if time_index is None:
        return time
    s = next(iter(ds.samples(T=T, load_replicas=False)), None)
    if s is None:
        raise InputError(f"no samples at T={T} in {ds.root}" if T is not None else f"no samples in {ds.root}")
    if s.times is None:
        raise InputError("the data have no time grid: pass --time")
    if not (isinstance(time_index, int) and 0 <= time_index < len(s.times)):
        raise InputError(f"time_index must be in [0, {len(s.times) - 1}] (the time grid has {len(s.times)} "
                         f"points), got {time_index}")
    return float(s.times[time_index])


def _grid_row(ds: Any, T: float | None, t: float | None) -> int | None:
    """Row of the training samples' time grid that equals lag t (None if t is None, off the grid or no grid)."""
    s = next(iter(ds.samples(T=T, load_replicas=False)), None)
    if t is None or s is None or s.times is None:
        return None
    k = int(np.argmin(np.abs(np.log(s.times / t))))
    return k if abs(s.times[k] - t) <= 1e-3 * t else None


def train(*, kind: str, data: PathLike, out: PathLike, T: float | None = None, time: float | None = None,
          time_index: int | None = None, split: str = "train", indices: list[int] | None = None, seed: int = 0,
          hyper: dict[str, Any] | None = None, descriptors: dict[str, Any] | None = None,
          allow_test: bool = False, progress: bool = False) -> dict[str, Any]:
    """Train a predictor on ``data`` (a GlassBench directory) at lag ``time`` and save it to ``out``.

    Args:
        kind: 'ridge', 'glassmlp' or 'gnn'.
        data: directory of GlassBench-layout npz files.
        out: model file (``.npz``); a GNN keeps a checkpoint ``out + '.ckpt.npz'`` while it trains, resumes
            from it (same data and settings only) and removes it once the model is saved.
        T: training temperature (all present if None); time / time_index: lag time or its row in the
            time grid (None with isoconfig files: the replicas' time).
        split, indices: which samples (default the train split; never the test split for real benchmarks:
            any other split is refused unless ``allow_test``).
        seed: training seed (CV folds, initialisation, batch order).

    Returns:
        summary dict (also written next to the model as ``<out>.json``).
    """
    import torch

    from glassgen.systems.glassbench import read_dataset

    check_output_name(out, "NumPy .npz")
    if time is not None and time_index is not None:
        raise InputError("give the lag time as --time or as --time-index, not both")
    if split != "train" and not allow_test:
        raise InputError(f"split = {split!r}: predictors train on the train split only (held-out configurations "
                         "must stay unseen); set allow_test = true to train on other data deliberately")
    torch.set_num_threads(int(os.environ.get("GLASSGEN_TORCH_THREADS", "1")))
    pred = build_predictor(kind, descriptors, hyper)  # bad settings are reported before the data are read
    ds = read_dataset(data)
    t = _resolve_time(ds, T, time, time_index)
    if kind == "gnn":
        pred.hyper["checkpoint"] = str(out) + ".ckpt.npz"
    t0 = _time.perf_counter()
    pred.fit(ds, t, T=T, split=split, indices=indices, seed=seed, progress=progress)
    secs = _time.perf_counter() - t0
    # the row of the time grid (6 = tau_alpha in GlassBench grids): evaluation at another T uses that row
    pred.info["time_index"] = time_index if time_index is not None else _grid_row(ds, T, t)
    prov = provenance(seed=seed, model=pred.settings.model, T=T, kind=kind, data=str(data), lag_time=t)
    pred.info["train_seconds"] = secs
    pred.save(out, provenance=prov)
    if kind == "gnn":  # the training is complete and saved: its checkpoint can resume nothing
        Path(pred.hyper["checkpoint"]).unlink(missing_ok=True)
    summary = {"model_file": str(out), "kind": kind, "time": t, "T_train": pred.info.get("T_train"),
               "n_train": pred.info.get("n_train"), "train_seconds": round(secs, 2), "seed": seed}
    for k in ("alpha", "cv_pearson", "threshold"):
        if k in pred.info:
            summary[k] = pred.info[k]
    _write_json(Path(str(out) + ".json"), {"provenance": prov, **summary})
    return summary


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(strict_json(obj))


def evaluate(*, model: PathLike, data: PathLike, T: float | None = None, split: str = "test",
             time: float | None = None, time_index: int | None = None, indices: list[int] | None = None,
             out: PathLike | None = None, threshold: float = 0.3, progress: bool = False) -> dict[str, Any]:
    """All GlassBench metrics of a trained predictor on ``data`` (species A): pooled and per-configuration
    Pearson, R^2, chi_4 of the true and predicted fields (threshold 0.3).

    Args:
        model: predictor file; data: GlassBench directory; T/split/indices: the evaluated samples
            (default: the test split); time: lag time; time_index: row of each sample's time grid instead
            (at each sample's temperature: 6 is tau_alpha in GlassBench grids). Default: the model's training
            time where the samples' grid holds it, else the model's training row (transfer to another T at
            the same t / tau_alpha), else the replicas' lag time of isoconfigurational files.
        out: optional JSON output (atomic, with provenance).
    """
    from glassgen.bench.metrics import score_all
    from glassgen.predictors import load_predictor
    from glassgen.predictors.base import select_samples
    from glassgen.progress import progress_bar

    if out is not None:
        check_output_name(out, "JSON")
    if T is not None and not (math.isfinite(T) and T > 0):
        raise InputError(f"T must be positive, got T={T}")
    if time is not None and not (math.isfinite(time) and time > 0):
        raise InputError(f"--time must be positive, got {time}")
    if time is not None and time_index is not None:
        raise InputError("give the lag time as --time or as --time-index, not both")
    pred = load_predictor(model)
    t = time if time is not None else pred.info.get("time")
    row = time_index if time_index is not None else (None if time is not None else pred.info.get("time_index"))
    samples = select_samples(Path(data), T, split, indices)
    y_true, y_pred, masks, lags = [], [], [], {}
    t0 = _time.perf_counter()
    with progress_bar(len(samples), "evaluate", progress) as advance:
        for s in samples:
            ts = _lag_of_sample(s, t, row, explicit_row=time_index is not None)
            lags[s.T] = ts
            f = pred.frame(s, ts)
            y_true.append(f.target)
            y_pred.append(pred.predict_frame(f))
            masks.append(s.mask(0))
            advance(1)
    metrics = score_all(y_true, y_pred, masks, threshold)
    if len(samples) == 1:
        warnings.warn(f"one configuration evaluated ({samples[0].path or 'sample'}): chi_4 (a variance over "
                      "configurations) and the per-configuration Pearson error are NaN; evaluate two or more",
                      stacklevel=2)
    for s in samples:  # targets from isoconfigurational replicas are at the replicas' recorded lag time
        if lags[s.T] is None and s.replica_time is not None:
            lags[s.T] = s.replica_time
    distinct = sorted({v for v in lags.values() if v is not None})
    t = distinct[0] if len(distinct) == 1 else ({f"{k:g}": v for k, v in sorted(lags.items())} if distinct else None)
    res = {"model_file": str(model), "kind": pred.kind, "time": t, "time_index": row,
           "T_train": pred.info.get("T_train"),
           "T_test": sorted({s.T for s in samples}), "test_indices": [s.index for s in samples],
           "seconds": round(_time.perf_counter() - t0, 2), **metrics}
    if out is not None:
        _write_json(Path(out), {"provenance": provenance(model=pred.settings.model, T=T, kind=pred.kind,
                                                         seed=pred.info.get("seed")), **res})
    return res


def _lag_of_sample(s: Any, t: float | None, row: int | None, explicit_row: bool) -> float | None:
    """Lag time at which sample s is scored: row ``row`` of its time grid if asked for (``explicit_row``) or if
    t is not on its grid (a model trained at another T); else t."""
    on_grid = s.times is not None and t is not None and np.min(np.abs(s.times - t)) <= 1e-3 * t
    if row is None or not (explicit_row or (s.times is not None and not on_grid)):
        return t
    if s.times is None:
        raise InputError(f"{s.path or 'sample'} has no time grid: --time-index needs one (pass --time)")
    if not (isinstance(row, int) and 0 <= row < len(s.times)):
        raise InputError(f"time_index must be in [0, {len(s.times) - 1}] (the time grid has {len(s.times)} points), "
                         f"got {row}")
    return float(s.times[row])


def score_file(*, model: PathLike, input: PathLike, out: PathLike, interaction_model: str | None = None,
               progress: bool = False) -> dict[str, Any]:
    """Per-particle predictions of one configuration file (xyz/HDF5/LAMMPS data, or a GlassBench npz).

    Writes ``out`` (npz): ``prediction`` (N,), ``species``, ``positions``, ``box``, ``provenance`` (JSON: command,
    version, model, kind, input, the predictor's seed, ``T`` the input's temperature where its file records one
    and ``T_train`` the predictor's training temperature(s)).
    """
    from glassgen.predictors import load_predictor

    check_output_name(out, "NumPy .npz")
    pred = load_predictor(model)
    p = Path(input)
    if not p.is_file():
        raise InputError(f"input file not found: {p}")
    if p.suffix == ".npz":
        from glassgen.systems.glassbench import read_sample

        s = read_sample(p, load_replicas=False)
        pos, spec, box, T_input = s.positions, s.species, s.box, s.T
    else:
        from glassgen.systems.io import read_configuration

        wanted = interaction_model or pred.settings.model
        try:
            c = read_configuration(p, wanted)
        except InputError as err:  # say so if the file records another system than the predictor's
            try:
                own = read_configuration(p).model
            except InputError:
                own = None
            if own is None or own.name == wanted:
                raise
            raise InputError(f"{p} holds a {own.name} configuration but predictor {model} is for {wanted} "
                             f"({err})") from None
        pos, spec, box, T_input = c.positions, c.species, c.box, c.metadata.get("T")
    t0 = _time.perf_counter()
    y = pred.score(pos, spec, box)
    secs = _time.perf_counter() - t0
    try:  # the input's temperature where its file records one (glassgen HDF5, GlassBench npz), else None
        T_input = float(T_input) if T_input is not None else None
    except (TypeError, ValueError):
        T_input = None
    prov = provenance(model=pred.settings.model, kind=pred.kind, input=str(p), seed=pred.info.get("seed"),
                      T=T_input, T_train=pred.info.get("T_train"))
    target = Path(out)
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, prediction=y, species=spec, positions=pos, box=box,
                     provenance=np.asarray(json.dumps(prov, default=str)))
    return {"out": str(target), "N": int(y.size), "seconds": round(secs, 3), "mean_prediction": float(y.mean())}


def softness(*, out: PathLike, temperatures: list[float], n: int = 400, model: str = "ka3d",
             t_eq: list[float] | None = None, t_prod: float = 100.0, frame_dt: float = 0.1, half_window: int = 10,
             p_c: float = 0.2, seed: int = 0, model_out: PathLike | None = None,
             progress: bool = False) -> dict[str, Any]:
    """Softness study: MD at each T, p_hop labels, linear SVM, P_R(S, T), Arrhenius fits; TOML export to ``out``.

    The trajectory of each finished temperature is kept in ``<out>.trajectories.npz`` (rewritten atomically
    after each one, with the settings that made it) until the export is written: an interrupted study
    resumes at the temperature in progress and gives the uninterrupted export.

    Args:
        temperatures: MD temperatures; t_eq: equilibration time per T (default 30 / max(T - 0.45, 0.05), capped at 400).
        n: particles; t_prod: production length per T; frame_dt: frame spacing; half_window: p_hop half window
            in frames (t_R = 2 half_window frame_dt); p_c: rearrangement threshold.
        model_out: also save the SVM (``.npz`` predictor file).
    """
    from glassgen.predictors.softness import TrajectoryData, export_toml, simulate_trajectory, softness_study
    from glassgen.progress import progress_bar

    temps = [float(t) for t in temperatures]
    if len(temps) < 2 or min(temps) <= 0:
        raise InputError("the softness study needs at least two positive temperatures")
    for T in temps:
        check_temperature(T)
    finite = all(math.isfinite(float(v)) for v in (t_prod, frame_dt, p_c))
    if not finite or n < 2 or t_prod <= 0 or frame_dt <= 0 or half_window < 1 or not 0 < p_c or seed < 0:
        raise InputError("the softness study needs n >= 2, finite t_prod > 0, frame_dt > 0 and p_c > 0, "
                         "half_window >= 1 and seed >= 0")
    md_dt = 0.005  # the MD step of simulate_trajectory: frames must fall on steps
    if abs(frame_dt / md_dt - round(frame_dt / md_dt)) > 1e-9 * (frame_dt / md_dt) or round(frame_dt / md_dt) < 1:
        raise InputError(f"frame_dt = {frame_dt} must be a positive multiple of the MD step {md_dt}")
    if t_prod < 4 * half_window * frame_dt:
        raise InputError(f"t_prod = {t_prod} is shorter than two p_hop windows (4 x half_window x frame_dt = "
                         f"{4 * half_window * frame_dt:g})")
    if not str(out).endswith(".toml"):
        raise InputError(f"--out {out}: the softness law is a TOML file; name it .toml")
    if model_out is not None:
        check_output_name(model_out, "NumPy .npz")
        if Path(model_out).resolve() == Path(out).resolve():
            raise InputError("--svm-out and --out name the same file")
    eq = list(t_eq) if t_eq else [min(400.0, 30.0 / max(T - 0.45, 0.05)) for T in temps]
    if len(eq) != len(temps) or min(eq) < 0:
        raise InputError("t_eq needs one non-negative equilibration time per temperature")
    t0 = _time.perf_counter()
    keep = Path(str(out) + ".trajectories.npz")
    settings = json.dumps({"model": model, "n": n, "temperatures": temps, "t_eq": eq, "t_prod": t_prod,
                           "frame_dt": frame_dt, "seed": seed}, sort_keys=True)
    done: dict[str, np.ndarray] = {}
    if keep.is_file():  # finished temperatures of an interrupted run of the same study
        try:
            with np.load(keep, allow_pickle=False) as z:
                saved = str(z["settings"])
                done = {k: z[k] for k in z.files if k != "settings"}
        except (OSError, ValueError, KeyError):
            raise InputError(f"{keep} is not a readable trajectory file of a softness study; remove it") from None
        if saved != settings:  # never overwrite another study's finished work without a word
            raise InputError(f"{keep} holds trajectories of a softness study with other settings ({saved}); "
                             "rerun that study, remove the file or use another --out")
    trajs = []
    with progress_bar(len(temps), "softness MD", progress) as advance:
        for k, T in enumerate(temps):
            if f"positions_{k}" in done:  # finished before an interruption: the same trajectory, read back
                trajs.append(TrajectoryData(done[f"positions_{k}"], done[f"species_{k}"], done[f"box_{k}"], T,
                                            float(frame_dt), model))
            else:
                tr = simulate_trajectory(model, n, T, eq[k], t_prod, frame_dt, seed=seed + k)
                trajs.append(tr)
                done.update({f"positions_{k}": tr.positions, f"species_{k}": tr.species, f"box_{k}": tr.box})
                with atomic_path(keep) as tmp, open(tmp, "wb") as fh:
                    np.savez(fh, settings=np.asarray(settings), **done)
            advance(1)
    md_secs = _time.perf_counter() - t0
    pred, res = softness_study(trajs, half_window=half_window, p_c=p_c, nr_window=2 * half_window,
                               n_train_frames=10**9, seed=seed, progress=progress)
    meta = {"model": model, "n": n, "temperatures": temps, "t_eq": eq, "t_prod": t_prod, "frame_dt": frame_dt,
            "t_R": 2 * half_window * frame_dt, "p_c": p_c, "seed": seed, "svm_C": pred.info["C"],
            "svm_cv_accuracy": max(pred.info["cv_accuracy"]), "n_labels": pred.info["n_labels"],
            "provenance": {k: v for k, v in provenance(seed=seed, model=model).items()
                           if isinstance(v, (str, int, float))}}
    export_toml(out, res, meta)
    if model_out is not None:
        pred.save(model_out, provenance=provenance(seed=seed, model=model, kind="softness"))
    keep.unlink(missing_ok=True)
    if not res["fit"]:
        warnings.warn(f"{out}: no softness bin had rearrangements at two or more temperatures, so the law has no "
                      "Arrhenius fit and cannot serve the trap models; run longer (--t-prod), larger (--N) or at "
                      "more temperatures", stacklevel=2)
    return {"out": str(out), "md_seconds": round(md_secs, 1), "total_seconds": round(_time.perf_counter() - t0, 1),
            "fit": res["fit"], "S_mean": res["S_mean"].tolist(), "S_std": res["S_std"].tolist(),
            "svm": res["svm"], "P_R": res["P_R"].tolist(), "S": res["S"].tolist(),
            "DeltaE_bins": res["arrhenius"]["DeltaE"].tolist(), "Sigma_bins": res["arrhenius"]["Sigma"].tolist()}
