"""Predictor benchmarks (issue 5): real KA T=0.44 held-out test, our dataset (Pearson vs time, transfer), timings.

Usage (from the repository root; NUMBA_NUM_THREADS=1 recommended on the shared machine):
    python benchmarks/predictors.py t044 [--seeds 0 1 2] [--gnn-epochs 400] [--skip gnn]
    python benchmarks/predictors.py t044 --only gnn --seeds 0 --out predictors_t044_gnn.json
    python benchmarks/predictors.py ourdata [--times 0 1 2 3 4 5 6 7 8] [--gnn-times 6]
    python benchmarks/predictors.py timing

Outputs (JSON with provenance): benchmarks/results/predictors_t044.json, predictors_our_dataset.json
({model: {T_train: {T_test: {t: pearson_pooled}}}} plus details), predictors_timing.json. Trained models go
to runs/predictors/. Test configurations 401-405 (T=0.44) and the test split of our dataset are only ever used
for the final evaluation: hyperparameters come from cross-validation within the training configurations or
are fixed a priori.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "runs" / "predictors"

GM = {"families": ["glassmlp"], "model": "ka3d_sf"}
GMB = {"families": ["glassmlp", "boattini"], "model": "ka3d_sf"}
GMBCG = {"families": ["glassmlp", "boattini"], "model": "ka3d_sf", "glassmlp_cg_levels": 2}
#: + the quench displacement |r_thermal - r_IS| (chosen by 5-fold CV within 1-10: 0.823 vs 0.817 without)
GMBCGQ = {"families": ["glassmlp", "boattini", "quench"], "model": "ka3d_sf", "glassmlp_cg_levels": 2}
QUANTILE = {"calibrate": "quantile"}
#: + short-time isoconfigurational descriptors (8 NVE replicas to t = 0.5-20 at T = 0.44; a dynamical input;
#: CV within 1-10: 0.829 vs 0.823 without)
GMBCGQC = {"families": ["glassmlp", "boattini", "quench", "cage"], "model": "ka3d_sf", "glassmlp_cg_levels": 2,
           "cage": {"T": 0.44, "model": "ka3d"}}
#: GNN settings chosen by train-on-1-8 / validate-on-9-10 CV (runs/gnn_dev, see configs/predictors/ka3d_T0.44_gnn.toml)
GNN_HYPER = {"hidden": 48, "steps": 4, "r_edge": 1.5, "lr": 2e-3, "lr_final": 1e-5, "edge_features": "rbf",
             "center_targets": True}


def _write(name: str, obj: dict[str, Any]) -> Path:
    from glassgen.provenance import atomic_path, provenance

    p = RESULTS / name
    with atomic_path(p) as tmp:
        tmp.write_text(json.dumps({"provenance": provenance(), **obj}, indent=1, default=float))
    return p


def _put(d: dict[str, Any], *keys_and_value: Any) -> None:
    *keys, last, value = keys_and_value
    for k in keys:
        d = d.setdefault(k, {})
    d[last] = value


def _metrics(pred: Any, samples: list[Any], t: float | None) -> dict[str, Any]:
    from glassgen.bench.metrics import score_all

    fr = [pred.frame(s, t) for s in samples]
    yt = [f.target for f in fr]
    yp = [pred.predict_frame(f) for f in fr]
    m = [f.species == 0 for f in fr]
    out = score_all(yt, yp, m)
    out["per_config"] = [float(np.corrcoef(a[k], b[k])[0, 1]) for a, b, k in zip(yt, yp, m, strict=True)]
    out["mobile_fraction_true"] = [float(np.mean(a[k] > 0.3)) for a, k in zip(yt, m, strict=True)]
    out["mobile_fraction_pred"] = [float(np.mean(b[k] > 0.3)) for b, k in zip(yp, m, strict=True)]
    return out


def _train_oof_chi4(pred: Any, train: list[Any]) -> dict[str, Any]:
    """chi_4 and mobile fractions of the out-of-fold predictions on the training configurations (ridge: its CV
    folds at the chosen penalty; others: the cross-fitted calibration predictions), raw and through the quantile
    map; a check of the calibration that never
    touches the test set."""
    from glassgen.bench.metrics import chi4_bootstrap_error, chi4_thresholded, pearson_pooled

    raw = getattr(pred, "_oof", None) or getattr(pred, "calibration_predictions", None)
    if not raw:
        return {}
    fr = [pred.frame(s, None) for s in train]
    yt = [f.target for f in fr]
    m = [f.species == 0 for f in fr]
    out: dict[str, Any] = {"chi4_true": chi4_thresholded(yt, m), "chi4_true_err": chi4_bootstrap_error(yt, m),
                           "mobile_fraction_true": [float(np.mean(a[k] > 0.3)) for a, k in zip(yt, m, strict=True)],
                           "pearson_pooled_raw": pearson_pooled(yt, raw, m)}
    variants = {"raw": raw}
    if pred.qmap is not None:
        variants["mapped"] = [pred._apply_quantile_map(v, f.species) for v, f in zip(raw, fr, strict=True)]
    for name, yp in variants.items():
        out[f"chi4_{name}"] = chi4_thresholded(yp, m)
        out[f"chi4_{name}_err"] = chi4_bootstrap_error(yp, m)
        out[f"mobile_fraction_{name}"] = [float(np.mean(b[k] > 0.3)) for b, k in zip(yp, m, strict=True)]
    return out


def _baselines(samples: list[Any], train: list[Any], t: float | None, settings: dict[str, Any]) -> dict[str, Any]:
    """Plain descriptors (sign fixed on the training set) and SBO PCA1 (fit on the training set)."""
    from sklearn.decomposition import PCA

    from glassgen.bench.metrics import pearson_pooled
    from glassgen.predictors.data import frames
    from glassgen.predictors.descriptors import DescriptorSettings, compute_descriptors

    st = DescriptorSettings.from_dict(settings)
    names = compute_descriptors(st, train[0].inherent if train[0].inherent is not None else train[0].positions,
                                train[0].species, train[0].box)[1]
    ftr, fte = frames(train, st, t), frames(samples, st, t)
    out: dict[str, Any] = {}
    for nm in ("EPOT_L0_all", "EPOT_L2_all", "DEN_L2_all", "PERI_L0_all", "EPOT_L1_A", "PERI_L2_all"):
        if nm not in names:
            continue
        k = names.index(nm)
        sign = np.sign(pearson_pooled([f.target for f in ftr], [f.features[:, k] for f in ftr],
                                      [f.species == 0 for f in ftr]))
        out[nm] = sign * pearson_pooled([f.target for f in fte], [f.features[:, k] for f in fte],
                                        [f.species == 0 for f in fte])
    sbo = DescriptorSettings.from_dict({**settings, "families": ["sbo"]})
    str_, ste = frames(train, sbo, t), frames(samples, sbo, t)
    xa = np.concatenate([f.features[f.species == 0] for f in str_])
    pca = PCA(1).fit((xa - xa.mean(0)) / xa.std(0))

    def proj(fs: list[Any]) -> list[np.ndarray]:
        return [pca.transform((f.features - xa.mean(0)) / xa.std(0))[:, 0] for f in fs]

    sign = np.sign(pearson_pooled([f.target for f in str_], proj(str_), [f.species == 0 for f in str_]))
    out["SBO_PCA1"] = sign * pearson_pooled([f.target for f in ste], proj(ste), [f.species == 0 for f in ste])
    return {k: float(v) for k, v in out.items()}


def _models(gnn_epochs: int) -> dict[str, tuple[str, dict[str, Any], dict[str, Any]]]:
    return {
        "ridge_glassmlp": ("ridge", GM, {}),
        "ridge_glassmlp_boattini": ("ridge", GMB, {}),
        "glassmlp": ("glassmlp", GM, {}),
        "glassmlp_boattini": ("glassmlp", GMB, {}),
        "ridge_glassmlp_boattini_cg": ("ridge", GMBCG, {}),
        "glassmlp_boattini_cg": ("glassmlp", GMBCG, {}),
        "glassmlp_calibrated": ("glassmlp", GM, {"calibrate": "meanvar"}),
        "glassmlp_boattini_calibrated": ("glassmlp", GMB, {"calibrate": "meanvar"}),
        "gnn": ("gnn", {"model": "ka3d_sf"}, dict(GNN_HYPER, epochs=gnn_epochs)),
        "ridge_glassmlp_quantile": ("ridge", GM, QUANTILE),
        "ridge_glassmlp_boattini_cg_quantile": ("ridge", GMBCG, QUANTILE),
        "ridge_glassmlp_boattini_cg_quench": ("ridge", GMBCGQ, {}),
        "ridge_glassmlp_boattini_cg_quench_quantile": ("ridge", GMBCGQ, QUANTILE),
        "ridge_glassmlp_boattini_cg_quench_cage_quantile": ("ridge", GMBCGQC, QUANTILE),
        "glassmlp_quantile": ("glassmlp", GM, QUANTILE),
        "glassmlp_boattini_cg_quantile": ("glassmlp", GMBCG, QUANTILE),
        "glassmlp_quantile_crossfit": ("glassmlp", GM, dict(QUANTILE, calibration_folds=5)),
        "glassmlp_boattini_cg_quantile_crossfit": ("glassmlp", GMBCG, dict(QUANTILE, calibration_folds=5)),
    }


def _posthoc_quantile(args: argparse.Namespace, res: dict[str, Any], train: list[Any], test: list[Any]) -> None:
    """Quantile maps fitted on configurations 1-10 for models already trained and saved (no retraining)."""
    from glassgen.predictors import load_predictor

    for name in args.posthoc:
        f = RUNS / f"t044_{name}.npz"
        key = f"{name.rsplit('_s', 1)[0]}_quantile_posthoc/seed{name.rsplit('_s', 1)[1]}"
        if key in res["models"] or not f.is_file():
            print(f"skip {key} ({'done' if key in res['models'] else 'no ' + f.name})", flush=True)
            continue
        p = load_predictor(f)
        p.hyper["calibrate"] = "quantile"
        p._fit_quantile_map([p.frame(s, None) for s in train], seed=int(p.info.get("seed", 0)))
        m = _metrics(p, test, None)
        m.update({"seed": p.info.get("seed"), "kind": p.kind, "descriptors": p.settings.to_dict(),
                  "hyper": p.hyper, "info": {k: v for k, v in p.info.items() if k != "loss_history"},
                  "note": f"the saved model {f.name} with a quantile map fitted afterwards on configurations 1-10"})
        res["models"][key] = m
        print(f"{key}: pooled {m['pearson_pooled']:.3f} chi4 {m['chi4_true']:.1f}/{m['chi4_pred']:.1f}", flush=True)
        _write(args.out, res)


def t044(args: argparse.Namespace) -> None:
    import torch

    from glassgen.api_predict import build_predictor
    from glassgen.config import data_dir
    from glassgen.predictors.base import select_samples

    torch.set_num_threads(1)
    d = data_dir() / "ka3d-T0.44-isoconfig"
    train = select_samples(d, split="train")
    test = select_samples(d, split="test")
    assert [s.index for s in test] == [401, 402, 403, 404, 405] and max(s.index for s in train) <= 10
    res: dict[str, Any] = {"data": str(d), "train_indices": [s.index for s in train],
                           "test_indices": [s.index for s in test], "time": 4120.0, "models": {}}
    prev = RESULTS / args.out
    if prev.is_file() and args.resume:
        old = json.loads(prev.read_text())
        res["models"] = old.get("models", {})
        if "baselines" in old:
            res["baselines"] = old["baselines"]
    for name, (kind, desc, hyper) in _models(args.gnn_epochs).items():
        if name in args.skip or (args.only and name not in args.only):
            continue
        for seed in args.seeds if kind != "ridge" else [0]:
            key = f"{name}/seed{seed}"
            if key in res["models"]:
                continue
            t0 = time.perf_counter()
            p = build_predictor(kind, desc, dict(hyper, checkpoint=str(RUNS / f"t044_{name}_s{seed}.ckpt.npz"))
                                if kind == "gnn" else hyper)
            p.fit(train, None, seed=seed, progress=args.progress)
            secs = time.perf_counter() - t0
            p.save(RUNS / f"t044_{name}_s{seed}.npz")
            m = _metrics(p, test, None)
            oof = _train_oof_chi4(p, train)
            if oof:
                m["train_out_of_fold"] = oof
            m.update({"train_seconds": secs, "seed": seed, "kind": kind, "descriptors": desc, "hyper": p.hyper,
                      "info": {k: v for k, v in p.info.items() if k != "loss_history"}})
            res["models"][key] = m
            print(f"{key}: pooled {m['pearson_pooled']:.3f} per-config {m['pearson_per_config']:.3f} "
                  f"chi4 {m['chi4_true']:.1f}/{m['chi4_pred']:.1f} ({secs:.0f} s)", flush=True)
            _write(args.out, res)
    _posthoc_quantile(args, res, train, test)
    if not args.only:
        res["baselines"] = _baselines(test, train, None, GM)
        print("baselines", res["baselines"], flush=True)
    _write(args.out, res)


def ourdata(args: argparse.Namespace) -> None:
    import torch

    from glassgen.api_predict import build_predictor
    from glassgen.config import data_dir
    from glassgen.predictors import load_predictor
    from glassgen.predictors.base import select_samples
    from glassgen.systems.glassbench import read_dataset

    torch.set_num_threads(1)
    ds = read_dataset(ROOT / "datasets" / "ka3d_n500")
    real = select_samples(data_dir() / "ka3d-T0.44-isoconfig", split="test")
    splits: dict[str, tuple[list[Any], list[Any]]] = {}
    for T in ds.temperatures:
        tr = select_samples(ds, T=T, split=None)
        te = [s for s in tr if s.split == "test"]
        tr = [s for s in tr if s.split == "train"]
        if len(te) < 5 and len(tr) >= 15:  # dataset still being generated: hold out the last 5 train configs
            tr, te = tr[:-5], tr[-5:]
        if len(te) >= 5 and len(tr) >= 10:
            splits[f"{T:g}"] = (tr, te)
    temps = [float(T) for T in splits]
    out_path = RESULTS / "predictors_our_dataset.json"
    res: dict[str, Any] = json.loads(out_path.read_text()) if out_path.is_file() and args.resume else {}
    res.pop("provenance", None)
    pearson = res.setdefault("pearson", {})
    details = res.setdefault("details", {})
    res["dataset"] = str(ds.root)
    res["note"] = ("pearson[model][T_train][T_test][t] = pooled Pearson (species A) on the test split of T_test at "
                   "lag t "
                   "(model trained on the train split of T_train at the same index of the time grid, i.e. the same "
                   "t/tau_alpha); T_test 0.44 = the real GlassBench KA configurations 401-405 at tau_alpha = 4120")
    models = {k: v for k, v in _models(args.gnn_epochs).items() if k in args.models}
    for T in temps:
        if args.temps and not any(abs(T - u) < 1e-9 for u in args.temps):
            continue
        train = splits[f"{T:g}"][0]
        times = train[0].times
        res.setdefault("splits", {})[f"{T:g}"] = {"train": [s.index for s in train],
                                                  "test": [s.index for s in splits[f"{T:g}"][1]]}
        tests = {U: splits[U][1] for U in splits}
        for k in args.times:
            t = float(times[k])
            base = _baselines(tests[f"{T:g}"], train, t, GM)
            for nm, v in base.items():
                pearson.setdefault(nm, {}).setdefault(f"{T:g}", {}).setdefault(f"{T:g}", {})[f"{t:g}"] = v
            for name, (kind, desc, hyper) in models.items():
                if kind == "gnn" and k not in args.gnn_times:
                    continue
                hyp = dict(hyper)
                if kind == "glassmlp":
                    hyp.update(epochs1=150, epochs2=75)
                mfile = RUNS / f"our_{name}_T{T:g}_k{k}.npz"
                if args.reuse and mfile.is_file():
                    p = load_predictor(mfile)
                    secs = float(p.info.get("train_seconds", float("nan")))
                else:
                    t0 = time.perf_counter()
                    p = build_predictor(kind, desc, hyp).fit(train, t, seed=0)
                    secs = time.perf_counter() - t0
                    p.info["train_seconds"] = secs
                    p.save(mfile)
                for U, smp in tests.items():
                    tu = float(smp[0].times[k])
                    m = _metrics(p, smp, tu)
                    _put(pearson, name, f"{T:g}", U, f"{tu:g}", m["pearson_pooled"])
                    _put(details, name, f"{T:g}", U, f"{tu:g}", {
                        kk: m[kk] for kk in ("pearson_pooled", "pearson_per_config", "chi4_true", "chi4_pred", "r2")})
                line = [f"{U}: {m['pearson_pooled']:.3f}"]
                if k == args.tau_index:
                    m = _metrics(p, real, None)
                    _put(pearson, name, f"{T:g}", "0.44", "4120", m["pearson_pooled"])
                    _put(details, name, f"{T:g}", "0.44", "4120", {
                        kk: m[kk] for kk in ("pearson_pooled", "pearson_per_config", "chi4_true", "chi4_pred", "r2")})
                    line.append(f"0.44: {m['pearson_pooled']:.3f}")
                details.setdefault(name, {}).setdefault(f"{T:g}", {}).setdefault("train_seconds", {})[f"{t:g}"] = secs
                print(f"T={T:g} k={k} {name}: last test {', '.join(line)} ({secs:.0f} s)", flush=True)
                _write("predictors_our_dataset.json", res)


def timing(args: argparse.Namespace) -> None:
    from glassgen.config import data_dir
    from glassgen.dynamics.minimize import fire_minimize
    from glassgen.predictors import load_predictor
    from glassgen.predictors.base import select_samples
    from glassgen.predictors.data import inherent_positions
    from glassgen.systems.configuration import Configuration
    from glassgen.systems.glassbench import read_dataset
    from glassgen.systems.model import load_model

    out: dict[str, Any] = {"note": "seconds per configuration, one thread, on the 2-core development machine "
                                   "(quiet): 'structure_s' = Predictor.score_structure on a given "
                                   "inherent state (descriptors + model); 'fire_s' = our FIRE (ftol 1e-6, ka3d_sf) "
                                   "that Predictor.score adds for models trained on inherent states"}
    real = select_samples(data_dir() / "ka3d-T0.44-isoconfig", split="test", indices=[401])[0]
    small = next(read_dataset(ROOT / "datasets" / "ka3d_n500").samples(T=0.64, split="test"))
    for pattern, s, tag in (("t044_*_s0.npz", real, "N4096"), ("our_*_T0.64_k6.npz", small, "N500")):
        conf = Configuration(s.positions, s.species, s.box, load_model("ka3d_sf"))
        t0 = time.perf_counter()
        fire_minimize(conf, ftol=1e-6, max_iter=200000)
        out[f"{tag}/fire_s"] = time.perf_counter() - t0
        for f in sorted(RUNS.glob(pattern)):
            p = load_predictor(f)
            x = inherent_positions(s, p.settings.model, p.settings.ftol)
            p.score_structure(x, s.species, s.box, thermal=s.positions)  # warm-up (JIT)
            reps = 2
            t0 = time.perf_counter()
            for _ in range(reps):
                p.score_structure(x, s.species, s.box, thermal=s.positions)
            st = (time.perf_counter() - t0) / reps
            out[f"{tag}/{f.stem}"] = {"structure_s": st, "configs_per_s_structure": 1 / st,
                                      "configs_per_s_with_fire": 1 / (st + out[f"{tag}/fire_s"]),
                                      "train_seconds": p.info.get("train_seconds")}
            print(tag, f.stem, out[f"{tag}/{f.stem}"], flush=True)
    _write("predictors_timing.json", out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("t044")
    a.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    a.add_argument("--gnn-epochs", type=int, default=400)
    a.add_argument("--skip", nargs="*", default=[])
    a.add_argument("--only", nargs="*", default=[])
    a.add_argument("--resume", action="store_true")
    a.add_argument("--progress", action="store_true")
    a.add_argument("--out", default="predictors_t044.json")
    a.add_argument("--posthoc", nargs="*", default=[], metavar="NAME_sSEED",
                   help="saved models runs/predictors/t044_NAME_sSEED.npz to calibrate afterwards (e.g. gnn_s0)")
    b = sub.add_parser("ourdata")
    b.add_argument("--times", type=int, nargs="+", default=list(range(9)))
    b.add_argument("--gnn-times", type=int, nargs="*", default=[6])
    b.add_argument("--gnn-epochs", type=int, default=10)
    b.add_argument("--tau-index", type=int, default=6)
    b.add_argument("--models", nargs="+", default=["ridge_glassmlp", "ridge_glassmlp_boattini", "glassmlp", "gnn"])
    b.add_argument("--resume", action="store_true")
    b.add_argument("--reuse", action="store_true", help="load models already trained under runs/predictors")
    b.add_argument("--temps", type=float, nargs="*", default=[])
    sub.add_parser("timing")
    args = ap.parse_args()
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    {"t044": t044, "ourdata": ourdata, "timing": timing}[args.cmd](args)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
