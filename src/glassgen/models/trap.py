r"""Trap models simulated by rejection-free kinetic Monte Carlo (kernels: :mod:`glassgen._kernels.kmc`).

Models (``TrapModel.kind``); time in units of the rate law (tau0 = 1/nu0 for barrier models):

- ``"bouchaud"``: Monthus & Bouchaud, J. Phys. A 29, 3847 (1996). Barriers E ~ rho(E) = exp(-E/T0)/T0,
  escape rate k = exp(-E/T) / tau0; after an escape E is redrawn from rho. For T > T0 the equilibrium
  occupation is P_eq(E) ~ rho(E) exp(E/T) (exponential of rate 1/T0 - 1/T), the mean trapping time is
  tau0 T/(T - T0) and the waiting-time density psi(t) ~ t^(-1 - T/T0). T <= T0 needs ``start="quench"``
  (aging: no equilibrium).
- ``"bouchaud-gaussian"``: Gaussian rho(E) = N(E0, sigma_E^2); <tau> = tau0 exp(E0/T + sigma_E^2/(2 T^2));
  P_eq = N(E0 + sigma_E^2/T, sigma_E^2).
- ``"softness"``: softness trap model (Ridout, Tah & Liu, EPL 144, 47001 (2023)): rate k(S, T) from a
  :class:`~glassgen.models.softness_law.SoftnessLaw`; after a rearrangement S is redrawn from
  g ~ P(S) k(S), which keeps the measured P(S) stationary; start from P(S). MSD = d b^2 <k>_P t.
- ``"softness-facilitated"``: the softness trap model on a d-dimensional periodic lattice (L^d sites) or
  on the particles of a configuration (``positions``, ``box``), after Ridout & Liu (arXiv 2406.05868):
  a rearrangement at i kicks the softness of every site j at distance 0 < r <= r_c by the reversible
  AR(1) update S' = Sbar + (1 - eta)(S - Sbar) + eta * softening + sqrt(eta (2 - eta)) s xi with
  eta(r) = eta0 exp(-(r - 1)/xi_kick) (clipped to [0, 1]). With softening = 0 the product measure of
  P(S) stays exactly stationary (the kick preserves N(Sbar, s^2) and neighbours are independent of the
  rearranging site under it), so the run starts from P(S) and needs no equilibration.
  The kernel eta(r), r_c and the optional mean softening are glassgen's free parameters (the paper's
  fitted kernel is not reproduced here).
- ``"facilitated"``: a facilitated trap model for the excess wing, after Scalliet, Guiselin & Berthier,
  PRX 12, 041028 (2022). Gaussian barriers rho = N(E0, sigma_E^2) on a lattice; an escape at i redraws
  E_i from rho, and the barriers of its neighbours get the AR(1) kick above with mean
  E0 + sigma_E^2/T and std sigma_E, i.e. a partial redraw from the equilibrium occupation
  P_eq = N(E0 + sigma_E^2/T, sigma_E^2): deep traps next to a relaxing site drift toward the typical
  barrier, which speeds up the deepest traps. Since rho ~ P_eq k, the product of P_eq stays exactly
  stationary (as for the softness model), so no warm-up is needed (``warmup`` > 0 adds one, e.g. with a
  ``softening`` shift). This is glassgen's documented construction of facilitation (the paper's exact
  update rule is not reproduced here); eta(r), r_c and the shift are free parameters.

Each site carries a displacement that jumps by b * N(0, 1) per dimension at every rearrangement, so the
usual particle observables (MSD, F_s, persistence, chi_4) apply (:mod:`glassgen.models.observables`).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from glassgen._kernels.kmc import kmc_run
from glassgen.config_values import check_types, type_hints
from glassgen.dynamics.schedule import DeferredInterrupt
from glassgen.errors import InputError
from glassgen.models.softness_law import KernelLaw, SoftnessLaw, load_softness_law

__all__ = ["MODELS", "USED_BY", "TrapModel", "TrapRun", "simulate", "lattice_neighbours", "offlattice_neighbours",
           "config_dir", "load_trap_model", "unused_options"]

MODELS = ("bouchaud", "bouchaud-gaussian", "softness", "softness-facilitated", "facilitated")
_FACILITATED = ("softness-facilitated", "facilitated")
_BARRIER = ("bouchaud", "bouchaud-gaussian", "facilitated")
_SOFTNESS = ("softness", "softness-facilitated")

#: The models that use each model-specific option (parameter or job option); every other option (T, dim, b,
#: start, replicas, seed, q, p_stop, max_events, ...) applies to all. ``L`` is also unused off-lattice (``input``).
USED_BY: dict[str, tuple[str, ...]] = {
    "N": ("bouchaud", "bouchaud-gaussian", "softness"),  # facilitated models have L^dim sites (or the input's)
    "T0": ("bouchaud",),
    "E0": ("bouchaud-gaussian", "facilitated"),
    "sigma_E": ("bouchaud-gaussian", "facilitated"),
    "tau0": _BARRIER,
    "softness_law": _SOFTNESS,
    "redraw": _SOFTNESS,
    "L": _FACILITATED,
    "input": _FACILITATED,
    "eta0": _FACILITATED,
    "xi_kick": _FACILITATED,
    "r_c": _FACILITATED,
    "softening": _FACILITATED,
    "warmup": _FACILITATED,
}


def unused_options(kind: str, given: dict[str, str], off_lattice: bool = False) -> str | None:
    """None if model ``kind`` uses every given option; else a one-line message naming those it does not use.

    Args:
        kind: model kind (:data:`MODELS`).
        given: option key (a :data:`USED_BY` key or any other) -> the name shown to the user (``--eta0``, ...).
        off_lattice: the model runs on an input configuration (``L`` unused).
    """
    if kind not in MODELS:
        return None  # the model's own check names the valid kinds
    bad = [k for k in given if k in USED_BY and (kind not in USED_BY[k] or (k == "L" and off_lattice))]
    if not bad:
        return None
    groups: dict[str, list[str]] = {}
    for k in bad:
        users = ("models on a lattice (not with an input configuration)" if k == "L" and kind in USED_BY[k]
                 else ", ".join(USED_BY[k]) + " only")
        groups.setdefault(users, []).append(given[k])
    if len(groups) == 1:
        why = f"used by {next(iter(groups))}"
    else:
        why = "; ".join(f"{', '.join(names)}: used by {users}" for users, names in groups.items())
    return f"model {kind} does not use {', '.join(given[k] for k in bad)} ({why})"


def config_dir() -> Path:
    """``configs/models/phenomenological/`` of the source checkout."""
    from glassgen.config import repo_root

    return repo_root() / "configs" / "models" / "phenomenological"


@dataclass(frozen=True)
class TrapModel:
    """A trap model as data (see the module docstring for the physics of each ``kind``).

    Attributes:
        kind: one of :data:`MODELS`.
        T0: width of the exponential barrier distribution (``bouchaud``).
        E0, sigma_E: mean and std of the Gaussian barriers (``bouchaud-gaussian``, ``facilitated``).
        tau0: microscopic time (barrier models): k = exp(-E/T) / tau0.
        law: softness law (``softness*``).
        b: jump length, standard deviation per dimension of a rearrangement's displacement.
        dim: dimension of displacements and of the lattice.
        L: lattice side for facilitated models (N = L^dim sites).
        eta0, xi_kick, r_c: kick strength eta(r) = eta0 exp(-(r - 1)/xi_kick) for 0 < r <= r_c.
        softening: mean shift of the kick (0: P(S) invariant).
        redraw: ``"stationary"`` or ``"naive"`` (softness models; ``naive`` is the wrong law g = P(S),
            kept as a negative control).
        start: ``"equilibrium"`` (stationary law of the non-facilitated model) or ``"quench"`` (from rho).
        warmup: warm-up length in units of the time for all but ``p_stop`` of the sites to rearrange
            (facilitated models, e.g. with a ``softening`` shift, whose start is then not stationary;
            0: none).
        positions, box: off-lattice facilitation from a configuration (positions (N, d), box (d,)).
    """

    kind: str
    T0: float = 1.0
    E0: float = 0.0
    sigma_E: float = 1.0
    tau0: float = 1.0
    law: SoftnessLaw | None = None
    b: float = 1.0
    dim: int = 3
    L: int = 32
    eta0: float = 0.5
    xi_kick: float = 1.0
    r_c: float = 1.0
    softening: float = 0.0
    redraw: str = "stationary"
    start: str = "equilibrium"
    warmup: float = 0.0
    positions: np.ndarray | None = field(default=None, repr=False)
    box: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.kind not in MODELS:
            raise InputError(f"unknown trap model {self.kind!r} (choose from {', '.join(MODELS)})")
        if self.kind.startswith("softness") and self.law is None:
            raise InputError(f"model {self.kind} needs a softness law (softness_law = file or name)")
        for name in ("T0", "sigma_E", "tau0", "b"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise InputError(f"{name} must be positive, got {v}")
        if self.dim not in (1, 2, 3):
            raise InputError(f"dim must be 1, 2 or 3, got {self.dim}")
        if self.start not in ("equilibrium", "quench"):
            raise InputError(f"start must be equilibrium or quench, got {self.start!r}")
        if self.start == "quench" and self.kind.startswith("softness"):
            raise InputError(f"start = \"quench\" is not defined for {self.kind} (softness models start from the "
                             "measured P(S; T)); use a barrier model for aging")
        if self.redraw not in ("stationary", "naive"):
            raise InputError(f"redraw must be stationary or naive, got {self.redraw!r}")
        for name in ("E0", "softening", "warmup", "eta0", "xi_kick", "r_c"):
            if not math.isfinite(getattr(self, name)):
                raise InputError(f"{name} must be finite, got {getattr(self, name)}")
        if self.kind in _FACILITATED and self.positions is None and self.L < 2:
            raise InputError(f"lattice side L must be >= 2, got {self.L}")
        if not (0 <= self.eta0 <= 1) or self.xi_kick <= 0 or self.r_c <= 0:
            raise InputError("kicks need 0 <= eta0 <= 1, xi_kick > 0, r_c > 0")
        if self.kind in _FACILITATED and self.positions is None and self.r_c >= self.L / 2:
            raise InputError(f"kick range r_c = {self.r_c} must be < L/2 = {self.L / 2} (else a site kicks itself "
                             "through the periodic box)")
        if self.warmup < 0:
            raise InputError(f"warmup must be >= 0, got {self.warmup}")

    @property
    def facilitated(self) -> bool:
        return self.kind in _FACILITATED

    def n_sites(self, n: int | None = None) -> int:
        """Number of sites: L^dim (facilitated lattice), len(positions) (off-lattice) or ``n``."""
        if self.facilitated:
            return int(self.positions.shape[0]) if self.positions is not None else int(self.L) ** self.dim
        if n is None or n < 1:
            raise InputError(f"number of traps N must be >= 1, got {n}")
        return int(n)

    # ------------------------------------------------------------------ laws at temperature T
    def check_temperature(self, T: float) -> None:
        """One-line error unless the model can run at T: positive, below a softness law's onset, above T0 for
        an equilibrium start of the Bouchaud model."""
        self.kernel_law(T)
        if self.kind == "bouchaud" and self.start == "equilibrium" and T <= self.T0:
            raise InputError(f"the Bouchaud model has no equilibrium for T <= T0 (T={T}, T0={self.T0}); "
                             "use start = \"quench\" for aging")

    def kernel_law(self, T: float) -> KernelLaw:
        """Rate and redraw law at temperature T in kernel form."""
        if not (isinstance(T, (int, float)) and math.isfinite(T) and T > 0):
            raise InputError(f"T must be positive, got T={T}")
        if self.kind.startswith("softness"):
            return self.law.kernel_law(T, self.redraw)
        c0, c1 = -math.log(self.tau0), -1.0 / T
        if self.kind == "bouchaud":
            return KernelLaw(c0=c0, c1=c1, lncap=math.inf, redraw_mode=0, p0=self.T0)
        return KernelLaw(c0=c0, c1=c1, lncap=math.inf, redraw_mode=1, p0=self.E0, p1=self.sigma_E)

    def kick(self, T: float) -> tuple[float, float, float]:
        """(mean, std, shift) of the facilitation kick."""
        if self.kind == "softness-facilitated":
            m, s = self.law.p_s(T)
            return m, s, self.softening
        return self.E0 + self.sigma_E**2 / T, self.sigma_E, self.softening

    def initial_states(self, T: float, n: int, rng: np.random.Generator) -> np.ndarray:
        """Initial barriers/softnesses (n,): the stationary law (``equilibrium``) or rho (``quench``)."""
        if self.kind == "bouchaud":
            if self.start == "quench":
                return rng.exponential(self.T0, n)
            self.check_temperature(T)
            return rng.exponential(1.0 / (1.0 / self.T0 - 1.0 / T), n)
        if self.kind in ("bouchaud-gaussian", "facilitated"):
            shift = self.sigma_E**2 / T if self.start == "equilibrium" else 0.0
            return rng.normal(self.E0 + shift, self.sigma_E, n)
        m, s = self.law.p_s(T)
        return rng.normal(m, s, n)

    def exact(self, T: float) -> dict[str, float]:
        """Exact results of the independent models at T (empty where none is known)."""
        if self.kind == "bouchaud" and T > self.T0:
            return {"mean_trapping_time": self.tau0 * T / (T - self.T0), "tail_exponent": 1.0 + T / self.T0}
        if self.kind == "bouchaud-gaussian":
            return {"mean_trapping_time": self.tau0 * math.exp(self.E0 / T + self.sigma_E**2 / (2 * T * T))}
        if self.kind == "softness" and self.redraw == "stationary":
            k = self.law.mean_rate(T)
            return {"mean_rate": k, "msd_slope": self.dim * self.b**2 * k}
        return {}

    def neighbours(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(nb_ptr, nb_idx, nb_eta, coords (N, dim), box (dim,)) of the facilitation graph."""
        if self.positions is not None:
            return offlattice_neighbours(self.positions, self.box, self.r_c, self.eta0, self.xi_kick)
        return lattice_neighbours(self.L, self.dim, self.r_c, self.eta0, self.xi_kick)

    def describe(self) -> dict[str, Any]:
        """JSON-able parameters (stored as provenance)."""
        d = {k: getattr(self, k) for k in ("kind", "T0", "E0", "sigma_E", "tau0", "b", "dim", "redraw", "start")}
        if self.facilitated:
            d.update({k: getattr(self, k) for k in ("L", "eta0", "xi_kick", "r_c", "softening", "warmup")})
            d["off_lattice"] = self.positions is not None
        if self.law is not None:
            d["softness_law"] = self.law.describe()
        return d


# ---------------------------------------------------------------------------------- neighbour graphs
def _csr(n: int, i: np.ndarray, j: np.ndarray, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.lexsort((j, i))
    i, j, eta = i[order], j[order], eta[order]
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.add.at(ptr, i + 1, 1)
    return np.cumsum(ptr), j.astype(np.int64), np.clip(eta, 0.0, 1.0).astype(np.float64)


def lattice_neighbours(L: int, dim: int, r_c: float, eta0: float, xi: float
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Kick graph of a periodic simple-cubic lattice (L^dim sites, spacing 1).

    Args:
        L: side; dim: dimension; r_c: kick range; eta0, xi: eta(r) = eta0 exp(-(r - 1)/xi).

    Returns:
        (nb_ptr (N+1,), nb_idx (E,), nb_eta (E,), coords (N, dim) float, box (dim,)).
    """
    n = L**dim
    coords = np.stack(np.unravel_index(np.arange(n), (L,) * dim), axis=1).astype(np.int64)
    R = int(math.floor(r_c))
    offs = np.stack(np.meshgrid(*([np.arange(-R, R + 1)] * dim), indexing="ij"), -1).reshape(-1, dim)
    r = np.sqrt((offs**2).sum(1))
    keep = (r > 0) & (r <= r_c + 1e-12)
    offs, r = offs[keep], r[keep]
    ii, jj, ee = [], [], []
    for o, rr in zip(offs, r, strict=True):
        nb = np.ravel_multi_index(tuple(((coords + o) % L).T), (L,) * dim)
        ii.append(np.arange(n))
        jj.append(nb)
        ee.append(np.full(n, eta0 * math.exp(-(rr - 1.0) / xi)))
    i_all, j_all, e_all = (np.concatenate(a) for a in (ii, jj, ee))
    # an offset and its image can coincide on tiny lattices: keep each pair once
    key = i_all * n + j_all
    _, first = np.unique(key, return_index=True)
    ptr, idx, eta = _csr(n, i_all[first], j_all[first], e_all[first])
    return ptr, idx, eta, coords.astype(np.float64), np.full(dim, float(L))


def offlattice_neighbours(positions: np.ndarray, box: np.ndarray, r_c: float, eta0: float, xi: float
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Kick graph of a periodic particle configuration: pairs within r_c (minimum image).

    Args:
        positions: (N, d) particle positions (LJ units); box: (d,) periodic box lengths;
        r_c, eta0, xi: as :func:`lattice_neighbours`, r in the positions' units.

    Returns:
        (nb_ptr, nb_idx, nb_eta, coords (N, d), box (d,)).
    """
    from scipy.spatial import cKDTree

    pos = np.asarray(positions, dtype=np.float64)
    box = np.asarray(box, dtype=np.float64)
    if pos.ndim != 2 or box.shape != (pos.shape[1],) or np.any(box <= 0):
        raise InputError(f"positions must be (N, d) with a positive box (d,), got {pos.shape} and {box.shape}")
    wrapped = np.mod(pos, box)
    tree = cKDTree(wrapped, boxsize=box)
    pairs = tree.query_pairs(r_c, output_type="ndarray")
    if pairs.size == 0:
        raise InputError(f"no particle pairs within r_c = {r_c}: no facilitation")
    d = wrapped[pairs[:, 1]] - wrapped[pairs[:, 0]]
    d -= box * np.round(d / box)
    r = np.sqrt((d**2).sum(1))
    eta = eta0 * np.exp(-(r - 1.0) / xi)
    if r.min() <= 0.0 or eta.max() > 1.0:  # the AR(1) kick needs 0 <= eta <= 1
        k = int(np.argmin(r))
        raise InputError(f"particles {int(pairs[k, 0])} and {int(pairs[k, 1])} are {r[k]:.3g} apart: kick strength "
                         f"eta = {eta[k]:.3g} > 1 (overlapping particles, or eta0 / xi_kick too large)")
    i = np.concatenate([pairs[:, 0], pairs[:, 1]])
    j = np.concatenate([pairs[:, 1], pairs[:, 0]])
    ptr, idx, e = _csr(pos.shape[0], i, j, np.concatenate([eta, eta]))
    return ptr, idx, e, wrapped, box


# ---------------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class TrapRun:
    """One KMC run at one temperature.

    Attributes:
        T: temperature.
        times: (n_t,) sampling times (only those reached).
        displacements: (n_t, N, dim) displacement of every site at the sampling times.
        nhop: (n_t, N) int64 rearrangement counts at the sampling times.
        states: (n_t, N) barrier/softness at the sampling times.
        t_first: (N,) time of the first rearrangement (inf: none during the run).
        final_states: (N,) states at the end.
        waiting_times: (n_w,) completed waiting times of traps entered during the run.
        censored: (n_c,) ages of the traps entered during the run and still occupied at the end.
        t_end: time reached; n_events: events (after warm-up); wall_s: run time (s);
        events_per_s: KMC throughput; truncated: stopped by ``max_events`` before ``p_stop``.
        coords, box: site coordinates (N, dim) and periodic box for facilitated models (else None).
        seed: the seed of the run.
        initial_states: (N,) barrier/softness of every site at t = 0.
        persistence_all: (n_t,) persistence averaged over all time origins in [0, t_end - t] (exact for a
            stationary process; far better statistics at short times than the single-origin ``nhop``).
    """

    T: float
    times: np.ndarray
    displacements: np.ndarray
    nhop: np.ndarray
    states: np.ndarray
    t_first: np.ndarray
    final_states: np.ndarray
    waiting_times: np.ndarray
    censored: np.ndarray
    t_end: float
    n_events: int
    wall_s: float
    events_per_s: float
    truncated: bool
    coords: np.ndarray | None
    box: np.ndarray | None
    seed: int
    persistence_all: np.ndarray
    initial_states: np.ndarray


def _time_grid(k0: np.ndarray, p_stop: float, n_per_decade: int, t_max: float | None) -> np.ndarray:
    """Log-spaced sampling times from the initial rates k0: from 0.02/k_fast to the time at which the
    exact first-escape persistence <exp(-k0 t)> of the initial traps falls to p_stop (x 1.5)."""
    k_fast = float(np.quantile(k0, 0.999))
    if not (math.isfinite(k_fast) and k_fast > 0):
        raise InputError(f"the initial escape rates are {k_fast:g} (barriers E/T beyond ~700 underflow exp(-E/T)): "
                         "lower E0 or sigma_E, or raise T")
    lo = 0.02 / k_fast
    if t_max is None:
        a, b = math.log(lo), math.log(lo) + 1.0
        while np.mean(np.exp(-k0 * math.exp(b))) > p_stop and b < 700:
            a, b = b, b + 2.0
        for _ in range(60):
            c = 0.5 * (a + b)
            if np.mean(np.exp(-k0 * math.exp(c))) > p_stop:
                a = c
            else:
                b = c
        t_max = 1.5 * math.exp(b)
    if not t_max > lo:
        lo = t_max * 1e-4
    n = max(2, int(math.ceil(n_per_decade * math.log10(t_max / lo))) + 1)
    return np.geomspace(lo, t_max, n)


_STATE_KEYS = ("T", "N", "times", "x", "x_init", "pos", "nhop", "t_first", "t_last", "gap_acc", "snap_pos",
               "snap_nhop", "snap_x", "waiting_times", "wt_capacity", "t", "m", "n_events", "n_wt", "rng_state",
               "wall_s", "run_wall_s")


def _check_state(state: dict[str, Any], T: float, N: int) -> None:
    """A saved state must be whole and of this temperature and size (one-line errors)."""
    missing = [k for k in _STATE_KEYS if k not in state]
    if missing:
        raise InputError(f"the saved trap-model state lacks {', '.join(missing)}: delete the checkpoint")
    if float(state["T"]) != float(T) or int(state["N"]) != N:
        raise InputError(f"the saved trap-model state is of T={float(state['T']):g}, N={int(state['N'])}, not of "
                         f"T={float(T):g}, N={N}")


def simulate(model: TrapModel, T: float, n: int | None = None, seed: int | np.random.Generator = 0,
             times: np.ndarray | None = None, t_max: float | None = None, p_stop: float = 0.05,
             n_per_decade: int = 8, max_events: int = 500_000_000, record_waiting: int = 0,
             progress: Callable[[float], None] | None = None, chunk_events: int = 2_000_000,
             resume: dict[str, Any] | None = None, save_state: Callable[[dict[str, Any]], None] | None = None,
             save_every_s: float = 60.0) -> TrapRun:
    """Run one KMC simulation of ``model`` at temperature ``T``.

    The run starts at t = 0 from the model's stationary law (``start="equilibrium"``, after a warm-up for
    ``facilitated``) and stops at the last sampling time, or earlier once fewer than ``p_stop`` of the
    sites have never rearranged (all correlation functions have then decayed).

    Args:
        model: the trap model.
        T: temperature (units of the barriers; the softness law's units).
        n: number of traps (independent models; lattice models use L^dim).
        seed: int seed or ``np.random.Generator``.
        times: sampling times (default: log-spaced, 8 per decade, from the fastest initial rate to the
            time at which the first-escape persistence reaches p_stop).
        t_max: last sampling time of the default grid (default: automatic).
        p_stop: stop once this fraction of sites has never rearranged (0: run to the last time); the
            default grid also ends where the first-escape persistence reaches it.
        n_per_decade: sampling density of the default grid.
        max_events: event budget (``truncated`` is set when it stops the run).
        record_waiting: capacity of the waiting-time record (0: none).
        progress: callback receiving the fraction of the run done (log-time), in increments.
        chunk_events: events per kernel call (progress, checkpoint and interruption granularity).
        resume: a state handed to ``save_state`` by an interrupted run of the same model, T, N and options:
            the run continues from it (from the same random stream: the result is that of the uninterrupted
            run, bit for bit). ``seed`` must be a ``np.random.Generator`` of the same kind (its state is
            overwritten) or an int.
        save_state: called with the run's whole state (a dict of arrays and scalars) between kernel calls at
            least ``save_every_s`` wall seconds apart, and at the first call boundary after a Ctrl-C, after
            which the run raises KeyboardInterrupt (a second Ctrl-C stops at once). Without it a Ctrl-C
            stops at once. The warm-up of a facilitated model is not saved (an interrupted one starts over).
        save_every_s: wall seconds between two states.

    Returns:
        the :class:`TrapRun`.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    seed_int = int(seed) if not isinstance(seed, np.random.Generator) else -1
    if not (isinstance(T, (int, float)) and math.isfinite(T) and T > 0):
        raise InputError(f"T must be positive, got T={T}")
    N = model.n_sites(n)
    law = model.kernel_law(T)
    if resume is not None:
        _check_state(resume, T, N)
        x = np.array(resume["x"], np.float64)
    else:
        x = model.initial_states(T, N, rng)
    if model.facilitated:
        nb_ptr, nb_idx, nb_eta, coords, box = model.neighbours()
        if coords.shape[0] != N:
            raise InputError("facilitation graph and number of sites disagree")
        kmean, kstd, kshift = model.kick(T)
    else:
        nb_ptr, nb_idx, nb_eta = np.zeros(N + 1, np.int64), np.zeros(0, np.int64), np.zeros(0)
        coords = box = None
        kmean, kstd, kshift = 0.0, 1.0, 0.0
    d = model.dim if model.positions is None else int(model.positions.shape[1])
    lawargs = (law.c0, law.c1, law.lncap, law.tab_x0, law.tab_dx, np.ascontiguousarray(law.tab, np.float64),
               int(law.redraw_mode), law.p0, law.p1, np.ascontiguousarray(law.rp, np.float64),
               np.ascontiguousarray(law.cdf_x, np.float64),
               np.ascontiguousarray(law.cdf, np.float64))
    nbargs = (nb_ptr, nb_idx, nb_eta, float(kmean), float(kstd), float(kshift))

    def _lnk(xx: np.ndarray) -> np.ndarray:
        if law.tab.size:
            v = np.interp(xx, law.tab_x0 + law.tab_dx * np.arange(law.tab.size), law.tab)
        else:
            v = law.c0 + law.c1 * xx
        return np.minimum(v, law.lncap)

    empty_t = np.zeros(0)
    wall0 = time.perf_counter()
    if model.facilitated and model.warmup > 0 and resume is None:  # warm-up to the facilitated steady state
        pos = np.zeros((N, d))
        nh = np.zeros(N, np.int64)
        tf = np.full(N, -1.0)
        tl = np.full(N, -1.0)
        t = 0.0
        ev = 0
        while ev < max_events:
            t, _, ne, _ = kmc_run(x, pos, nh, tf, tl, t, math.inf, chunk_events, *lawargs, *nbargs, model.b,
                                  empty_t, 0, np.zeros((0, N, d)), np.zeros((0, N), np.int64), np.zeros((0, N)),
                                  empty_t, 0, empty_t, int(rng.integers(2**31 - 1)))
            ev += ne
            if np.mean(nh == 0) < p_stop:
                break
        if model.warmup > 1:
            t_more = t * (model.warmup - 1.0)
            t, _, ne, _ = kmc_run(x, pos, nh, tf, tl, t, t + t_more, max_events, *lawargs, *nbargs, model.b,
                                  empty_t, 0, np.zeros((0, N, d)), np.zeros((0, N), np.int64), np.zeros((0, N)),
                                  empty_t, 0, empty_t, int(rng.integers(2**31 - 1)))
    if resume is not None:
        times = np.array(resume["times"], np.float64)
    elif times is None:
        times = _time_grid(np.exp(_lnk(x)), max(p_stop, 1e-3), n_per_decade, t_max)
    times = np.ascontiguousarray(times, dtype=np.float64)
    x_init = x.copy() if resume is None else np.array(resume["x_init"], np.float64)
    if times.ndim != 1 or times.size < 2 or np.any(np.diff(times) <= 0) or times[0] <= 0:
        raise InputError("sampling times must be positive and increasing")
    n_t = times.size
    pos = np.zeros((N, d))
    nhop = np.zeros(N, np.int64)
    t_first = np.full(N, -1.0)
    t_last = np.full(N, -1.0)
    snap_pos = np.zeros((n_t, N, d))
    snap_nhop = np.zeros((n_t, N), np.int64)
    snap_x = np.zeros((n_t, N))
    wt = np.zeros(int(record_waiting))
    gap_acc = np.zeros(n_t)
    n_wt = 0
    t, m, n_ev = 0.0, 0, 0
    wall_before = 0.0  # run and warm-up time of the interrupted part (s)
    if resume is not None:
        t, m, n_ev, n_wt = float(resume["t"]), int(resume["m"]), int(resume["n_events"]), int(resume["n_wt"])
        if resume["pos"].shape != pos.shape or int(resume["wt_capacity"]) != wt.size:
            raise InputError("the saved trap-model state has another shape (dimension or waiting-time record) "
                             "than this run")
        pos[:] = resume["pos"]
        nhop[:], t_first[:], t_last[:], gap_acc[:] = (resume["nhop"], resume["t_first"], resume["t_last"],
                                                      resume["gap_acc"])
        snap_pos[:m], snap_nhop[:m], snap_x[:m] = resume["snap_pos"], resume["snap_nhop"], resume["snap_x"]
        wt[:n_wt] = resume["waiting_times"]
        rng.bit_generator.state = json.loads(str(resume["rng_state"]))
        wall_before = float(resume["wall_s"])
        run_wall_before = float(resume["run_wall_s"])
    else:
        run_wall_before = 0.0
    truncated = False
    t0_run = time.perf_counter()
    wall_before += t0_run - wall0  # (the warm-up of a fresh run)
    lt0, lt1 = math.log(times[0]), math.log(times[-1])

    def _fraction() -> float:
        return min(1.0, max(0.0, (math.log(t) - lt0) / (lt1 - lt0))) if t > 0 else 0.0

    def _state() -> dict[str, Any]:
        now = time.perf_counter() - t0_run
        return {"T": float(T), "N": N, "times": times, "x": x.copy(), "x_init": x_init, "pos": pos.copy(),
                "nhop": nhop.copy(), "t_first": t_first.copy(), "t_last": t_last.copy(), "gap_acc": gap_acc.copy(),
                "snap_pos": snap_pos[:m].copy(), "snap_nhop": snap_nhop[:m].copy(), "snap_x": snap_x[:m].copy(),
                "waiting_times": wt[:n_wt].copy(), "wt_capacity": wt.size, "t": t, "m": m, "n_events": n_ev,
                "n_wt": n_wt, "rng_state": json.dumps(rng.bit_generator.state), "wall_s": wall_before + now,
                "run_wall_s": run_wall_before + now}

    done_frac = _fraction()
    if progress is not None and done_frac > 0:
        progress(done_frac)
    last_save = time.perf_counter()
    with DeferredInterrupt(active=save_state is not None) as interrupted:
        while True:
            budget = min(chunk_events, max_events - n_ev)
            if budget <= 0:
                truncated = True
                break
            t, m, ne, n_wt = kmc_run(x, pos, nhop, t_first, t_last, t, float(times[-1]), budget, *lawargs,
                                     *nbargs, model.b, times, m, snap_pos, snap_nhop, snap_x, wt, n_wt, gap_acc,
                                     int(rng.integers(2**31 - 1)))
            n_ev += ne
            if progress is not None and t > 0:
                f = _fraction()
                progress(f - done_frac)
                done_frac = f
            if t >= times[-1] or ne == 0:
                break
            if p_stop > 0 and np.mean(nhop == 0) < p_stop:
                # fill the remaining snapshot up to the current time and stop
                while m < n_t and times[m] <= t:
                    snap_pos[m], snap_nhop[m], snap_x[m] = pos, nhop, x
                    m += 1
                break
            if save_state is not None and (interrupted.seen or time.perf_counter() - last_save >= save_every_s):
                save_state(_state())
                last_save = time.perf_counter()
            if interrupted.seen:
                raise KeyboardInterrupt
    run_wall = run_wall_before + time.perf_counter() - t0_run
    if progress is not None and done_frac < 1.0:
        progress(1.0 - done_frac)
    tf = np.where(t_first >= 0, t_first, np.inf)
    cens = (t - t_last[t_last >= 0]).copy()
    open_gaps = t - np.maximum(t_last, 0.0)  # the intervals still open at the end
    gap_acc += np.maximum(0.0, open_gaps[None, :] - times[:, None]).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_all = np.where(times < t, gap_acc / (N * (t - times)), np.nan)
    return TrapRun(T=float(T), times=times[:m].copy(), displacements=snap_pos[:m], nhop=snap_nhop[:m],
                   states=snap_x[:m], t_first=tf, final_states=x, waiting_times=wt[:n_wt].copy(), censored=cens,
                   t_end=float(t), n_events=int(n_ev), wall_s=wall_before + time.perf_counter() - t0_run,
                   events_per_s=n_ev / run_wall if run_wall > 0 else float("nan"), truncated=truncated,
                   coords=coords, box=box, seed=seed_int, persistence_all=p_all[:m].copy(),
                   initial_states=x_init)


# ---------------------------------------------------------------------------------- configs
_KEYS = {f for f in TrapModel.__dataclass_fields__ if f not in ("law", "positions", "box")}


def load_trap_model(kind: str, config: dict[str, Any] | None = None,
                    softness_law: str | os.PathLike[str] | None = None, **overrides: Any) -> TrapModel:
    """Build a :class:`TrapModel` from a config mapping (the ``[params]`` table of a TOML file) and overrides.

    Args:
        kind: model kind (:data:`MODELS`).
        config: parameters (keys of :class:`TrapModel`; ``softness_law`` may name a law file or hold the
            law's table; ``input`` a configuration file for off-lattice facilitation).
        softness_law: law file or name (wins over the config's).
        **overrides: parameters that win over the config (None values ignored).

    Returns:
        the model.
    """
    cfg = dict(config or {})
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    law_src = softness_law if softness_law is not None else cfg.pop("softness_law", None)
    cfg.pop("softness_law", None)
    inp = cfg.pop("input", None)
    unknown = sorted(set(cfg) - _KEYS)
    if unknown:
        raise InputError(f"unknown trap-model parameter(s): {', '.join(unknown)} (allowed: {', '.join(sorted(_KEYS))})")
    given = {k: k for k in cfg} | ({"softness_law": "softness_law"} if law_src is not None else {}) | (
        {"input": "input"} if inp is not None else {})
    msg = unused_options(kind, given, off_lattice=inp is not None)
    if msg:  # a parameter the model does not use would be ignored silently
        raise InputError(msg)
    cfg = check_types(cfg, type_hints(TrapModel), "trap-model parameters")
    law = load_softness_law(law_src) if law_src is not None else None
    if kind.startswith("softness") and law is None:
        law = load_softness_law("softness_systemIII")
    positions = box = None
    if inp is not None:
        from glassgen.systems.io import read_configuration

        conf = read_configuration(inp)
        positions, box = np.asarray(conf.positions, np.float64), np.asarray(conf.box, np.float64)
        if cfg.get("dim") is not None and int(cfg["dim"]) != positions.shape[1]:
            raise InputError(f"dim = {cfg['dim']} but {inp} is {positions.shape[1]}D (dim comes from the input)")
        cfg["dim"] = positions.shape[1]
    try:
        return TrapModel(kind=kind, law=law, positions=positions, box=box, **cfg)
    except TypeError as exc:
        raise InputError(f"bad trap-model parameters: {exc}") from None


def with_params(model: TrapModel, **kw: Any) -> TrapModel:
    """A copy of ``model`` with some parameters replaced."""
    return replace(model, **kw)
