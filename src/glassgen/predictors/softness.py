"""Softness (Cubuk et al. PRL 114, 108001 (2015); Schoenholz et al. Nat. Phys. 12, 469 (2016)) and its export
for the trap models.

Pipeline (:func:`softness_study`):

1. short NVT MD trajectories of a small system at several temperatures (our Numba MD), frames every
   ``frame_dt``; p_hop (:func:`glassgen.predictors.descriptors.p_hop`) with half-window h frames (t_R = 2 h frame_dt);
2. labels on species A: rearranging (R) when p_hop > ``p_c`` (0.2); non-rearranging (NR) when p_hop < ``p_nr``
   at every frame within +- ``nr_window`` frames; equal numbers of R and NR, drawn with the seed;
3. features: the structure functions of :func:`glassgen.predictors.descriptors.softness_features` on the thermal
   frame, standardised; a linear SVM (scikit-learn ``LinearSVC``, C chosen by 5-fold CV on the training
   labels); softness S = w . x + b (the SVM decision function; positive = soft);
4. P_R(S, T): fraction of species-A particles with p_hop > p_c per S bin, over frames spaced by t_R that
   the SVM was not trained on (at most half the frames train it; the rest measure P_R, so the rearrangements
   counted are never training positives); S outside the bin range is dropped, not piled into the edge bins;
5. Arrhenius per S bin: ln P_R(S, T) = Sigma(S) - DeltaE(S) / T (weighted least squares over T), then the
   linear fits DeltaE(S) = e0 + e1 S, Sigma(S) = s0 + s1 S over bins with enough events.

Export format (TOML, read by the trap models, :func:`export_toml`)::

    [softness]            # provenance: model, N, temperatures, seed, p_c, t_R, SVM test accuracy, glassgen version
    model = "ka3d"  n = 500  temperatures = [...]  T_fit_range = [Tmin, Tmax]  p_c = 0.2  t_R = 1.0  seed = 0
    rate_definition = "P_R = probability that a species-A particle has p_hop > p_c at a frame (frames t_R apart)"
    [softness.fit]        # linear fits over the bins with events at >= 2 temperatures
    DeltaE = [e0, e1]     # DeltaE(S) = e0 + e1 S   (epsilon_AA)
    Sigma = [s0, s1]      # Sigma(S) = s0 + s1 S    (dimensionless)
    S_range = [Smin, Smax]
    [softness.bins]       # the per-bin Arrhenius table
    S = [...]  DeltaE = [...]  DeltaE_err = [...]  Sigma = [...]  Sigma_err = [...]  n_T = [...]
    [[softness.P_S]]      # one entry per temperature: Gaussian summary of P(S) and the measured P_R(S)
    T = 0.6  mean = ...  std = ...  S = [...]  P_R = [...]  count = [...]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from glassgen.errors import InputError
from glassgen.predictors.base import Predictor
from glassgen.predictors.data import Frame
from glassgen.predictors.descriptors import DescriptorSettings, p_hop, softness_features
from glassgen.progress import progress_bar

__all__ = ["SoftnessPredictor", "simulate_trajectory", "softness_study", "arrhenius_fit", "export_toml",
           "TrajectoryData"]


class SoftnessPredictor(Predictor):
    """Linear SVM on structure functions: ``predict`` returns the softness S (not a propensity).

    Training frames carry labels 1 (rearranging) / 0 (not) / NaN (excluded) in ``target``; species A only
    unless ``species`` says otherwise. Hyperparameters: Cs (grid), species [0].
    """

    kind = "softness"

    def __init__(self, settings: DescriptorSettings | None = None, Cs: list[float] | None = None,
                 species: list[int] | None = None, **hyper: Any) -> None:
        settings = settings or DescriptorSettings(families=("softness",), inherent=False)
        super().__init__(settings, Cs=list(Cs or [1e-3, 1e-2, 1e-1, 1.0]), species=list(species or [0]), **hyper)
        self.coef: np.ndarray | None = None
        self.intercept = 0.0

    def _fit(self, fr: list[Frame], seed: int, progress: bool) -> None:
        from sklearn.model_selection import cross_val_score
        from sklearn.svm import LinearSVC

        xs, ys = [], []
        for f in fr:
            m = np.isin(f.species, self.hyper["species"]) & np.isfinite(f.target)  # type: ignore[arg-type]
            xs.append(self.standardise(f.features[m], f.species[m]))
            ys.append(f.target[m])  # type: ignore[index]
        x, y = np.concatenate(xs), np.concatenate(ys).astype(int)
        if len(np.unique(y)) < 2:
            raise InputError("softness training needs both rearranging and non-rearranging examples")
        scores = []
        for c in self.hyper["Cs"]:
            svc = LinearSVC(C=c, dual=False, max_iter=5000, random_state=seed)
            scores.append(float(cross_val_score(svc, x, y, cv=5).mean()))
        best = float(self.hyper["Cs"][int(np.argmax(scores))])
        svc = LinearSVC(C=best, dual=False, max_iter=5000, random_state=seed).fit(x, y)
        self.coef = svc.coef_[0].astype(np.float64)
        self.intercept = float(svc.intercept_[0])
        self.info.update({"C": best, "cv_accuracy": scores, "n_labels": int(y.size),
                          "n_rearranging": int(y.sum())})

    def _predict(self, x: np.ndarray, species: np.ndarray) -> np.ndarray:
        assert self.coef is not None
        return x @ self.coef + self.intercept

    def _arrays(self) -> dict[str, np.ndarray]:
        assert self.coef is not None
        return {"coef": self.coef, "intercept": np.array([self.intercept])}

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.coef, self.intercept = arrays["coef"], float(arrays["intercept"][0])


@dataclass(frozen=True)
class TrajectoryData:
    """An MD trajectory for softness: positions (F, N, d) unwrapped, species, box, T, frame spacing, model name."""

    positions: np.ndarray
    species: np.ndarray
    box: np.ndarray
    T: float
    frame_dt: float
    model: str = "ka3d"


def simulate_trajectory(model: str, n: int, T: float, t_eq: float, t_prod: float, frame_dt: float = 0.1,
                        seed: int = 0, dt: float = 0.005) -> TrajectoryData:
    """Random start, NVT (Nose-Hoover chain) equilibration for ``t_eq``, then ``t_prod``, frames every ``frame_dt``."""
    from glassgen.dynamics.initial import random_state
    from glassgen.dynamics.md import MDSimulation

    conf = random_state(model, n, T=T, seed=seed)
    sim = MDSimulation(conf, T=T, dt=dt, ensemble="nvt", seed=seed)
    sim.run(int(round(t_eq / dt)), thermo_every=1000)
    every = int(round(frame_dt / dt))
    nsteps = int(round(t_prod / dt))
    res = sim.run(nsteps, thermo_every=1000, traj_steps=list(range(0, nsteps + 1, every)))
    assert res.trajectory is not None
    return TrajectoryData(res.trajectory.positions, conf.species, conf.box, float(T), float(frame_dt), model)


def _labels(ph: np.ndarray, p_c: float, p_nr: float, window: int) -> np.ndarray:
    """(F', N) labels: 1 where p_hop > p_c, 0 where p_hop < p_nr at all frames within +-window, NaN else."""
    lab = np.full(ph.shape, np.nan)
    lab[ph > p_c] = 1.0
    from scipy.ndimage import maximum_filter1d

    mx = maximum_filter1d(ph, size=2 * window + 1, axis=0, mode="nearest")
    quiet = mx < p_nr
    quiet[:window] = False
    quiet[-window:] = False
    lab[quiet] = 0.0
    return lab


def arrhenius_fit(temperatures: np.ndarray, p_r: np.ndarray, counts: np.ndarray,
                  hits: np.ndarray) -> dict[str, np.ndarray]:
    """Per-bin weighted fit ln P_R = Sigma - DeltaE / T.

    Args:
        temperatures: (nT,); p_r, counts, hits: (nT, nbins) rearrangement fraction, particles, rearrangers.

    Returns:
        dict with DeltaE, DeltaE_err, Sigma, Sigma_err, n_T (bins with fewer than 2 temperatures having
        hits are NaN). Weights: 1/var(ln P_R) = hits (Poisson).
    """
    nb = p_r.shape[1]
    out = {k: np.full(nb, np.nan) for k in ("DeltaE", "DeltaE_err", "Sigma", "Sigma_err")}
    out["n_T"] = np.zeros(nb, int)
    for b in range(nb):
        ok = hits[:, b] >= 3
        out["n_T"][b] = int(ok.sum())
        if ok.sum() < 2:
            continue
        x = 1.0 / temperatures[ok]
        y = np.log(p_r[ok, b])
        w = hits[ok, b].astype(float)
        a = np.column_stack([np.ones_like(x), -x])
        cov = np.linalg.inv(a.T @ (w[:, None] * a))
        coef = cov @ (a.T @ (w * y))
        out["Sigma"][b], out["DeltaE"][b] = coef
        if ok.sum() > 2:
            resid = y - a @ coef
            scale = float((w * resid**2).sum() / (ok.sum() - 2))
            cov = cov * max(scale, 1.0)
        out["Sigma_err"][b], out["DeltaE_err"][b] = np.sqrt(np.diag(cov))
    return out


def softness_study(trajs: list[TrajectoryData], half_window: int = 5, p_c: float = 0.2, p_nr: float = 0.05,
                   nr_window: int = 10, n_train_frames: int = 20, bins: np.ndarray | None = None, seed: int = 0,
                   progress: bool = False) -> tuple[SoftnessPredictor, dict[str, Any]]:
    """Train the softness SVM on trajectories at several T and measure P_R(S, T) and its Arrhenius fits.

    Of each trajectory's frames (t_R apart), ``min(n_train_frames, half of them)`` drawn with the seed train
    the SVM; P_R(S, T) is measured on the others only.

    Returns:
        (predictor, results) with results: temperatures, S bin centres, P_R (nT, nbins), counts, hits,
        mean/std of S per T, the Arrhenius table (:func:`arrhenius_fit`) and the linear fits.
    """
    from glassgen.systems.model import load_model

    rng = np.random.default_rng(seed)
    models = {tr.model for tr in trajs}
    if len(models) != 1:
        raise InputError(f"softness trajectories of different models: {sorted(models)}")
    model = load_model(models.pop())
    for tr in trajs:
        if tr.species.size and int(tr.species.max()) >= model.nsp:
            raise InputError(f"species index {int(tr.species.max())} outside model {model.name}'s {model.nsp} species")
    settings = DescriptorSettings(families=("softness",), inherent=False, model=model.name, nsp=model.nsp)
    feats: dict[tuple[int, int], np.ndarray] = {}
    lab_frames: list[Frame] = []
    eval_sets = []
    h = int(half_window)
    with progress_bar(len(trajs), "softness features", progress) as advance:
        for k, tr in enumerate(trajs):
            ph = p_hop(tr.positions, h)  # rows: frames h .. F-h-1
            lab = _labels(ph, p_c, p_nr, nr_window)
            rows = np.arange(nr_window, ph.shape[0] - nr_window, 2 * h)  # frames t_R apart
            if rows.size < 2:
                raise InputError(f"trajectory at T = {tr.T} is too short: {rows.size} frame(s) t_R apart")
            sel = rng.choice(rows, size=min(n_train_frames, rows.size // 2), replace=False)
            for r in rows:
                x, _ = softness_features(tr.positions[r + h], tr.species, tr.box, nsp=settings.nsp)
                if r in sel:  # training frame
                    lab_frames.append(Frame(x, tr.species, lab[r], tr.positions[r + h], tr.box, int(r), tr.T))
                else:  # evaluation frame: P_R(S, T)
                    feats[(k, int(r))] = x
                    eval_sets.append((k, int(r), ph[r] > p_c))
            advance(1)
    # balance R and NR (species A) over the pooled training frames
    all_lab = np.concatenate([f.target[f.species == 0] for f in lab_frames])  # type: ignore[index]
    n_r, n_nr = int(np.sum(all_lab == 1)), int(np.sum(all_lab == 0))
    keep = min(n_r, n_nr)
    if keep < 10:
        raise InputError(f"too few labelled particles (R {n_r}, NR {n_nr}): longer trajectories or other T")
    balanced = []
    for f in lab_frames:
        t = f.target.copy()  # type: ignore[union-attr]
        t[f.species != 0] = np.nan
        for cls, n_cls in ((1.0, n_r), (0.0, n_nr)):
            idx = np.nonzero(t == cls)[0]
            drop = rng.uniform(size=idx.size) > keep / n_cls
            t[idx[drop]] = np.nan
        balanced.append(Frame(f.features, f.species, t, f.positions, f.box, f.index, f.T))
    pred = SoftnessPredictor(settings)
    pred.fit_frames(balanced, seed=seed)
    pred.info.update({"p_c": p_c, "p_nr": p_nr, "half_window": h,
                      "t_R": 2 * h * trajs[0].frame_dt, "temperatures": [tr.T for tr in trajs]})
    # P_R(S, T)
    s_all: dict[int, list[np.ndarray]] = {}
    r_all: dict[int, list[np.ndarray]] = {}
    for k, r, rear in eval_sets:
        tr = trajs[k]
        a = tr.species == 0
        s_all.setdefault(k, []).append(pred.predict_features(feats[(k, r)], tr.species)[a])
        r_all.setdefault(k, []).append(rear[a])
    temps = np.array([tr.T for tr in trajs])
    svals = np.concatenate([np.concatenate(v) for v in s_all.values()])
    edges = bins if bins is not None else np.linspace(np.quantile(svals, 0.005), np.quantile(svals, 0.995), 13)
    nb = edges.size - 1
    p_r = np.full((len(trajs), nb), np.nan)
    counts = np.zeros((len(trajs), nb))
    hits = np.zeros((len(trajs), nb))
    means, stds = [], []
    for k in range(len(trajs)):
        s = np.concatenate(s_all[k])
        rr = np.concatenate(r_all[k]).astype(float)
        inside = (s >= edges[0]) & (s <= edges[-1])  # S outside the bins is dropped
        idx = np.minimum(np.digitize(s[inside], edges) - 1, nb - 1)
        counts[k] = np.bincount(idx, minlength=nb)
        hits[k] = np.bincount(idx, weights=rr[inside], minlength=nb)
        with np.errstate(invalid="ignore", divide="ignore"):
            p_r[k] = hits[k] / counts[k]
        means.append(float(s.mean()))
        stds.append(float(s.std()))
    arr = arrhenius_fit(temps, p_r, counts, hits)
    centres = 0.5 * (edges[1:] + edges[:-1])
    ok = np.isfinite(arr["DeltaE"])
    fits = {}
    if ok.sum() >= 2:
        for key in ("DeltaE", "Sigma"):
            w = 1.0 / np.maximum(arr[f"{key}_err"][ok], 1e-6) ** 2
            a = np.column_stack([np.ones(ok.sum()), centres[ok]])
            fits[key] = np.linalg.solve(a.T @ (w[:, None] * a), a.T @ (w * arr[key][ok])).tolist()
        fits["S_range"] = [float(centres[ok].min()), float(centres[ok].max())]
    results = {"temperatures": temps, "S": centres, "edges": edges, "P_R": p_r, "count": counts, "hits": hits,
               "S_mean": np.array(means), "S_std": np.array(stds), "arrhenius": arr, "fit": fits,
               "svm": {k: pred.info[k] for k in ("C", "cv_accuracy", "n_labels", "n_rearranging")}}
    return pred, results


def export_toml(path: Any, results: dict[str, Any], meta: dict[str, Any]) -> None:
    """Write the softness results in the trap-model format (see the module docstring), atomically."""
    from pathlib import Path

    from glassgen.provenance import atomic_path

    def arr(v: Any) -> str:
        return "[" + ", ".join("nan" if not np.isfinite(x) else f"{float(x):.6g}" for x in np.ravel(v)) + "]"

    def val(v: Any) -> str:
        if isinstance(v, str):
            return json.dumps(v)  # a JSON string literal is a valid TOML basic string
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {val(x)}" for k, x in v.items() if x is not None) + "}"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (list, tuple, np.ndarray)):
            return arr(v) if all(isinstance(x, (int, float, np.floating, np.integer)) for x in np.ravel(v)) else \
                "[" + ", ".join(val(x) for x in v) + "]"
        return f"{v:.6g}" if isinstance(v, float) else str(v)

    temps = results["temperatures"]
    lines = ["# Softness -> rearrangement law for the trap models (format: glassgen.predictors.softness docstring)",
             "[softness]"]
    lines += [f"{k} = {val(v)}" for k, v in meta.items()]
    lines += [f"T_fit_range = {arr([temps.min(), temps.max()])}",
              'rate_definition = "P_R(S, T) = probability that a species-A particle has p_hop > p_c at a frame '
              '(frames t_R apart) = exp(Sigma(S) - DeltaE(S)/T)"', "", "[softness.fit]"]
    for k, v in results["fit"].items():
        lines.append(f"{k} = {arr(v)}")
    a = results["arrhenius"]
    lines += ["", "[softness.bins]", f"S = {arr(results['S'])}"]
    lines += [f"{k} = {arr(a[k])}" for k in ("DeltaE", "DeltaE_err", "Sigma", "Sigma_err", "n_T")]
    for k, T in enumerate(temps):
        lines += ["", "[[softness.P_S]]", f"T = {float(T):g}", f"mean = {results['S_mean'][k]:.6g}",
                  f"std = {results['S_std'][k]:.6g}", f"P_R = {arr(results['P_R'][k])}",
                  f"count = {arr(results['count'][k])}"]
    target = Path(path)
    with atomic_path(target) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
