r"""Dynamical observables of trap-model runs (:class:`~glassgen.models.trap.TrapRun`).

Definitions (time origin t = 0, the start of the production run; averages over sites i and replicas):

- persistence p(t) = <1[n_i(t) = 0]>: fraction of sites that have not rearranged since 0;
- MSD(t) = <|dr_i(t)|^2>, dr_i the accumulated jumps (variance b^2 per dimension per rearrangement);
- F_s(q, t) = <sin(q|dr|)/(q|dr|)> (3D), <J_0(q|dr|)> (2D), <cos(q dr)> (1D): the isotropic average, as
  in :mod:`glassgen.observables.dynamics`;
- tau_alpha: first downward crossing of F_s = 1/e, linear interpolation in log t;
- D = lim MSD / (2 d t), fitted (least squares through the origin) over the last decade of the run;
- chi_4(t) = N_b Var[Q_b(t)]: sub-box estimator over the blocks b of N_b sites (lattice blocks of side
  L / n_blocks, pooled over replicas), Q_b the block-averaged persistence;
- dynamic length xi_4 from the Ornstein-Zernike fit S_4(q) = S_4(0) / (1 + q^2 xi_4^2) of the persistence
  field's structure factor at the smallest lattice wave numbers (lattice models);
- local relaxation times: the first-rearrangement time of every site (its persistence time);
- chi''(omega) = omega * integral_0^inf C(t) cos(omega t) dt with C = p(t) averaged over all time origins
  (:func:`persistence_all_origins`; REFERENCE section 6), C(t)
  piecewise linear between samples (exact integration), truncated at the end of the run (C small there);
- fragility: steepness index m = d log10 tau_alpha / d(Tg/T) at Tg, glassgen takes Tg = the lowest
  temperature of the sweep (a quadratic fit of log10 tau_alpha against Tg/T).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.special import j0

from glassgen.errors import InputError

__all__ = ["persistence", "msd", "self_intermediate", "tau_alpha", "diffusion_coefficient", "chi4_blocks",
           "dynamic_length", "loss_spectrum", "spectrum_exponents", "kaplan_meier", "pareto_tail",
           "fragility", "analyze_runs", "persistence_all_origins"]


def persistence(runs: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(times (n_t,), p(t) (n_t,)) averaged over the runs (same time grid, truncated to the shortest)."""
    n_t = min(r.times.size for r in runs)
    return runs[0].times[:n_t], np.mean([np.mean(r.nhop[:n_t] == 0, axis=1) for r in runs], axis=0)


def persistence_all_origins(runs: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(times, p(t)) averaged over all time origins: sum over rearrangement intervals g of max(0, g - t),
    divided by N (t_end - t); exact for a stationary run (see ``TrapRun.persistence_all``)."""
    n_t = min(r.times.size for r in runs)
    stack = np.array([r.persistence_all[:n_t] for r in runs])
    with np.errstate(invalid="ignore"):
        cnt = np.isfinite(stack).sum(0)
        val = np.where(cnt > 0, np.nansum(stack, 0) / np.maximum(cnt, 1), np.nan)
    return runs[0].times[:n_t], val


def msd(runs: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(times, MSD(t)) averaged over sites and runs."""
    n_t = min(r.times.size for r in runs)
    return runs[0].times[:n_t], np.mean([np.mean(np.sum(r.displacements[:n_t] ** 2, -1), 1) for r in runs], 0)


def _fs_of_r(q: float, r: np.ndarray, d: int) -> np.ndarray:
    x = q * r
    if d == 3:
        return np.sinc(x / math.pi)
    if d == 2:
        return j0(x)
    return np.cos(x)


def self_intermediate(runs: Sequence[Any], q: float) -> tuple[np.ndarray, np.ndarray]:
    """(times, F_s(q, t)) with the isotropic average of the module docstring."""
    if not q > 0:
        raise InputError(f"q must be positive, got {q}")
    n_t = min(r.times.size for r in runs)
    out = []
    for r in runs:
        d = r.displacements.shape[-1]
        dist = np.sqrt(np.sum(r.displacements[:n_t] ** 2, -1)) if d > 1 else r.displacements[:n_t, :, 0]
        out.append(np.mean(_fs_of_r(q, dist, d), 1))
    return runs[0].times[:n_t], np.mean(out, 0)


def tau_alpha(t: np.ndarray, f: np.ndarray, threshold: float = math.exp(-1.0)) -> float:
    """First downward crossing of ``threshold`` by f(t), interpolated linearly in log t (nan if none)."""
    t = np.asarray(t, float)
    f = np.asarray(f, float)
    below = np.nonzero(f < threshold)[0]
    if below.size == 0:
        return float("nan")
    j = int(below[0])
    if j == 0:
        return float(t[0])
    w = (f[j - 1] - threshold) / (f[j - 1] - f[j])
    return float(math.exp(math.log(t[j - 1]) + w * (math.log(t[j]) - math.log(t[j - 1]))))


def diffusion_coefficient(t: np.ndarray, m: np.ndarray, d: int) -> float:
    """D from MSD = 2 d D t, fitted through the origin over the last decade of times."""
    sel = t >= t[-1] / 10.0
    return float(np.sum(m[sel] * t[sel]) / np.sum(t[sel] ** 2) / (2 * d))


def _blocks(coords: np.ndarray | None, box: np.ndarray | None, n: int, n_blocks: int) -> np.ndarray:
    if coords is None:
        return np.arange(n) % (n_blocks ** 2)
    dim = coords.shape[1]
    cell = np.floor(np.mod(coords, box) / box * n_blocks).astype(np.int64) % n_blocks
    return np.ravel_multi_index(tuple(cell.T), (n_blocks,) * dim)


def chi4_blocks(runs: Sequence[Any], n_blocks: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(times, chi_4(t)) by the sub-box estimator N_b Var_b[Q_b(t)] (blocks pooled over runs)."""
    n_t = min(r.times.size for r in runs)
    qb = []
    nb_sites = []
    for r in runs:
        lab = _blocks(r.coords, r.box, r.nhop.shape[1], n_blocks)
        nlab = lab.max() + 1
        cnt = np.bincount(lab, minlength=nlab).astype(float)
        ok = cnt > 0
        p = (r.nhop[:n_t] == 0).astype(float)
        sums = np.stack([np.bincount(lab, weights=p[k], minlength=nlab) for k in range(n_t)])
        qb.append(sums[:, ok] / cnt[ok])
        nb_sites.append(cnt[ok].mean())
    Q = np.concatenate(qb, axis=1)
    return runs[0].times[:n_t], float(np.mean(nb_sites)) * Q.var(axis=1)


def dynamic_length(run: Any, k: int, n_shells: int = 3) -> float:
    """xi_4 from an Ornstein-Zernike fit of S_4(q) of the persistence field at sampling index k.

    Lattice runs only (coords on the integer lattice of side L); uses the ``n_shells`` smallest
    non-zero |q| shells: 1/S_4(q) = (1 + q^2 xi^2) / S_4(0) fitted linearly in q^2.

    Returns:
        xi_4 in lattice units (nan when the fit is not positive or the run is off-lattice).
    """
    if run.coords is None or not np.allclose(run.coords, np.round(run.coords)):
        return float("nan")
    L = int(round(run.box[0]))
    dim = run.coords.shape[1]
    field = np.zeros((L,) * dim)
    idx = tuple(np.round(run.coords).astype(int).T % L)
    p = (run.nhop[k] == 0).astype(float)
    field[idx] = p - p.mean()
    s4 = np.abs(np.fft.fftn(field)) ** 2 / p.size
    qs = np.meshgrid(*([np.fft.fftfreq(L) * 2 * math.pi] * dim), indexing="ij")
    q2 = sum(q**2 for q in qs)
    shells = np.unique(np.round(q2[q2 > 0], 10))[:n_shells]
    x, y = [], []
    for s in shells:
        sel = np.isclose(q2, s)
        x.append(s)
        y.append(1.0 / s4[sel].mean())
    if len(x) < 2:
        return float("nan")
    slope, icpt = np.polyfit(x, y, 1)
    if icpt <= 0 or slope <= 0:
        return float("nan")
    return float(math.sqrt(slope / icpt))


def loss_spectrum(t: np.ndarray, c: np.ndarray, omega: np.ndarray) -> np.ndarray:
    """chi''(omega) = -integral_0^inf C'(t) sin(omega t) dt for C(0) = 1, C piecewise linear between the samples
    and continued beyond the last one as C_end exp(-(t - t_end) / tau_end), tau_end = -C_end / C'(t_end) from
    the last interval (held constant instead where that slope is not negative); callers pass a C averaged
    over time origins where they can (:func:`analyze_runs`), so that this slope is not one sample's noise.

    The fluctuation-dissipation form of omega * integral_0^inf C(t) cos(omega t) dt. A run ends before C has
    decayed (trap models stop at a persistence of ~5%), and the cosine transform cut at t_end carries the term
    C(t_end) sin(omega t_end), a ripple of amplitude ~0.05 that swamped chi'' above the peak (Bouchaud x = 2:
    -0.02 against an exact 0.011 at omega = 46, and chi'' exponents from -0.4 to 1.3 where the exact one is
    0.99). Here the cut is smooth and the tail's continuation restores the low frequencies: a Debye decay
    cut at C = 0.05 comes out within 1% (tests/test_trap_models.py).

    Args:
        t: (n,) increasing positive times; c: (n,) correlation values; omega: (m,) angular frequencies.

    Returns:
        (m,) chi''(omega).
    """
    tt = np.concatenate([[0.0], np.asarray(t, float)])
    cc = np.concatenate([[1.0], np.asarray(c, float)])
    if not np.all(np.diff(tt) > 0):
        raise InputError("loss_spectrum needs strictly increasing positive times")
    a, b = tt[:-1], tt[1:]
    s = np.diff(cc) / np.diff(tt)
    w = np.asarray(omega, float)[:, None]
    # -integral over [a, b] of s sin(w u) du
    chi = (s * (np.cos(w * b) - np.cos(w * a)) / w).sum(axis=1)
    c_end, slope, t_end = cc[-1], s[-1], tt[-1]
    if c_end > 0 and slope < 0:  # + integral from t_end of (c_end / tau) exp(-(u - t_end) / tau) sin(w u) du
        g = -slope / c_end  # 1 / tau_end: the local rate at the end (a power-law tail's too, unlike a fit)
        w1 = w[:, 0]
        chi = chi + (-slope) * (g * np.sin(w1 * t_end) + w1 * np.cos(w1 * t_end)) / (g * g + w1 * w1)
    return chi


def spectrum_exponents(omega: np.ndarray, chi: np.ndarray, t_range: tuple[float, float],
                       decades: tuple[float, float] = (1.0, 2.5)) -> dict[str, float]:
    """Peak and log-log slopes of chi''(omega) on both sides of the peak.

    Args:
        omega, chi: the spectrum (omega increasing).
        t_range: (t_min, t_max) of the underlying C(t): fits stay within 1/t_max < omega < 1/t_min.
        decades: fit window (start, end) in decades from the peak on each side.

    Returns:
        dict with ``omega_peak``, ``slope_low`` (Debye: +1) and ``beta_high`` (chi'' ~ omega^-beta above the
        peak; an excess wing is a small beta, e.g. < 0.5, over the window).
    """
    om = np.asarray(omega, float)
    ch = np.asarray(chi, float)
    ok = (om > 1.0 / t_range[1]) & (om < 1.0 / t_range[0]) & (ch > 0)
    om, ch = om[ok], ch[ok]
    if om.size < 5:
        return {"omega_peak": float("nan"), "slope_low": float("nan"), "beta_high": float("nan")}
    jp = int(np.argmax(ch))
    wp = float(om[jp])

    def slope(lo: float, hi: float) -> float:
        sel = (om >= lo) & (om <= hi)
        if sel.sum() < 3:
            return float("nan")
        return float(np.polyfit(np.log10(om[sel]), np.log10(ch[sel]), 1)[0])

    d0, d1 = decades
    return {"omega_peak": wp, "slope_low": slope(wp * 10**-d1, wp * 10**-d0),
            "beta_high": -slope(wp * 10**d0, wp * 10**d1)}


def kaplan_meier(observed: np.ndarray, censored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier survival S(t) of waiting times with right censoring.

    Args:
        observed: completed waiting times; censored: ages of traps still occupied at the end.

    Returns:
        (t (k,), S(t) (k,)): the distinct event times and the survival just after each.
    """
    t = np.concatenate([observed, censored])
    ev = np.concatenate([np.ones(observed.size, bool), np.zeros(censored.size, bool)])
    order = np.argsort(t, kind="stable")
    t, ev = t[order], ev[order]
    n = t.size
    at_risk = n - np.arange(n)
    factors = np.where(ev, 1.0 - 1.0 / at_risk, 1.0)
    S = np.cumprod(factors)
    return t[ev], S[ev]


def pareto_tail(observed: np.ndarray, censored: np.ndarray, t_min: float) -> tuple[float, float]:
    """Censored maximum-likelihood exponent alpha of a tail S(t) ~ t^-alpha for t > t_min.

    alpha_hat = (number of completed times above t_min) / sum over all (completed and censored) times
    above t_min of ln(t / t_min); standard error alpha_hat / sqrt(completed count).

    Returns:
        (alpha, standard error). The waiting-time density exponent is 1 + alpha.
    """
    o = observed[observed > t_min]
    c = censored[censored > t_min]
    if o.size < 10:
        return float("nan"), float("nan")
    alpha = o.size / (np.log(o / t_min).sum() + np.log(c / t_min).sum())
    return float(alpha), float(alpha / math.sqrt(o.size))


def fragility(T: Sequence[float], tau: Sequence[float]) -> dict[str, float]:
    """Steepness index m = d log10 tau / d(Tg/T) at Tg = the lowest temperature with a finite tau.

    Not Angell's fragility: his m takes Tg where tau = 100 s (>= 16 even for an Arrhenius liquid, whose tau
    spans 16 decades from Tg/T = 0 to 1); here Tg is the lowest simulated T and tau spans a few decades, so m
    measures how steeply tau rises at the coldest point simulated (Arrhenius: m = E / (T_low ln 10)).

    Returns:
        dict with ``Tg`` and ``m`` (nan with fewer than two finite points); a quadratic fit in Tg/T is
        used with three points or more, a finite difference with two.
    """
    T = np.asarray(T, float)
    tau = np.asarray(tau, float)
    ok = np.isfinite(tau) & (tau > 0)
    if ok.sum() < 2:
        return {"Tg": float("nan"), "m": float("nan")}
    T, lt = T[ok], np.log10(tau[ok])
    Tg = float(T.min())
    x = Tg / T
    deg = 2 if x.size >= 3 else 1
    p = np.polyfit(x, lt, deg)
    return {"Tg": Tg, "m": float(np.polyval(np.polyder(p), 1.0))}


def analyze_runs(runs: Sequence[Any], q: float, n_blocks: int = 4, omega_per_decade: int = 10,
                 stationary: bool = True) -> dict[str, Any]:
    """All observables of the replicas of one temperature.

    Runs stopped by their event budget (``truncated``) have not decayed: their spectrum (``omega_peak``,
    ``slope_low``, ``beta_high``) and ``D`` are NaN; tau_alpha stays finite only if F_s crossed 1/e. Aging runs
    (``stationary=False``) have no diffusion constant either (``D`` NaN); their tau_alpha is measured from the
    quench (waiting time 0).

    Args:
        runs: replicas (same model, T and time grid).
        q: wave number of F_s (inverse length units of b).
        n_blocks: blocks per side for chi_4.
        omega_per_decade: frequency resolution of chi''.
        stationary: the runs start from the stationary law; otherwise (aging, ``start="quench"``) chi''
            uses the persistence from t = 0 only, not the average over time origins.

    Returns:
        dict of curves (``times``, ``persistence``, ``msd``, ``fs``, ``chi4``, ``omega``, ``chi_loss``,
        ``local_times``) and scalars (``tau_alpha``, ``tau_persistence``, ``D``, ``D_tau_alpha``,
        ``chi4_peak``, ``t_chi4_peak``, ``xi4``, ``omega_peak``, ``slope_low``, ``beta_high``).
    """
    n_times = min(r.times.size for r in runs)
    if n_times < 2:
        why = (f"the event budget (max_events) stopped the run after {n_times} sampling time(s)"
               if any(r.truncated for r in runs) else f"the run has {n_times} sampling time(s)")
        raise InputError(f"{why}: the observables need at least two; raise --max-events or give more times")
    t, p = persistence(runs)
    _, m = msd(runs)
    _, fs = self_intermediate(runs, q)
    _, c4 = chi4_blocks(runs, n_blocks)
    d = runs[0].displacements.shape[-1]
    ta = tau_alpha(t, fs)
    D = diffusion_coefficient(t, m, d) if t.size >= 2 else float("nan")
    kpk = int(np.argmax(c4)) if c4.size else 0
    xis = np.array([dynamic_length(r, min(kpk, r.times.size - 1)) for r in runs]) if runs[0].coords is not None \
        else np.array([np.nan])
    xi = float(np.mean(xis[np.isfinite(xis)])) if np.any(np.isfinite(xis)) else float("nan")
    lo, hi = math.log10(1.0 / t[-1]) - 1.0, math.log10(1.0 / t[0]) + 1.0
    om = np.logspace(lo, hi, max(8, int((hi - lo) * omega_per_decade)))
    _, p_all = persistence_all_origins(runs)
    if stationary:  # the all-origins average where it exists (it has no value at the last time: no origin left)
        keep = np.isfinite(p_all)
        last = int(np.nonzero(keep)[0][-1]) + 1 if keep.any() else t.size
        t_spec, c_spec = t[:last], np.where(keep, p_all, p)[:last]
    else:
        t_spec, c_spec = t, p
    chi = loss_spectrum(t_spec, c_spec, om)
    ex = spectrum_exponents(om, chi, (t[0], t[-1]))
    truncated = bool(any(r.truncated for r in runs))
    if truncated:
        ex = {k: float("nan") for k in ex}
        D = float("nan")
    if not stationary:  # aging: the MSD is sub-diffusive (Bouchaud x < 1: t^x), there is no D to report
        D = float("nan")
    local = np.concatenate([r.t_first for r in runs])
    return {"times": t, "persistence": p, "persistence_all": p_all, "msd": m, "fs": fs, "chi4": c4, "omega": om,
            "chi_loss": chi,
            "local_times": local, "tau_alpha": ta, "tau_persistence": tau_alpha(t, p), "D": D,
            "D_tau_alpha": D * ta, "chi4_peak": float(c4[kpk]) if c4.size else float("nan"),
            "t_chi4_peak": float(t[kpk]) if c4.size else float("nan"), "xi4": xi, **ex,
            "events_per_s": float(np.mean([r.events_per_s for r in runs])),
            "n_events": int(sum(r.n_events for r in runs)), "truncated": truncated}
