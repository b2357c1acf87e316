"""The common predictor interface: fit on a GlassBench dataset at one lag time, predict per-particle propensity.

Every predictor:

* ``fit(dataset, time, T=None, split="train", seed=0)`` — trains on the samples of ``dataset`` (a
  :class:`~glassgen.systems.glassbench.GlassBenchDataset`, a directory, or a list of samples) at lag ``time``;
* ``predict(configuration)`` — (N,) predicted propensity of a :class:`~glassgen.systems.configuration.Configuration`
  or a :class:`~glassgen.systems.glassbench.GlassBenchSample` (its inherent state is computed with our FIRE when
  the descriptor settings ask for it, as at training time);
* ``score(positions, species, box)`` — the same on bare arrays (the samplers' entry point);
* ``save(path)`` / ``Predictor.load(path)`` — one ``.npz`` file (no pickles): a JSON header ``meta`` with the
  kind, the descriptor settings, hyperparameters, training time/temperatures/seed and provenance, plus arrays.

Features are standardised per species with the training mean and standard deviation.

Output calibration (any kind, ``calibrate = "quantile"``): per species, the monotone map that sends the
quantiles of the predictions on the training configurations to the quantiles of the training targets (201
quantiles, linear in between, linear continuation beyond the ends). The predictions it is fitted on are
out-of-fold where the model provides them (ridge: its cross-validation folds at the chosen penalty), or
cross-fitted with ``calibration_folds = k`` (k extra trainings, any kind), else in-sample (in-sample
predictions of a flexible model are too wide and under-correct). A monotone map leaves the ranking of
particles unchanged (Pearson changes only through its curvature) but restores the width of the target
distribution that regression towards the mean removes, so that thresholded observables of the predicted
field — chi_4 of Theta(R - 0.3), the mobile fraction — are comparable with the true ones. Training data
only; never the test set.
"""

from __future__ import annotations

import inspect
import json
import math
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from glassgen.errors import InputError
from glassgen.predictors.data import Frame, frames
from glassgen.predictors.descriptors import DescriptorSettings, compute_descriptors
from glassgen.provenance import atomic_path
from glassgen.systems.glassbench import GlassBenchDataset, GlassBenchSample, read_dataset

__all__ = ["Predictor", "load_predictor", "select_samples", "REGISTRY"]

PathLike = str | os.PathLike[str]
REGISTRY: dict[str, type[Predictor]] = {}


def select_samples(dataset: GlassBenchDataset | PathLike | list[GlassBenchSample], T: float | None = None,
                   split: str | None = "train", indices: list[int] | None = None) -> list[GlassBenchSample]:
    """Samples of ``dataset`` at temperature ``T`` (all if None) in ``split`` (all if None), optionally by index."""
    if isinstance(dataset, list):
        out = [s for s in dataset if (T is None or abs(s.T - T) < 1e-9) and (split is None or s.split == split)]
    else:
        ds = dataset if isinstance(dataset, GlassBenchDataset) else read_dataset(dataset)
        out = list(ds.samples(T=T, split=split))
    if indices is not None:
        out = [s for s in out if s.index in set(indices)]
    if not out:
        raise InputError(f"no samples with T={T}, split={split}, indices={indices}")
    return out



def hyper_value(kind: str, name: str, value: Any, *, integer: bool = False, minimum: float | None = None,
                above: bool = False, maximum: float | None = None) -> Any:
    """A hyperparameter checked to be a finite number (an integer if ``integer``) at least ``minimum`` (above it
    if ``above``) and at most ``maximum``; lists are checked element by element. One-line InputError otherwise
    (a negative learning rate or a zero-width network failed deep inside torch)."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise InputError(f"{kind} hyperparameter {name} must be a non-empty list, got {value!r}")
        return [hyper_value(kind, name, v, integer=integer, minimum=minimum, above=above, maximum=maximum)
                for v in value]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (not integer or float(value).is_integer())
    if ok and minimum is not None:
        ok = value > minimum if above else value >= minimum
    ok = ok and (maximum is None or value <= maximum)
    if not ok:
        what = "an integer" if integer else "a number"
        bounds = [f"{'>' if above else '>='} {minimum:g}"] if minimum is not None else []
        bounds += [f"<= {maximum:g}"] if maximum is not None else []
        raise InputError(f"{kind} hyperparameter {name} must be {what}{' ' + ' and '.join(bounds) if bounds else ''}"
                         f", got {value!r}")
    return int(value) if integer else float(value)

class Predictor:
    """Base class; subclasses implement ``_fit(frames, seed, progress)``, ``_predict(x, species)``, ``_arrays``."""

    kind: ClassVar[str] = ""
    extra_calibrations: ClassVar[tuple[str, ...]] = ()
    n_quantiles: ClassVar[int] = 201

    #: hyperparameters every predictor reads (the others are the named arguments of the subclass)
    base_hyper: ClassVar[tuple[str, ...]] = ("calibrate", "calibration_folds")

    def __init__(self, settings: DescriptorSettings | None = None, **hyper: Any) -> None:
        named = set(inspect.signature(type(self).__init__).parameters) - {"self", "settings", "hyper"}
        allowed = named | set(self.base_hyper)
        unknown = sorted(set(hyper) - allowed)
        if unknown:
            raise InputError(f"unknown hyperparameter(s) for {self.kind or type(self).__name__}: "
                             f"{', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
        self.settings = settings or DescriptorSettings()
        self.hyper: dict[str, Any] = dict(hyper)
        self.info: dict[str, Any] = {}
        self.mean: np.ndarray | None = None  # (nsp, F)
        self.std: np.ndarray | None = None
        self.qmap: np.ndarray | None = None  # (2, nsp, n_quantiles): prediction and target quantiles
        self.calibration_predictions: list[np.ndarray] | None = None
        cal = self.hyper.get("calibrate", "none")
        if cal not in ("none", "quantile", *self.extra_calibrations):
            allowed = ", ".join(repr(c) for c in ("none", "quantile", *self.extra_calibrations))
            raise InputError(f"calibrate must be one of {allowed}, got {cal!r}")

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.kind:
            REGISTRY[cls.kind] = cls

    # ------------------------------------------------------------------------------------------ training
    def fit(self, dataset: GlassBenchDataset | PathLike | list[GlassBenchSample], time: float | None,
            T: float | None = None, split: str | None = "train", indices: list[int] | None = None, seed: int = 0,
            progress: bool = False) -> Predictor:
        """Train on the selected samples at lag ``time`` (None: the replicas' time of isoconfig files)."""
        samples = select_samples(dataset, T, split, indices)
        self.check_dimension(samples[0].positions.shape[1])
        fr = frames(samples, self.settings, time, progress=progress)
        self.info.update({"time": time, "T_train": sorted({s.T for s in samples}),
                          "train_indices": [s.index for s in samples], "seed": int(seed),
                          "n_train": len(samples), "N": int(samples[0].n)})
        return self.fit_frames(fr, seed=seed, progress=progress)

    def check_dimension(self, d: int) -> None:
        """The descriptors' interaction model must have the data's dimension (one line naming the fix)."""
        from glassgen.systems.model import load_model

        dim = load_model(self.settings.model).dim
        if dim != d:
            hint = {2: "ka2d", 3: "ka3d"}.get(d)
            fix = f": set --descriptors '{{\"model\": \"{hint}\"}}'" if hint else ""
            raise InputError(f"the descriptors use the {dim}D model {self.settings.model!r} but the data are {d}D{fix}")

    def fit_frames(self, fr: list[Frame], seed: int = 0, progress: bool = False) -> Predictor:
        """Train on precomputed frames (features + targets)."""
        if not fr or any(f.target is None for f in fr):
            raise InputError("training frames need targets")
        nsp = self.settings.nsp
        x = np.concatenate([f.features for f in fr])
        s = np.concatenate([f.species for f in fr])
        self.mean = np.stack([x[s == c].mean(0) if np.any(s == c) else np.zeros(x.shape[1]) for c in range(nsp)])
        sd = np.stack([x[s == c].std(0) if np.any(s == c) else np.ones(x.shape[1]) for c in range(nsp)])
        self.std = np.where(sd > 1e-12, sd, 1.0)
        self.qmap = None
        self._fit(fr, seed, progress)
        if self.hyper.get("calibrate", "none") == "quantile":
            self._fit_quantile_map(fr, seed)
        return self

    def _calibration_predictions(self, fr: list[Frame], seed: int) -> tuple[list[np.ndarray], str]:
        """Raw (uncalibrated) predictions on the training frames for the quantile map, and how they were made.

        With ``calibration_folds = k >= 2`` (hyperparameter): cross-fitted, i.e. each configuration is
        predicted by a copy of this model (same settings, hyperparameters and seed, no calibration) trained on
        the other folds — k extra trainings. Otherwise in-sample, unless a subclass can predict out of fold
        for free (ridge)."""
        k = int(self.hyper.get("calibration_folds") or 0)
        if k >= 2 and len(fr) >= 2:
            folds = np.array_split(np.random.default_rng(seed).permutation(len(fr)), min(k, len(fr)))
            sub = {n: v for n, v in self.hyper.items() if n not in ("calibrate", "calibration_folds", "checkpoint")}
            out: list[np.ndarray] = [np.zeros(0)] * len(fr)
            for held in folds:
                model = type(self)(self.settings, **sub).fit_frames([fr[i] for i in range(len(fr))
                                                                       if i not in set(held.tolist())], seed=seed)
                for i in held:
                    out[int(i)] = model.predict_frame(fr[int(i)])
            return out, f"out-of-fold ({len(folds)} folds)"
        return [self._predict(self.standardise(f.features, f.species), np.asarray(f.species, dtype=np.int64))
                for f in fr], "in-sample"

    def _fit_quantile_map(self, fr: list[Frame], seed: int) -> None:
        preds, how = self._calibration_predictions(fr, seed)
        #: the raw predictions the map was fitted on (per training frame; not saved), for diagnostics
        self.calibration_predictions = preds if how != "in-sample" else None
        q = np.linspace(0.0, 1.0, self.n_quantiles)
        nsp = self.settings.nsp
        qmap = np.tile(q, (2, nsp, 1))  # identity for absent species
        for s in range(nsp):
            p = np.concatenate([v[f.species == s] for v, f in zip(preds, fr, strict=True)])
            t = np.concatenate([np.asarray(f.target)[f.species == s] for f in fr])  # type: ignore[index]
            if p.size < 2:
                continue
            xq, yq = np.quantile(p, q), np.quantile(t, q)
            # strictly increasing abscissae (ties in the predictions would make the map multi-valued)
            xq = np.maximum.accumulate(xq + 1e-12 * np.arange(q.size) * max(1.0, float(np.abs(xq).max())))
            qmap[0, s], qmap[1, s] = xq, yq
        self.qmap = qmap
        self.info["quantile_map"] = {"fitted_on": how, "n_quantiles": self.n_quantiles}

    def _apply_quantile_map(self, y: np.ndarray, species: np.ndarray) -> np.ndarray:
        if self.qmap is None:
            return y
        out = np.empty_like(y)
        k = max(1, self.n_quantiles // 40)  # end slopes from the outer 2.5 % of the quantiles
        for s in range(self.qmap.shape[1]):
            m = species == s
            if not np.any(m):
                continue
            xq, yq = self.qmap[0, s], self.qmap[1, s]
            v = y[m]
            r = np.interp(v, xq, yq)
            lo_slope = (yq[k] - yq[0]) / max(xq[k] - xq[0], 1e-300)
            hi_slope = (yq[-1] - yq[-1 - k]) / max(xq[-1] - xq[-1 - k], 1e-300)
            r = np.where(v < xq[0], yq[0] + lo_slope * (v - xq[0]), r)
            r = np.where(v > xq[-1], yq[-1] + hi_slope * (v - xq[-1]), r)
            out[m] = r
        return out

    def standardise(self, x: np.ndarray, species: np.ndarray) -> np.ndarray:
        if self.mean is None or self.std is None:
            raise InputError(f"{self.kind} predictor is not trained")
        if x.shape[1] != self.mean.shape[1]:
            raise InputError(f"{x.shape[1]} features but the model was trained on {self.mean.shape[1]}")
        sp = np.asarray(species, dtype=np.int64)
        return (x - self.mean[sp]) / self.std[sp]

    # ------------------------------------------------------------------------------------------ prediction
    def predict_features(self, features: np.ndarray, species: np.ndarray) -> np.ndarray:
        """(N,) predictions from raw (unstandardised) features (calibrated if the model has a quantile map)."""
        sp = np.asarray(species, dtype=np.int64)
        try:
            return self._apply_quantile_map(self._predict(self.standardise(features, sp), sp), sp)
        except (ValueError, IndexError) as exc:  # shapes of a damaged or foreign model file
            raise InputError(f"the {self.kind} predictor's arrays do not fit its {features.shape[1]} descriptors "
                             f"({type(exc).__name__}): damaged or foreign model file") from None

    def predict_frame(self, frame: Frame) -> np.ndarray:
        return self.predict_features(frame.features, frame.species)

    def frame(self, sample: GlassBenchSample, time: float | None, with_target: bool = True) -> Frame:
        """What this predictor needs of one sample (features or positions; inherent state if the settings ask)."""
        return frames([sample], self.settings, time, with_target)[0]

    def score(self, positions: np.ndarray, species: np.ndarray, box: np.ndarray) -> np.ndarray:
        """(N,) predicted propensity of one configuration given as arrays (inherent state computed if needed)."""
        pos = np.asarray(positions, dtype=np.float64)
        sp = np.asarray(species, dtype=np.int64)
        b = np.broadcast_to(np.asarray(box, dtype=np.float64), (pos.shape[1],)).copy()
        thermal = pos
        if self.settings.inherent:
            from glassgen.dynamics.minimize import fire_minimize
            from glassgen.systems.configuration import Configuration
            from glassgen.systems.model import load_model

            conf = Configuration(pos, sp.astype(np.int32), b, load_model(self.settings.model))
            pos = fire_minimize(conf, ftol=self.settings.ftol, max_iter=200000).configuration.positions
        return self.score_structure(pos, sp, b, thermal=thermal)

    def score_structure(self, positions: np.ndarray, species: np.ndarray, box: np.ndarray,
                        thermal: np.ndarray | None = None) -> np.ndarray:
        """(N,) prediction from the positions the descriptors are computed on (no minimisation); ``thermal``:
        the configuration they were quenched from (needed by the 'quench' descriptors)."""
        x, _ = compute_descriptors(self.settings, positions, species, box, thermal=thermal)
        return self.predict_features(x, species)

    def predict(self, configuration: Any) -> np.ndarray:
        """(N,) predicted propensity of a Configuration or GlassBenchSample."""
        if isinstance(configuration, GlassBenchSample):
            if self.settings.inherent:
                from glassgen.predictors.data import inherent_positions

                x = inherent_positions(configuration, self.settings.model, self.settings.ftol)
                return self.score_structure(x, configuration.species, configuration.box,
                                            thermal=configuration.positions)
            return self.score_structure(configuration.positions, configuration.species, configuration.box)
        return self.score(configuration.positions, configuration.species, configuration.box)

    # ------------------------------------------------------------------------------------------ persistence
    def _arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def _fit(self, fr: list[Frame], seed: int, progress: bool) -> None:
        raise NotImplementedError

    def _predict(self, x: np.ndarray, species: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def save(self, path: PathLike, provenance: dict[str, Any] | None = None) -> Path:
        """Write the model to one ``.npz`` file (atomically)."""
        if self.mean is None or self.std is None:
            raise InputError("cannot save an untrained predictor")
        meta = {"kind": self.kind, "settings": self.settings.to_dict(), "hyper": self.hyper, "info": self.info,
                "provenance": provenance or {}}
        arrays = {"meta": np.asarray(json.dumps(meta, default=float)), "mean": self.mean, "std": self.std}
        arrays.update({f"a_{k}": v for k, v in self._arrays().items()})
        if self.qmap is not None:
            arrays["qmap"] = self.qmap
        target = Path(path)
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
        return target

    @staticmethod
    def load(path: PathLike) -> Predictor:
        """Read a model written by :meth:`save` (any kind)."""
        return load_predictor(path)


def load_predictor(path: PathLike) -> Predictor:
    """Read a predictor file (``.npz`` written by :meth:`Predictor.save`)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"predictor file not found: {p}")
    import zipfile

    if not zipfile.is_zipfile(p):
        raise InputError(f"{p} is not a predictor file (an .npz archive written by glassgen predict train)")
    try:
        with np.load(p, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            arrays = {k[2:]: np.array(z[k]) for k in z.files if k.startswith("a_")}
            mean, std = np.array(z["mean"]), np.array(z["std"])
            qmap = np.array(z["qmap"]) if "qmap" in z.files else None
    except Exception as exc:  # noqa: BLE001 - anything unreadable is bad input
        raise InputError(f"cannot read predictor {p}: {exc}") from None
    if not isinstance(meta, dict):
        raise InputError(f"{p}: the predictor's metadata is not a JSON object (damaged or foreign file)")
    cls = REGISTRY.get(meta.get("kind", ""))
    if cls is None:
        raise InputError(f"{p}: unknown predictor kind {meta.get('kind')!r}")
    floats = [a for a in (*arrays.values(), mean, std, *(() if qmap is None else (qmap,))) if a.dtype.kind == "f"]
    if not all(np.all(np.isfinite(a)) for a in floats):
        raise InputError(f"{p}: the predictor's arrays contain NaN or infinite values (damaged file)")
    if any(a.dtype.kind not in "fiub" for a in (*arrays.values(), mean, std)):
        raise InputError(f"{p}: the predictor's arrays must be numbers (damaged or foreign file)")
    info = meta.get("info", {})
    if not (isinstance(meta.get("settings"), dict) and isinstance(meta.get("hyper"), dict) and isinstance(info, dict)):
        raise InputError(f"{p}: the predictor's metadata lacks its settings or hyperparameters (damaged file)")
    if info.get("time") is not None and not (isinstance(info["time"], (int, float)) and math.isfinite(info["time"])
                               and info["time"] > 0):
        raise InputError(f"{p}: the predictor's lag time {info['time']!r} is not a positive number (damaged file)")
    if std.size and not np.all(std > 0):
        raise InputError(f"{p}: the predictor's descriptor scales (std) must be positive (damaged file)")
    try:
        obj = cls(DescriptorSettings.from_dict(meta["settings"]), **meta["hyper"])
        obj.info = info
        obj.mean, obj.std = mean, std
        obj._set_arrays(arrays)
    except InputError as exc:
        raise InputError(f"{p}: {exc}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"{p}: damaged or foreign predictor file ({type(exc).__name__}: {exc})") from None
    obj.qmap = qmap
    return obj
