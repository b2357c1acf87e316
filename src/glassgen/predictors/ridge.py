"""Ridge regression on coarse-grained descriptors (Boattini et al. PRL 127, 088007 (2021)), one model per species.

The regularisation strength is chosen per species by leave-configurations-out cross-validation within the
training set (groups = configurations, ``cv_folds`` folds, criterion: pooled Pearson of the held-out folds),
never on test data. Prediction is a dot product (NumPy only).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from glassgen.errors import InputError
from glassgen.predictors.base import Predictor
from glassgen.predictors.data import Frame
from glassgen.progress import progress_bar

__all__ = ["RidgePredictor"]


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else float("nan")


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Closed-form ridge (intercept unpenalised) on standardised x."""
    xm, ym = x.mean(0), y.mean()
    xc = x - xm
    a = xc.T @ xc + alpha * x.shape[0] * np.eye(x.shape[1])
    w = np.linalg.solve(a, xc.T @ (y - ym))
    return w, float(ym - xm @ w)


class RidgePredictor(Predictor):
    """Linear model y = w_s . x + b_s per species s on standardised descriptors.

    Hyperparameters: ``alphas`` (grid of alpha, penalty alpha * n_samples * |w|^2), ``cv_folds``.
    """

    kind = "ridge"

    def __init__(self, settings: Any = None, alphas: list[float] | None = None, cv_folds: int = 5,
                 **hyper: Any) -> None:
        grid = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0] if alphas is None else alphas
        if (isinstance(grid, (str, bytes)) or not hasattr(grid, "__len__") or len(grid) == 0
                or not all(isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a) and a > 0
                           for a in grid)):
            raise InputError(f"ridge alphas must be a non-empty list of positive numbers, got {alphas!r}")
        if isinstance(cv_folds, bool) or not isinstance(cv_folds, int) or cv_folds < 2:
            raise InputError(f"ridge cv_folds must be an integer >= 2, got {cv_folds!r}")
        super().__init__(settings, alphas=[float(a) for a in grid], cv_folds=cv_folds, **hyper)
        self.coef: np.ndarray | None = None  # (nsp, F)
        self.intercept: np.ndarray | None = None  # (nsp,)
        self._oof: list[np.ndarray] | None = None  # out-of-fold training predictions (set by fit)

    def _fit(self, fr: list[Frame], seed: int, progress: bool) -> None:
        nsp = self.settings.nsp
        nf = fr[0].features.shape[1]
        self.coef = np.zeros((nsp, nf))
        self.intercept = np.zeros(nsp)
        rng = np.random.default_rng(seed)
        if self.hyper["cv_folds"] > len(fr):
            warnings.warn(f"cv_folds = {self.hyper['cv_folds']} exceeds the {len(fr)} training configurations: "
                          f"{len(fr)} folds (one configuration each)", stacklevel=2)
        folds = np.array_split(rng.permutation(len(fr)), min(self.hyper["cv_folds"], len(fr)))
        chosen: dict[str, float] = {}
        cv_scores: dict[str, list[float]] = {}
        # out-of-fold predictions at the chosen penalty, per frame (for the quantile calibration)
        self._oof = [np.zeros(len(f.species)) for f in fr] if len(folds) >= 2 else None
        with progress_bar(nsp * len(self.hyper["alphas"]), "ridge CV", progress) as advance:
            for s in range(nsp):
                xs = [self.standardise(f.features[f.species == s], f.species[f.species == s]) for f in fr]
                ys = [f.target[f.species == s] for f in fr]  # type: ignore[index]
                if sum(len(y) for y in ys) == 0:
                    continue
                scores = []
                oof: list[dict[int, np.ndarray]] = []
                for alpha in self.hyper["alphas"]:
                    pred, true = [], []
                    oof.append({})
                    for k in folds:
                        if len(folds) < 2:
                            break
                        tr = [i for i in range(len(fr)) if i not in set(k)]
                        w, b = _ridge(np.concatenate([xs[i] for i in tr]), np.concatenate([ys[i] for i in tr]), alpha)
                        for i in k:
                            oof[-1][int(i)] = xs[i] @ w + b
                        pred += [oof[-1][int(i)] for i in k]
                        true += [ys[i] for i in k]
                    scores.append(_pearson(np.concatenate(true), np.concatenate(pred)) if pred else 0.0)
                    advance(1)
                best_k = int(np.nanargmax(scores))
                best = float(self.hyper["alphas"][best_k])
                if self._oof is not None:
                    for i, v in oof[best_k].items():
                        self._oof[i][fr[i].species == s] = v
                chosen[str(s)] = best
                cv_scores[str(s)] = [float(v) for v in scores]
                self.coef[s], self.intercept[s] = _ridge(np.concatenate(xs), np.concatenate(ys), best)
        self.info.update({"alpha": chosen, "cv_pearson": cv_scores})

    def _calibration_predictions(self, fr: list[Frame], seed: int) -> tuple[list[np.ndarray], str]:
        if self._oof is not None and len(self._oof) == len(fr):
            return self._oof, "out-of-fold"
        return super()._calibration_predictions(fr, seed)

    def _predict(self, x: np.ndarray, species: np.ndarray) -> np.ndarray:
        assert self.coef is not None and self.intercept is not None
        return (x * self.coef[species]).sum(1) + self.intercept[species]

    def _arrays(self) -> dict[str, np.ndarray]:
        assert self.coef is not None and self.intercept is not None
        return {"coef": self.coef, "intercept": self.intercept}

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.coef, self.intercept = arrays["coef"], arrays["intercept"]
