"""User-level jobs of the GlassBench area: dataset generation, scoring, reference checks and reports.

The CLI (:mod:`glassgen.cli_bench`) parses options and calls exactly one of these functions.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

from glassgen.api import load_config
from glassgen.config_values import check_types, type_hints
from glassgen.errors import InputError, check_temperature

__all__ = ["dataset_make", "dataset_spec_from_config", "bench_reference", "bench_score", "bench_report"]

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
    temps_cfg = opts.get("temperatures")
    if temps_cfg is not None and not isinstance(temps_cfg, list):
        temps_cfg = opts["temperatures"] = [temps_cfg]
    check_types({f"temperatures[{i}]": t for i, t in enumerate(temps_cfg or [])},
                {f"temperatures[{i}]": float for i in range(len(temps_cfg or []))}, str(config))
    opts = check_types(opts, {**type_hints(DatasetSpec), "workers": int, "out": str}, str(config))
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
    if Path(out).exists() and not Path(out).is_dir():
        raise InputError(f"--out {out} is a file: a dataset is a folder (out/T<T>/N<N>T<T>_<i>.npz)")
    if len({float(s.T) for s in specs}) != len(specs):
        raise InputError(f"a temperature is given twice: {[s.T for s in specs]}")
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
        res.pop("T", None)  # the key says it
        summary[f"T={spec.T:g}"] = res
    summary["out"] = str(Path(out))
    return summary


def _cache(cache: PathLike | None) -> Path:
    return Path(cache) if cache is not None else Path(os.environ.get("GLASSGEN_CACHE", "runs/cache"))


def bench_reference(*, data: PathLike | None = None, cache: PathLike | None = None, out: PathLike | None = None,
                    progress: bool = False) -> dict[str, Any]:
    """rho_max, chi_4 and the EPOT-propensity Pearson at tau_alpha on the shipped KA 3D T = 0.44 samples.

    Args:
        data: the data directory (default ``GLASSGEN_DATA`` / ``../shared/data``).
        cache: inherent-state cache directory (default ``runs/cache``).
        out: optional JSON file for the numbers (atomic, with provenance).
    """

    from glassgen.bench.reference import shipped_reference
    from glassgen.config import data_dir
    from glassgen.provenance import atomic_path, check_output_name, provenance, strict_json

    if out is not None:
        check_output_name(out, "JSON")  # before the hour of minimisations, not after
    d = Path(data) if data is not None else data_dir()
    res = shipped_reference(d, _cache(cache), progress=progress)
    if out is not None:
        with atomic_path(out) as tmp:
            tmp.write_text(strict_json({"provenance": provenance(data=str(d)), **res}))
    flat: dict[str, Any] = {"samples": f"{res['n_samples']} ({res['n_test']} held-out test)"}
    for which in ("all", "test"):
        flat[f"rho_max ({which})"] = res[f"rho_max_{which}"]
        flat[f"chi4 at tau_alpha ({which})"] = res[f"chi4_{which}"]
        for kind in ("inherent", "thermal"):
            v = res[f"pearson_EPOT_{kind}_{which}"]
            flat[f"Pearson EPOT {kind} pooled ({which})"] = v["pooled"]
            flat[f"Pearson EPOT {kind} per-config ({which})"] = (v["per_config"], v["per_config_err"])
    cg = res["pearson_EPOT_cg_inherent"]
    flat["Pearson coarse-grained EPOT inherent (test)"] = cg["test_at_selected_L"]
    flat["  its L (chosen on training samples)"] = cg["L_selected_on_train"]
    flat["chi4 bootstrap error (all)"] = res["chi4_all_bootstrap_err"]
    flat["published (100 test configs)"] = res["published"]
    return flat


def _load_predictions(path: PathLike) -> dict[str, Any]:
    """The numeric arrays of a predictions npz; 0-d string entries (metadata such as ``provenance``) are left
    out, and a ``provenance`` JSON entry is returned parsed under the key ``None``."""
    import json
    import zipfile

    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise InputError(f"predictions file not found: {p}")
    if not zipfile.is_zipfile(p):
        raise InputError(f"{p} is not a predictions file (an .npz archive, e.g. from glassgen predict score)")
    try:
        with np.load(p, allow_pickle=False) as z:
            raw = {k: z[k] for k in z.files}
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"cannot read predictions {p}: {exc}") from None
    out: dict[Any, Any] = {}
    for k, v in raw.items():
        if v.dtype.kind in "US" and v.ndim == 0:  # metadata, e.g. the provenance of glassgen predict score
            if k == "provenance":
                try:
                    out[None] = json.loads(str(v))
                except json.JSONDecodeError:
                    out[None] = {}
            continue
        if v.dtype.kind not in "fiub":
            raise InputError(f"{p}: array {k!r} holds {v.dtype} values, not numbers (not a predictions file)")
        out[k] = v
    return out


def _predictions_by_sample(files: list[PathLike], paths: list[Path]) -> tuple[str, dict[str, Any]]:
    """{sample stem: prediction} from npz files of two kinds, and the name the scores get.

    * one array per sample, named by the sample's file stem (several samples per file);
    * the output of ``glassgen predict score`` (one sample: ``prediction``, ``positions``, ``provenance``),
      matched to the sample it was computed on by the input path in its provenance, else by its positions.
    """
    import numpy as np

    from glassgen.systems.glassbench import read_sample

    stems = {p.stem: p for p in paths}
    merged: dict[str, Any] = {}
    origin: dict[str, Path] = {}
    positions: dict[str, np.ndarray] = {}
    for f in files:
        arrays = _load_predictions(f)
        prov = arrays.pop(None, None)
        if "prediction" in arrays and "positions" in arrays:  # glassgen predict score: one configuration
            src = str((prov or {}).get("input", ""))
            stem = Path(src).stem if Path(src).stem in stems else None
            if stem is None:
                if not positions:
                    positions = {q.stem: read_sample(q, load_replicas=False).positions for q in paths}
                stem = next((k for k, x in positions.items()
                             if x.shape == arrays["positions"].shape and np.array_equal(x, arrays["positions"])), None)
            if stem is None:
                raise InputError(f"{Path(f).name}: predictions of {src or 'a configuration'}, which is none of the "
                                 f"{len(paths)} samples scored ({', '.join(list(stems)[:3])}"
                                 f"{', ...' if len(stems) > 3 else ''})")
            found = {stem: arrays["prediction"]}
        else:
            found = {k: v for k, v in arrays.items() if k in stems}
            if not found:
                raise InputError(f"{Path(f).name}: no array named after a scored sample (e.g. "
                                 f"{next(iter(stems))}) and not a glassgen predict score output")
        for k, v in found.items():
            if k in merged:
                raise InputError(f"predictions for {k} given twice: in {origin[k].name} and {Path(f).name}")
            merged[k], origin[k] = v, Path(f)
    missing = [p.stem for p in paths if p.stem not in merged]
    if missing:
        raise InputError(f"predictions lack {len(missing)} of the {len(paths)} samples scored, e.g. {missing[0]} "
                         "(give one --predictions per sample, or one npz with an array per sample stem)")
    name = Path(files[0]).stem if len(files) == 1 else "predictions"
    return name, merged


def bench_score(*, data: PathLike, T: float, system: str | None = None, split: str | None = "test",
                key: list[str] | None = None, predictions: PathLike | list[PathLike] | None = None,
                cache: PathLike | None = None, out: PathLike | None = None) -> dict[str, Any]:
    """Score predictions against the propensity: pooled/per-config Pearson, R^2, chi_4.

    The propensity is md_prop at every lag time; files without md_prop (the shipped isoconfigurational
    samples) give it from their replicas at their one lag time, and the summary says so.

    Args:
        data: dataset directory (GlassBench archive or ours).
        T: temperature; system: 'KA', 'KA2D' or a model name (default: the only one present).
        split: 'test', 'train' or None (all).
        key: keys to report (default all: EPOT, EPOT_thermal, published keys present).
        predictions: npz file(s): one array per sample, named by the sample's file stem, (N,) or (n_times, N);
            or outputs of ``glassgen predict score``, one per sample.
        out: JSON output (atomic, with provenance).
    """

    import numpy as np

    from glassgen.bench.report import score_dataset
    from glassgen.provenance import atomic_path, check_output_name, provenance, strict_json
    from glassgen.systems.glassbench import read_dataset

    if out is not None:
        check_output_name(out, "JSON")
    check_temperature(T)
    ds = read_dataset(data)
    systems = [s for s in ds.systems if any(abs(t - T) < 1e-9 for (sy, t, _) in ds.files if sy == s)]
    if not systems:
        raise InputError(f"no samples at T={T:g} in {data} (temperatures there: "
                         f"{', '.join(f'{t:g}' for t in ds.temperatures)})")
    if system is None:
        if len(systems) != 1:
            raise InputError(f"T={T}: choose --system among {systems}")
        system = systems[0]
    extra = None
    if predictions is not None and not isinstance(predictions, list):
        predictions = [predictions]
    if predictions:
        paths = ds.paths(system, T, split)
        if not paths:
            raise InputError(f"no {split or ''} samples for {system} T={T:g} in {data}".replace("  ", " "))
        name, pr = _predictions_by_sample(predictions, paths)
        extra = {name: [np.asarray(pr[p.stem], dtype=np.float64) for p in paths]}
    res = score_dataset(ds, system, T, split, _cache(cache), extra)
    keys = key or list(res["scores"])
    unknown = [k for k in keys if k not in res["scores"]]
    if unknown:
        raise InputError(f"unknown key(s) {unknown}; available: {sorted(res['scores'])}")
    if out is not None:
        with atomic_path(out) as tmp:
            payload = {"provenance": provenance(data=str(data), T=T, system=system, split=split),
                       **{k: v for k, v in res.items() if k != "R_tau"}}
            tmp.write_text(strict_json(payload))
    k_tau = res["tau_index"]
    lag = float(res["times"][k_tau])
    at = "@tau_alpha" if res["tau_alpha_known"] and abs(lag - res["tau_alpha"]) <= 1e-3 * res["tau_alpha"] \
        else f"@t={lag:g}"
    summary: dict[str, Any] = {"system": system, "T": T, "configurations": res["n_configs"],
                               "tau_alpha": res["tau_alpha"] if res["tau_alpha_known"] else "unknown"}
    if res["note"]:
        summary["propensity"] = res["note"]
    for k in keys:
        row = res["scores"][k][k_tau]
        summary[f"{k} Pearson pooled {at}"] = row["pearson_pooled"]
        summary[f"{k} Pearson per-config {at}"] = (row["pearson_per_config"], row["pearson_per_config_err"])
        if res["times"].size > 1:
            summary[f"{k} Pearson pooled vs t"] = [round(r["pearson_pooled"], 4) for r in res["scores"][k]]
    if res["times"].size > 1:
        summary["chi4 true vs t"] = [round(c, 3) for c in res["chi4_true"]]
    else:
        summary[f"chi4 true {at}"] = res["chi4_true"][0]
    return summary


def bench_report(*, data: PathLike, out: PathLike, split: str | None = "test", reference: bool = False,
                 models: PathLike | None = None, published: PathLike | None = None,
                 cache: PathLike | None = None) -> dict[str, Any]:
    """Markdown + PNG report of a dataset (every system and temperature in it), with published curves.

    Args:
        data: dataset directory.
        out: report directory (report.md, report.json, *.png).
        reference: also compute the shipped KA 3D T = 0.44 reference numbers.
        models: JSON with model results from ``glassgen predict eval`` (transferability etc.).
        published: folder of the published curves (default ``<data>/../reference/glassbench-results``).
    """

    from glassgen.bench.reference import shipped_reference
    from glassgen.bench.report import read_published, score_dataset, write_report
    from glassgen.config import data_dir
    from glassgen.provenance import provenance
    from glassgen.systems.glassbench import read_dataset
    from glassgen.systems.io import read_json_object

    if published is not None and not Path(published).is_dir():
        raise InputError(f"published-results folder not found: {published}")
    model_res = None
    if models is not None:
        model_res = read_json_object(models, "models")
        if not ({"pearson", "transferability"} & set(model_res)):
            raise InputError(f"{models} is not a model-results JSON (needs 'pearson' or 'transferability', as "
                             "written by benchmarks/predictors.py)")
        for key, levels in (("pearson", ("model", "T_train", "T_test", "t")),
                            ("transferability", ("model", "T_train", "T_test"))):
            if key in model_res:
                _check_nested(model_res[key], levels, f"{models}: {key}")
    ds = read_dataset(data)
    results = []
    skipped: list[str] = []
    # one report row per (system, T): with split None a temperature's train and test files are scored together
    groups = sorted({(system, T) for system, T, sp in ds.files if split is None or sp == split})
    if not groups:
        raise InputError(f"no {split} samples in {data} (splits there: "
                         f"{', '.join(sorted({sp for _, _, sp in ds.files}))})")
    for system, T in groups:
        try:
            res = score_dataset(ds, system, T, split, _cache(cache))
        except InputError as exc:
            where = f"{system} T={T:g}"
            skipped.append(str(exc) if str(exc).startswith(where) else f"{where}: {exc}")
            print(f"skipped {skipped[-1]}", file=sys.stderr)
            continue
        if res["note"]:  # the curves vs t need md_prop at several lag times
            print(f"{system} T={T:g}: propensity from the replicas at t = {res['times'][0]:g} only (no md_prop time "
                  "series): Pearson and chi_4 vs t have that one point", file=sys.stderr)
        results.append(res)
    if not results:
        raise InputError(f"nothing to score in {data} (split={split}): {skipped[0]}"
                         + (f" (and {len(skipped) - 1} more skipped)" if len(skipped) > 1 else ""))
    pub_dir = Path(published) if published is not None else data_dir().parent / "reference" / "glassbench-results"
    if model_res is not None and "transferability" not in model_res and "pearson" in model_res:
        model_res["transferability"] = _transfer_at_tau(model_res["pearson"], results)
        model_res["transferability_definition"] = (
            "Pearson at the lag nearest tau_alpha of the test temperature: for our datasets tau_alpha where "
            "F_s(q = 7.25, A) = 1/e; for the real KA T = 0.44 data the published label 4120 (where F_s = 0.29)")
    ref = shipped_reference(data_dir(), _cache(cache)) if reference else None
    files = write_report(results, Path(out), read_published(pub_dir), model_res,
                         provenance(data=str(data), split=split), ref)
    return {"written": [str(f) for f in files],
            "scored": [f"{r['system']} T={r['T']:g} ({r['n_configs']} configs"
                       + (f"; replicas at t = {r['times'][0]:g} only: no time series)" if r["note"] else ")")
                       for r in results]}


def _check_nested(obj: Any, levels: tuple[str, ...], where: str) -> None:
    """One-line error unless ``obj`` is {level0: {level1: ... {last: finite number}}}; every level but the
    first (a model name) is keyed by numbers written as strings (temperatures, lag times)."""
    if not isinstance(obj, dict):
        raise InputError(f"{where} must be an object keyed by {levels[0]}, got {type(obj).__name__}")
    for k, v in obj.items():
        if levels[0] != "model":
            try:
                float(k)
            except ValueError:
                raise InputError(f"{where}: key {k!r} is not a number ({levels[0]})") from None
        if len(levels) == 1:
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isinf(v)):
                raise InputError(f"{where}[{k!r}] must be a number (NaN for none), got {v!r}")
        else:
            _check_nested(v, levels[1:], f"{where}[{k!r}]")


def _transfer_at_tau(pearson: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    """{model: {T_train: {T_test: Pearson at tau_alpha of T_test}}} from predictor results keyed by lag time.

    ``pearson[model][T_train][T_test][t]`` (``glassgen predict`` / benchmarks/predictors.py); the value at
    the lag closest to the test temperature's tau_alpha (ours from the scored dataset, 4120 for the real
    KA T = 0.44 data) is taken.
    """
    tau = {f"{r['T']:g}": r["tau_alpha"] for r in results}
    tau.setdefault("0.44", 4120.0)
    out: dict[str, Any] = {}
    for model, by_train in pearson.items():
        for t_train, by_test in by_train.items():
            for t_test, by_t in by_test.items():
                key = f"{float(t_test):g}"
                if key not in tau or not by_t:
                    continue
                lag = min(by_t, key=lambda k: abs(float(k) / tau[key] - 1.0))
                out.setdefault(model, {}).setdefault(t_train, {})[t_test] = float(by_t[lag])
    return out
