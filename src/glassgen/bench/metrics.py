"""GlassBench metrics (Jung et al., Nat. Rev. Phys. 2025; REFERENCE.md section 2).

Every metric takes lists over test configurations: ``y_true[k]`` and ``y_pred[k]`` are (N_k,) per-particle
values of configuration k and ``masks[k]`` selects the scored particles (GlassBench: species A). Two
Pearson conventions are reported, labelled:

* **pooled**: one Pearson coefficient over all selected particles of all configurations (reproduces the
  roadmap's FIG1);
* **per-configuration mean**: Pearson per configuration, then the mean (Bapst et al., BOTAN); it differs
  strongly from the pooled value when the configurations' mean mobility varies (t >> tau_alpha).

chi_4 of the thresholded propensity: ``chi_4 = N_A Var_k[(1/N_A) sum_i Theta(R_i - a)]`` over
configurations (a = 0.3). Maximal achievable correlation: Spearman-Brown from replica split halves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from glassgen.errors import InputError

__all__ = ["pearson", "pearson_pooled", "pearson_per_configuration", "r2_score", "chi4_thresholded",
           "chi4_bootstrap_error", "rho_max", "transferability_matrix", "distribution", "rearrangement_probability",
           "score_all"]

Arrays = Sequence[np.ndarray]


def _select(y_true: Arrays, y_pred: Arrays, masks: Arrays | None) -> list[tuple[np.ndarray, np.ndarray]]:
    if len(y_true) != len(y_pred):
        raise InputError(f"{len(y_true)} true fields but {len(y_pred)} predictions")
    if len(y_true) == 0:
        raise InputError("no configurations to score")
    if masks is not None and len(masks) != len(y_true):
        raise InputError(f"{len(masks)} masks for {len(y_true)} configurations")
    out = []
    for k, (a, b) in enumerate(zip(y_true, y_pred, strict=True)):
        a = np.asarray(a, dtype=np.float64).reshape(-1)
        b = np.asarray(b, dtype=np.float64).reshape(-1)
        if a.shape != b.shape:
            raise InputError(f"configuration {k}: true {a.shape} and predicted {b.shape} shapes differ")
        if masks is not None:
            m = np.asarray(masks[k], dtype=bool)
            a, b = a[m], b[m]
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
            raise InputError(f"configuration {k}: NaN or infinite values")
        out.append((a, b))
    return out


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two (n,) arrays (NaN if either is constant)."""
    a = np.asarray(a, dtype=np.float64) - np.mean(a)
    b = np.asarray(b, dtype=np.float64) - np.mean(b)
    den = np.sqrt(np.dot(a, a) * np.dot(b, b))
    return float(np.dot(a, b) / den) if den > 0 else float("nan")


def pearson_pooled(y_true: Arrays, y_pred: Arrays, masks: Arrays | None = None) -> float:
    """Pearson over all selected particles of all configurations pooled (GlassBench FIG1 convention)."""
    pairs = _select(y_true, y_pred, masks)
    return pearson(np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs]))


def pearson_per_configuration(y_true: Arrays, y_pred: Arrays, masks: Arrays | None = None) -> tuple[float, float]:
    """Mean over configurations of the per-configuration Pearson, and its standard error."""
    vals = np.array([pearson(a, b) for a, b in _select(y_true, y_pred, masks)])
    err = float(vals.std(ddof=1) / np.sqrt(vals.size)) if vals.size > 1 else float("nan")
    return float(vals.mean()), err


def r2_score(y_true: Arrays, y_pred: Arrays, masks: Arrays | None = None) -> float:
    """Coefficient of determination 1 - SS_res/SS_tot over the pooled selected particles (not the Pearson^2)."""
    pairs = _select(y_true, y_pred, masks)
    a = np.concatenate([p[0] for p in pairs])
    b = np.concatenate([p[1] for p in pairs])
    return float(1.0 - np.sum((a - b) ** 2) / np.sum((a - a.mean()) ** 2))


def chi4_thresholded(fields: Arrays, masks: Arrays | None = None, threshold: float = 0.3) -> float:
    """Isoconfigurational chi_4 = N_A Var_k[ mean_i Theta(R_i - threshold) ] over configurations k.

    Args:
        fields: per configuration (N,) propensities (true or predicted).
        masks: (N,) selection (species A); N_A is the mean number of selected particles.
        threshold: mobility threshold a (0.3 in GlassBench).

    Returns:
        chi_4 (population variance, ddof=0, as a susceptibility); NaN with fewer than 2 configurations.
    """
    pairs = _select(fields, fields, masks)
    if len(pairs) < 2:
        return float("nan")
    frac = np.array([np.mean(a > threshold) for a, _ in pairs])
    n_a = float(np.mean([a.size for a, _ in pairs]))
    return float(n_a * frac.var())


def chi4_bootstrap_error(fields: Arrays, masks: Arrays | None = None, threshold: float = 0.3,
                         n_boot: int = 2000, seed: int = 0) -> float:
    """Bootstrap standard error of :func:`chi4_thresholded` (configurations resampled with replacement)."""
    pairs = _select(fields, fields, masks)
    if len(pairs) < 2:
        return float("nan")
    frac = np.array([np.mean(a > threshold) for a, _ in pairs])
    n_a = float(np.mean([a.size for a, _ in pairs]))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, frac.size, size=(n_boot, frac.size))
    return float(np.std(n_a * frac[idx].var(axis=1), ddof=1))


def rho_max(halves_a: Arrays, halves_b: Arrays, masks: Arrays | None = None) -> float:
    """Maximal achievable (pooled) Pearson from split-half propensities: sqrt(2 r / (1 + r)).

    Args:
        halves_a, halves_b: per configuration the (N,) propensities of the two replica halves
            (:func:`glassgen.observables.isoconfig.split_half_propensities`).
    """
    r = pearson_pooled(halves_a, halves_b, masks)
    return float(np.sqrt(2 * r / (1 + r))) if r > 0 else 0.0


def transferability_matrix(train_T: Sequence[float], test_T: Sequence[float],
                           score: Callable[[float, float], float]) -> np.ndarray:
    """Matrix M[i, j] = score(train_T[i], test_T[j]) (e.g. pooled Pearson at tau_alpha of the test T)."""
    return np.array([[float(score(a, b)) for b in test_T] for a in train_T])


def distribution(values: Arrays, masks: Arrays | None = None, bins: int | np.ndarray = 50,
                 range_: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Normalised histogram (density) of pooled per-particle values: (bin centres, density)."""
    pairs = _select(values, values, masks)
    v = np.concatenate([p[0] for p in pairs])
    h, edges = np.histogram(v, bins=bins, range=range_, density=True)
    return 0.5 * (edges[1:] + edges[:-1]), h


def rearrangement_probability(softness: Arrays, rearranging: Arrays, masks: Arrays | None = None,
                              bins: int | np.ndarray = 20) -> dict[str, np.ndarray]:
    """P_R(S): the fraction of particles with softness in each bin that rearrange.

    Args:
        softness: per configuration (N,) softness S_i.
        rearranging: per configuration (N,) bool (e.g. p_hop > 0.2 within the window).

        bins: number of bins over the range of S, or explicit edges; particles with S outside explicit
            edges are left out of every bin (as in ``np.histogram``), not piled into the edge bins.

    Returns:
        dict with ``S`` (bin centres), ``P_R``, ``err`` (binomial standard error), ``count`` per bin,
        ``P_S`` (density of S: the fraction of ALL particles in a bin over the bin width, so it estimates
        the density of S itself even where the edges do not cover its range).
    """
    pairs = _select(softness, [np.asarray(r, dtype=np.float64) for r in rearranging], masks)
    s = np.concatenate([p[0] for p in pairs])
    r = np.concatenate([p[1] for p in pairs])
    n_all = s.size
    edges = np.histogram_bin_edges(s, bins=bins)
    inside = (s >= edges[0]) & (s <= edges[-1])
    s, r = s[inside], r[inside]
    idx = np.clip(np.digitize(s, edges) - 1, 0, edges.size - 2)  # the clip puts S == the last edge in the last bin
    count = np.bincount(idx, minlength=edges.size - 1).astype(np.float64)
    hits = np.bincount(idx, weights=r, minlength=edges.size - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = hits / count
        err = np.sqrt(p * (1 - p) / count)
    dens = count / (n_all * np.diff(edges))
    return {"S": 0.5 * (edges[1:] + edges[:-1]), "P_R": p, "err": err, "count": count, "P_S": dens}


def score_all(y_true: Arrays, y_pred: Arrays, masks: Arrays | None = None, threshold: float = 0.3) -> dict[str, float]:
    """Every scalar metric of one prediction at one time: pooled and per-configuration Pearson (with its standard
    error), R^2, chi_4 of the true and the predicted fields with their bootstrap standard errors."""
    mean, err = pearson_per_configuration(y_true, y_pred, masks)
    return {"pearson_pooled": pearson_pooled(y_true, y_pred, masks), "pearson_per_config": mean,
            "pearson_per_config_err": err, "r2": r2_score(y_true, y_pred, masks),
            "chi4_true": chi4_thresholded(y_true, masks, threshold),
            "chi4_true_err": chi4_bootstrap_error(y_true, masks, threshold),
            "chi4_pred": chi4_thresholded(y_pred, masks, threshold),
            "chi4_pred_err": chi4_bootstrap_error(y_pred, masks, threshold)}
