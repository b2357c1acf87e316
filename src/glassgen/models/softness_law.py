r"""Softness rate laws P_R(S, T) and stationary softness distributions P(S; T), read from TOML or JSON.

The rearrangement rate of a particle of softness S at temperature T is

    k(S, T) = nu0 * exp[Sigma(S) - DeltaE(S) / T],   capped:  k <= rate_cap,

with DeltaE(S) (an energy barrier, units of T) and Sigma(S) (an entropy, dimensionless) given either
as polynomial coefficients (``DeltaE = [e0, e1, ...]`` meaning e0 + e1 S + ...) or tabulated on a
softness grid (``S``, ``DeltaE``, ``Sigma`` lists of equal length; linear interpolation, clamped at
the ends). The stationary (measured) softness distribution is Gaussian, P(S; T) = N(mean(T), std(T)^2),
with ``mean`` and ``std`` tabulated against ``T`` (linear interpolation, linear extrapolation outside
the table: :meth:`SoftnessLaw.extrapolated` says so, and ``glassgen trap-model run`` warns and records
``P_S_extrapolated`` per temperature). The law is refused at T >= ``T_onset`` (above the onset the fitted
d ln k / dS changes sign: softer particles would become slower).

File format (the same keys in JSON; everything under the table ``[softness_law]`` or at top level)::

    [softness_law]
    name = "SystemIII"
    source = "StEP model III, OsCeZrCd/gridModel branch SystemIII"
    nu0 = 1.0                      # rate prefactor (inverse time units of the law)
    DeltaE = [19.74, -11.27]       # polynomial coefficients in S (or a list with S = [...])
    Sigma = [40.05, -25.57]
    rate_cap = 0.00877             # optional: k = min(k_law, rate_cap)
    T_onset = 0.441                # optional: the law is used for T < T_onset only (enforced)
    [softness_law.P_S]
    T = [0.05, 0.30]
    mean = [0.0852, 0.5751]
    std = [0.7197, 0.7049]

The predictors' softness export writes exactly this table (their fitted P_R(S) and per-T P(S)), so a
file written there loads here without conversion.

Post-rearrangement law. If a particle's softness is redrawn from g(S) only when it rearranges, the
stationary law is P(S) ~ g(S) / k(S) (REFERENCE section 6, Ridout, Tah & Liu, EPL 144, 47001 (2023)),
so keeping the measured P(S) stationary requires g(S) ~ P(S) k(S). For a law linear in S with slope
a(T) = d ln k / dS, g = N(Sbar + a s^2, s^2); with a cap, g is that Gaussian thinned by k / k_lin,
sampled exactly by rejection (kernel redraw mode 2). Tabulated laws use a tabulated inverse CDF of
P(S) k(S) on a fine grid (mode 3).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import log_ndtr

from glassgen.config_values import read_toml
from glassgen.errors import InputError

__all__ = ["SoftnessLaw", "load_softness_law", "KernelLaw"]


@dataclass(frozen=True)
class KernelLaw:
    """A rate law and redraw law at one temperature, in the form the KMC kernel takes.

    Attributes:
        c0, c1: ln k(S) = c0 + c1 S (when ``tab`` is empty).
        lncap: ln of the rate cap (+inf: none).
        tab_x0, tab_dx, tab: tabulated ln k on a uniform grid (empty: use c0, c1).
        redraw_mode, p0, p1, rp, cdf_x, cdf: the post-rearrangement law (see :mod:`glassgen._kernels.kmc`).
    """

    c0: float
    c1: float
    lncap: float
    tab_x0: float = 0.0
    tab_dx: float = 1.0
    tab: np.ndarray = field(default_factory=lambda: np.zeros(0))
    redraw_mode: int = 2
    p0: float = 0.0
    p1: float = 1.0
    rp: np.ndarray = field(default_factory=lambda: np.zeros(4))
    cdf_x: np.ndarray = field(default_factory=lambda: np.zeros(2))
    cdf: np.ndarray = field(default_factory=lambda: np.array([0.0, 1.0]))


def _poly_or_table(name: str, v: Any, grid: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    arr = np.asarray(v, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
        raise InputError(f"softness law: {name} must be a non-empty list of finite numbers")
    if grid is None:
        return arr, None
    if arr.size != grid.size:
        raise InputError(f"softness law: {name} has {arr.size} values but S has {grid.size}")
    return None, arr


@dataclass(frozen=True)
class SoftnessLaw:
    """A softness rate law k(S, T) with its stationary P(S; T) (see the module docstring).

    Attributes:
        name: label.
        nu0: rate prefactor.
        dE_poly, sig_poly: polynomial coefficients of DeltaE(S) and Sigma(S) (None when tabulated).
        S_grid, dE_tab, sig_tab: tabulated DeltaE and Sigma on S_grid (None when polynomial).
        rate_cap: cap of k (inf: none).
        ps_T, ps_mean, ps_std: the P(S; T) table.
        T_onset: the law is used only below this temperature (inf: everywhere); enforced by
            :meth:`kernel_law`.
        T_min: and only above this one (0: everywhere; a fitted law whose d ln k / dS changes sign there).
        source: where the law comes from.
    """

    name: str
    nu0: float
    dE_poly: np.ndarray | None
    sig_poly: np.ndarray | None
    S_grid: np.ndarray | None
    dE_tab: np.ndarray | None
    sig_tab: np.ndarray | None
    rate_cap: float
    ps_T: np.ndarray
    ps_mean: np.ndarray
    ps_std: np.ndarray
    T_onset: float = math.inf
    source: str = ""
    T_min: float = 0.0

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SoftnessLaw:
        """Build from the file's mapping (the ``softness_law`` table or the top level)."""
        d = d.get("softness_law", d)
        try:
            grid = np.asarray(d["S"], dtype=np.float64) if "S" in d else None
            if grid is not None and (grid.ndim != 1 or grid.size < 2 or np.any(np.diff(grid) <= 0)):
                raise InputError("softness law: S must be an increasing list of at least 2 values")
            dE_poly, dE_tab = _poly_or_table("DeltaE", d["DeltaE"], grid)
            sig_poly, sig_tab = _poly_or_table("Sigma", d["Sigma"], grid)
            ps = d["P_S"]
            ps_T = np.atleast_1d(np.asarray(ps["T"], dtype=np.float64))
            ps_mean = np.atleast_1d(np.asarray(ps["mean"], dtype=np.float64))
            ps_std = np.atleast_1d(np.asarray(ps["std"], dtype=np.float64))
        except KeyError as exc:
            raise InputError(f"softness law: missing key {exc.args[0]!r} (need DeltaE, Sigma, P_S.T/mean/std)") \
                from None
        if not (ps_T.size == ps_mean.size == ps_std.size) or ps_T.size == 0:
            raise InputError("softness law: P_S.T, P_S.mean and P_S.std must have the same non-zero length")
        if np.any(ps_std <= 0) or np.any(ps_T <= 0):
            raise InputError("softness law: P_S.std and P_S.T must be positive")
        order = np.argsort(ps_T)
        nu0 = float(d.get("nu0", 1.0))
        cap = float(d.get("rate_cap", math.inf))
        if not nu0 > 0 or not cap > 0:
            raise InputError("softness law: nu0 and rate_cap must be positive")
        return cls(name=str(d.get("name", "softness")), nu0=nu0, dE_poly=dE_poly, sig_poly=sig_poly,
                   S_grid=grid, dE_tab=dE_tab, sig_tab=sig_tab, rate_cap=cap, ps_T=ps_T[order],
                   ps_mean=ps_mean[order], ps_std=ps_std[order], T_onset=float(d.get("T_onset", math.inf)),
                   source=str(d.get("source", "")), T_min=float(d.get("T_min", 0.0)))

    # ------------------------------------------------------------------ evaluation
    @property
    def linear(self) -> bool:
        """True when DeltaE and Sigma are polynomials of degree <= 1 (exact Gaussian redraw)."""
        return (self.dE_poly is not None and self.sig_poly is not None
                and self.dE_poly.size <= 2 and self.sig_poly.size <= 2)

    def lnk(self, S: np.ndarray | float, T: float) -> np.ndarray:
        """ln k(S, T) = ln nu0 + Sigma(S) - DeltaE(S)/T, capped at ln(rate_cap). Shape of S."""
        S = np.asarray(S, dtype=np.float64)
        if self.S_grid is not None:
            dE = np.interp(S, self.S_grid, self.dE_tab)
            sig = np.interp(S, self.S_grid, self.sig_tab)
        else:
            dE = np.polynomial.polynomial.polyval(S, self.dE_poly)
            sig = np.polynomial.polynomial.polyval(S, self.sig_poly)
        return np.minimum(math.log(self.nu0) + sig - dE / T, math.log(self.rate_cap))

    def p_s(self, T: float) -> tuple[float, float]:
        """(mean, std) of the stationary P(S; T): linear interpolation (extrapolation) in T of the table."""
        if self.ps_T.size == 1:
            return float(self.ps_mean[0]), float(self.ps_std[0])
        def lin(y: np.ndarray) -> float:
            if T <= self.ps_T[0]:
                j = 0
            elif T >= self.ps_T[-1]:
                j = self.ps_T.size - 2
            else:
                j = int(np.searchsorted(self.ps_T, T) - 1)
            w = (T - self.ps_T[j]) / (self.ps_T[j + 1] - self.ps_T[j])
            return float(y[j] * (1 - w) + y[j + 1] * w)
        return lin(self.ps_mean), max(lin(self.ps_std), 1e-12)

    def extrapolated(self, T: float) -> bool:
        """True when T lies outside the P(S) table (P(S) is linearly extrapolated there)."""
        return bool(T < self.ps_T[0] or T > self.ps_T[-1])

    def mean_rate(self, T: float, n: int = 40001) -> float:
        """<k>_P = integral P(S) k(S, T) dS (quadrature over mean +- 12 std)."""
        m, s = self.p_s(T)
        S = np.linspace(m - 12 * s, m + 12 * s, n)
        w = np.exp(-0.5 * ((S - m) / s) ** 2)
        return float(np.sum(w * np.exp(self.lnk(S, T))) / np.sum(w))

    def persistence(self, T: float, t: np.ndarray, n: int = 20001) -> np.ndarray:
        """Exact persistence of the independent softness trap model from stationarity: <exp(-k(S) t)>_P."""
        m, s = self.p_s(T)
        S = np.linspace(m - 10 * s, m + 10 * s, n)
        w = np.exp(-0.5 * ((S - m) / s) ** 2)
        w /= w.sum()
        k = np.exp(self.lnk(S, T))
        return np.array([float(np.sum(w * np.exp(-k * tt))) for tt in np.atleast_1d(t)])

    def kernel_law(self, T: float, redraw: str = "stationary") -> KernelLaw:
        """The law at temperature T in kernel form.

        Args:
            T: temperature.
            redraw: ``"stationary"`` (g ~ P(S) k(S): keeps P(S) stationary) or ``"naive"`` (g = P(S): the
                wrong law, used as a negative control; the stationary law becomes ~ P(S)/k(S)).

        Returns:
            the :class:`KernelLaw`.
        """
        if not (isinstance(T, (int, float)) and math.isfinite(T) and T > 0):
            raise InputError(f"T must be positive, got T={T}")
        if T >= self.T_onset:
            raise InputError(f"T={T} is not below the onset T_onset={self.T_onset} of softness law {self.name!r}: "
                             "the law holds for T < T_onset only")
        if T <= self.T_min:
            raise InputError(f"T={T} is not above T_min={self.T_min:.4g} of softness law {self.name!r}: below it the "
                             "fitted law makes softer particles rearrange more slowly (d ln k / dS < 0)")
        m, s = self.p_s(T)
        lncap = math.log(self.rate_cap)
        if self.linear:
            dE = np.zeros(2)
            dE[: self.dE_poly.size] = self.dE_poly
            sig = np.zeros(2)
            sig[: self.sig_poly.size] = self.sig_poly
            c0 = math.log(self.nu0) + sig[0] - dE[0] / T
            c1 = sig[1] - dE[1] / T
            if redraw == "naive":
                return KernelLaw(c0=c0, c1=c1, lncap=lncap, redraw_mode=1, p0=m, p1=s)
            if redraw != "stationary":
                raise InputError(f"unknown redraw law {redraw!r} (stationary or naive)")
            mg = m + c1 * s * s
            if not math.isfinite(lncap) or c1 == 0.0:
                return KernelLaw(c0=c0, c1=c1, lncap=lncap, redraw_mode=1, p0=mg if c1 != 0 else m, p1=s)
            xs = (lncap - c0) / c1
            side = 1.0 if c1 > 0 else -1.0
            # log weights of the two pieces of g ~ N(m, s^2) min(exp(c0 + c1 S), cap)
            lw_lin = c0 + c1 * m + 0.5 * (c1 * s) ** 2 + float(log_ndtr(side * (xs - mg) / s))
            lw_cap = lncap + float(log_ndtr(side * (m - xs) / s))
            p_lin = 1.0 / (1.0 + math.exp(min(700.0, lw_cap - lw_lin)))
            return KernelLaw(c0=c0, c1=c1, lncap=lncap, redraw_mode=2, p0=mg, p1=s,
                             rp=np.array([m, xs, p_lin, side]))
        # tabulated or non-linear law: ln k on a fine grid, g by a tabulated inverse CDF
        lo, hi = m - 12 * s, m + 12 * s
        grid = np.linspace(lo, hi, 24001)
        tab = self.lnk(grid, T)
        if redraw == "naive":
            return KernelLaw(c0=0.0, c1=0.0, lncap=lncap, tab_x0=lo, tab_dx=float(grid[1] - grid[0]), tab=tab,
                             redraw_mode=1, p0=m, p1=s)
        if redraw != "stationary":
            raise InputError(f"unknown redraw law {redraw!r} (stationary or naive)")
        lng = -0.5 * ((grid - m) / s) ** 2 + tab
        g = np.exp(lng - lng.max())
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (g[1:] + g[:-1]))])
        cdf /= cdf[-1]
        return KernelLaw(c0=0.0, c1=0.0, lncap=lncap, tab_x0=lo, tab_dx=float(grid[1] - grid[0]), tab=tab,
                         redraw_mode=3, cdf_x=grid, cdf=cdf)

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary (stored in output files)."""
        return {"name": self.name, "nu0": self.nu0, "rate_cap": self.rate_cap,
                "DeltaE": (self.dE_poly if self.dE_poly is not None else self.dE_tab).tolist(),
                "Sigma": (self.sig_poly if self.sig_poly is not None else self.sig_tab).tolist(),
                "S": None if self.S_grid is None else self.S_grid.tolist(),
                "P_S": {"T": self.ps_T.tolist(), "mean": self.ps_mean.tolist(), "std": self.ps_std.tolist()},
                "T_onset": self.T_onset, "T_min": self.T_min, "source": self.source}


def load_softness_law(source: str | os.PathLike[str] | dict[str, Any]) -> SoftnessLaw:
    """Load a softness law from a TOML/JSON file, a mapping, or a config name.

    Args:
        source: a path (``.toml`` or ``.json``), a dict, or the name of a file in
            ``configs/models/phenomenological/`` (e.g. ``"softness_systemIII"``) or of a softness study's export
            in ``configs/predictors/`` (e.g. ``"softness_ka3d"``).

    Returns:
        the :class:`SoftnessLaw`.

    Raises:
        InputError: missing file, malformed content or missing keys.
    """
    if isinstance(source, dict):
        return _law_from_dict(source, "softness law")
    p = Path(source)
    if not p.is_file():
        from glassgen.models.trap import config_dir

        cands = [config_dir() / f"{p.name}.toml", config_dir().parents[1] / "predictors" / f"{p.name}.toml"]
        found = [c for c in cands if c.is_file()]
        if not found:
            raise InputError(f"softness law not found: {source} (a file, or a name in {cands[0].parent} or "
                             f"{cands[1].parent})")
        p = found[0]
    data, _ = read_toml(p, "softness law", allow_json=True, nan_tables=("softness.bins", "softness.P_S.P_R"))
    if isinstance(data.get("softness"), dict) and "fit" in data["softness"]:  # `glassgen predict softness-law`
        data = law_from_export(data["softness"], str(p))
    return _law_from_dict(data, f"softness law {p}")


def law_from_export(soft: dict[str, Any], source: str = "") -> dict[str, Any]:
    """The law of a softness study's export (the ``[softness]`` table that ``glassgen predict softness-law``
    writes, format in :mod:`glassgen.predictors.softness`) as a ``[softness_law]`` mapping.

    The export measures P_R(S, T), the probability that a particle rearranges within a frame spacing t_R, and
    fits ln P_R = Sigma(S) - DeltaE(S)/T linearly in S. As a rate, k(S, T) = P_R / t_R (P_R << 1 in the fit
    range), so nu0 = 1 / t_R in LJ time units; DeltaE and Sigma are the fit's; P(S; T) is the Gaussian
    summary of each temperature's softness distribution. No onset is known (T_onset = inf), no cap.
    """
    if isinstance(soft.get("fit"), dict) and not soft["fit"]:
        raise InputError(f"softness export {source} has no fit (no softness bin had rearrangements at two or more "
                         "temperatures): it cannot serve as a law; rerun the study longer or with more temperatures")
    try:
        fit = soft["fit"]
        rows = soft["P_S"]
        t_R = float(soft["t_R"])
        law = {"name": f"export {soft.get('model', '?')} N={soft.get('n', '?')}",
               "source": f"{source} (softness study export; k = P_R / t_R)", "nu0": 1.0 / t_R,
               "DeltaE": [float(x) for x in fit["DeltaE"]], "Sigma": [float(x) for x in fit["Sigma"]],
               "P_S": {"T": [float(r["T"]) for r in rows], "mean": [float(r["mean"]) for r in rows],
                       "std": [float(r["std"]) for r in rows]}}
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"softness export {source}: missing or malformed entry ({exc}); need softness.fit, "
                         "softness.P_S and softness.t_R") from None
    if not (math.isfinite(t_R) and t_R > 0):
        raise InputError(f"softness export {source}: t_R must be positive, got {t_R}")
    # where softer particles rearrange faster, d ln k / dS = Sigma_1 - DeltaE_1 / T > 0: the fit's valid range
    e1 = law["DeltaE"][1] if len(law["DeltaE"]) > 1 else 0.0
    s1 = law["Sigma"][1] if len(law["Sigma"]) > 1 else 0.0
    if s1 <= 0 and e1 >= 0:
        raise InputError(f"softness export {source}: its fit makes softer particles rearrange more slowly at every T "
                         f"(DeltaE slope {e1:.3g}, Sigma slope {s1:.3g}): not a softness law")
    if s1 > 0 and e1 > 0:
        law["T_min"] = e1 / s1
    elif s1 < 0 and e1 < 0:
        law["T_onset"] = e1 / s1
    return law


def _law_from_dict(data: dict[str, Any], where: str) -> SoftnessLaw:
    """:meth:`SoftnessLaw.from_dict` with non-numeric entries as one-line errors."""
    try:
        return SoftnessLaw.from_dict(data)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"malformed {where}: {exc}") from None
