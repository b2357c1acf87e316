r"""Self time correlations of a trajectory: MSD, self intermediate scattering F_s(q, t), non-Gaussian alpha_2.

Input is a trajectory of UNWRAPPED positions ``(F, N, d)`` with times ``(F,)``: the displacement
``dr_i = r_i(t0 + t) - r_i(t0)`` is taken as is, never through the minimum image (a particle may move
more than L/2). ``wrapped_input=True`` first unwraps a trajectory folded into the box, assuming no
particle moves more than L/2 between consecutive frames (:func:`unwrap`).

Definitions (per species s, averaged over the particles i of s and over the time origins t0):

- MSD(t) = < |dr_i(t)|^2 >
- F_s(q, t) = < sin(q |dr_i|) / (q |dr_i|) > in 3D and < J_0(q |dr_i|) > in 2D: the exact isotropic
  average of exp(i q . dr_i) over the directions of q at fixed |q| = q (no lattice q-vectors).
- alpha_2(t) = d / (d + 2) < |dr|^4 > / < |dr|^2 >^2 - 1 (0 for Gaussian displacements;
  -2 / (d + 2) when every particle moved exactly the same distance).

Time origins (``origins`` argument):

- ``"first"`` (default): frame 0 is the only origin; lags are ``times - times[0]``; any spacing.
- ``"all"``: every frame is an origin; needs equally spaced frames (steps or times); lag k frames is
  averaged over the F - k origins.
- a :class:`~glassgen.observables.schedule.BlockLogSchedule` (needs ``steps``) or explicit
  :class:`~glassgen.observables.schedule.LagPairs`: several origins with log-spaced lags.

Results of all-particle averages weight every particle equally (species by their number).
``reset=False`` adds another trajectory (an independent run or replica) with the same lag grid.

Centre-of-mass drift (``remove_drift``, default True): every displacement is taken relative to the mean
displacement of all particles, dr_i - (1/N) sum_j dr_j (the centre of mass for equal masses, as in the KA
models). MD conserves momentum, so this changes nothing there; Monte Carlo does not, and its centre of
mass random-walks with 1/N of the bare single-particle mobility whatever the caging. At N ~ 50 that drift
alone decays F_s: KA2D N = 43 at T = 0.3, 4 Metropolis chains, F_s(2 pi) crosses 1/e at 3800 sweeps in the
laboratory frame and not within 12 000 sweeps in the centre-of-mass frame (2026-12-06). Before that date
every MC and PGMC tau_alpha of this package was measured in the laboratory frame.

tau_alpha: :func:`tau_alpha` interpolates F_s linearly in log(t) at the first downward crossing of
the threshold (1/e by default). This is our definition; published tau_alpha values (GlassBench)
are labels of a time grid, not all of them 1/e crossings (see shared/REFERENCE.md, section 2).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from scipy.special import j0

from glassgen.errors import InputError
from glassgen.observables._base import _guard, write_columns
from glassgen.observables.overlap import OVERLAP_RADIUS
from glassgen.observables.schedule import (
    BlockLogSchedule,
    LagPairs,
    lag_pairs_all_origins,
    lag_pairs_from_steps,
    lag_pairs_single_origin,
)

__all__ = ["MSD", "SelfIntermediateScattering", "NonGaussian", "FourPointSusceptibility", "tau_alpha",
           "relaxation_time", "unwrap", "batched_self_correlations", "default_q"]


def default_q(dim: int) -> float:
    """Wavenumber of F_s used for tau_alpha when none is given: 7.25 in 3D (the KA A-A peak), 2 pi in 2D
    (sigma_AA = 1; KA2D)."""
    return 7.25 if int(dim) == 3 else 2.0 * float(np.pi)

_CHUNK_ELEMENTS = 1 << 22  # (pairs x N x d) doubles per vectorised chunk (~32 MB)


def unwrap(positions: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Unwrap a trajectory folded into a periodic box.

    Each frame-to-frame displacement is taken through the minimum image and accumulated, so the
    result is exact only if no particle moves more than L/2 (per axis) between consecutive frames.

    Args:
        positions: (F, N, d) wrapped positions.
        box: (d,) box lengths (constant).

    Returns:
        (F, N, d) unwrapped positions, equal to the input at frame 0.
    """
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 3:
        raise InputError(f"positions must have shape (F, N, d), got {pos.shape}")
    box = np.broadcast_to(np.asarray(box, dtype=np.float64), (pos.shape[2],))
    step = np.diff(pos, axis=0)
    step -= box * np.round(step / box)
    out = np.empty_like(pos)
    out[0] = pos[0]
    np.cumsum(step, axis=0, out=out[1:])
    out[1:] += pos[0]
    return out


def tau_alpha(times: np.ndarray, fs: np.ndarray, threshold: float = float(np.exp(-1.0))) -> Any:
    """Relaxation time: where F_s first falls to ``threshold``, interpolated linearly in log(t).

    Between the last point above and the first point at or below the threshold, (log t, F_s) is
    interpolated linearly; if the point above is at t <= 0 (e.g. t = 0, F_s = 1), (t, F_s) is
    interpolated linearly instead. Only the first downward crossing counts.

    Args:
        times: (T,) increasing lag times.
        fs: (T,) or (..., T) correlation values (e.g. ``fs_by_species``).
        threshold: level defining tau_alpha (default 1/e).

    Returns:
        tau_alpha as a float (or an array of shape ``fs.shape[:-1]``). NaN where F_s never reaches
        the threshold within the data (run longer), where it is already at or below it at the first
        time (crossing not resolved), or where the series is NaN; no exception is raised.
    """
    t = np.asarray(times, dtype=np.float64)
    f = np.asarray(fs, dtype=np.float64)
    if t.ndim != 1 or f.shape[-1:] != t.shape:
        raise InputError(f"times (T,) and fs (..., T) must agree, got {t.shape} and {f.shape}")
    if np.any(np.diff(t) <= 0):
        raise InputError("times must be strictly increasing")
    flat = f.reshape(-1, t.size)
    out = np.full(flat.shape[0], np.nan)
    for s, y in enumerate(flat):
        below = np.nonzero(y <= threshold)[0]
        if below.size == 0 or below[0] == 0:
            continue
        k = below[0]
        y0, y1 = y[k - 1], y[k]
        if not (np.isfinite(y0) and np.isfinite(y1)):
            continue
        w = (y0 - threshold) / (y0 - y1)
        t0, t1 = t[k - 1], t[k]
        if t0 > 0:
            out[s] = float(np.exp(np.log(t0) + w * (np.log(t1) - np.log(t0))))
        else:
            out[s] = t0 + w * (t1 - t0)
    if f.ndim == 1:
        return float(out[0])
    return out.reshape(f.shape[:-1])


class _SelfCorrelation:
    """Shared machinery: origins, lag grouping, per-species accumulation of per-particle quantities."""

    _n_quantities = 1
    _analysis = "self_correlation"

    def __init__(self, origins: str | LagPairs | BlockLogSchedule = "first", *, max_lag: int | None = None,
                 wrapped_input: bool = False, n_species: int | None = None, remove_drift: bool = True) -> None:
        if (isinstance(origins, str) and origins not in ("first", "all")) or not isinstance(
                origins, (str, LagPairs, BlockLogSchedule)):
            raise InputError("origins must be 'first', 'all', a BlockLogSchedule or LagPairs, "
                             f"got {origins!r}")
        if max_lag is not None and int(max_lag) < 0:
            raise InputError(f"max_lag must be >= 0, got {max_lag}")
        if n_species is not None and int(n_species) < 1:
            raise InputError(f"n_species must be >= 1, got {n_species}")
        self.origins = origins
        self.max_lag = None if max_lag is None else int(max_lag)
        self.wrapped_input = bool(wrapped_input)
        self.remove_drift = bool(remove_drift)
        self._n_species_arg = None if n_species is None else int(n_species)
        self._reset()

    def _reset(self) -> None:
        self._nsp: int | None = self._n_species_arg
        self._dim: int | None = None
        self._sums: np.ndarray | None = None  # (n_quantities, nsp, n_lags)
        self._counts: np.ndarray | None = None  # (nsp, n_lags) particle-origin samples
        self._n_origins: np.ndarray | None = None  # (n_lags,)
        self._lag_times: np.ndarray | None = None
        self._lag_steps: np.ndarray | None = None
        self._n_runs = 0

    # per-particle quantities from squared displacements r2 (P, N) -> (n_quantities, P, N)
    def _quantities(self, r2: np.ndarray, dim: int) -> list[np.ndarray]:
        raise NotImplementedError

    def _accumulate_samples(self, g: int, r2: np.ndarray, spec: np.ndarray, per_species: np.ndarray) -> None:
        """Per-(origin, frame) statistics of lag group ``g`` beyond particle averages (fluctuations);
        r2 (P, N), spec (N,), per_species (nsp,) particle counts. None by default."""

    def _pairs(self, n_frames: int, times: np.ndarray, steps: np.ndarray | None) -> LagPairs:
        o = self.origins
        if isinstance(o, LagPairs):
            pairs = o
        elif isinstance(o, BlockLogSchedule):
            if steps is None:
                raise InputError("origins given as a BlockLogSchedule need the stored steps (steps=...)")
            pairs = o.lag_pairs(steps)
        elif o == "first":
            pairs = lag_pairs_single_origin(n_frames)
            if self.max_lag is not None:
                keep = pairs.lag_index <= self.max_lag
                pairs = LagPairs(pairs.origin[keep], pairs.frame[keep], pairs.lag_index[keep],
                                 pairs.lags[: self.max_lag + 1])
        else:  # "all"
            spacing = np.diff(steps) if steps is not None else np.diff(times)
            if spacing.size and not np.allclose(spacing, spacing[0], rtol=1e-6, atol=0):
                raise InputError("origins='all' needs equally spaced frames; use origins='first', a "
                                 "BlockLogSchedule or LagPairs for log-spaced frames")
            pairs = lag_pairs_all_origins(n_frames, self.max_lag)
        if pairs.origin.size and pairs.frame.max() >= n_frames:
            raise InputError(f"lag pairs refer to frame {int(pairs.frame.max())} but the trajectory has "
                             f"{n_frames} frames")
        return pairs

    def compute(self, times: np.ndarray, positions: np.ndarray, species: np.ndarray | None = None,
                box: np.ndarray | None = None, reset: bool = True, steps: np.ndarray | None = None) -> Any:
        """Accumulate the correlation over the trajectory's (origin, frame) pairs.

        Args:
            times: (F,) strictly increasing frame times (time units).
            positions: (F, N, d) float positions, unwrapped (or wrapped with ``wrapped_input=True``).
            species: (N,) int species indices, 0-based (default: all 0).
            box: (d,) box lengths; only needed with ``wrapped_input=True``.
            reset: if True, forget previous data; if False, add this trajectory (same lag grid).
            steps: (F,) int MD steps of the frames; needed for a BlockLogSchedule, used by
                ``origins='all'`` to check the spacing, and stored as :attr:`lag_steps`.

        Returns:
            self.
        """
        t = np.asarray(times, dtype=np.float64)
        pos = np.asarray(positions, dtype=np.float64)
        if pos.ndim != 3 or pos.shape[2] not in (2, 3):
            raise InputError(f"positions must have shape (F, N, d) with d in (2, 3), got {pos.shape}")
        nf, n, d = pos.shape
        if t.shape != (nf,):
            raise InputError(f"times must have shape ({nf},), got {t.shape}")
        if nf > 1 and np.any(np.diff(t) <= 0):
            raise InputError("times must be strictly increasing")
        if not np.all(np.isfinite(pos)):
            raise InputError("positions contain NaN or infinite values")
        st = None
        if steps is not None:
            st = np.asarray(steps, dtype=np.int64)
            if st.shape != (nf,):
                raise InputError(f"steps must have shape ({nf},), got {st.shape}")
        spec = np.zeros(n, dtype=np.int64) if species is None else np.asarray(species)
        if spec.shape != (n,) or not np.issubdtype(spec.dtype, np.integer) or (n and spec.min() < 0):
            raise InputError(f"species must be non-negative integers of shape ({n},)")
        spec = spec.astype(np.int64)
        if self.wrapped_input:
            if box is None:
                raise InputError("wrapped_input=True needs the box lengths")
            pos = unwrap(pos, box)
        if self.remove_drift:  # displacements relative to the mean displacement (centre of mass, equal masses)
            pos = pos - pos.mean(axis=1, keepdims=True)

        if reset:
            self._reset()
        if self._dim is not None and self._dim != d:
            raise InputError(f"cannot accumulate {d}D data onto {self._dim}D data")
        nsp = int(spec.max()) + 1 if self._nsp is None else self._nsp
        if spec.max() >= nsp:
            raise InputError(f"species index {int(spec.max())} out of range for n_species = {nsp}")

        pairs = self._pairs(nf, t, st)
        groups = pairs.groups()
        lag_times = np.empty(pairs.n_lags)
        lag_steps = None if st is None else np.empty(pairs.n_lags, dtype=np.int64)
        for g, (o, f) in enumerate(groups):
            if o.size == 0:
                raise InputError(f"lag {pairs.lags[g]} has no (origin, frame) pair")
            dt = t[f] - t[o]
            if np.ptp(dt) > 1e-6 * max(abs(dt[0]), 1e-300) + 1e-12:
                raise InputError(f"pairs of lag {pairs.lags[g]} span different time differences "
                                 f"({dt.min()} .. {dt.max()})")
            lag_times[g] = dt.mean()
            if lag_steps is not None:
                ds = st[f] - st[o]
                if np.any(ds != ds[0]):
                    raise InputError(f"pairs of lag {pairs.lags[g]} span different step differences")
                lag_steps[g] = ds[0]

        if self._sums is None:
            self._nsp, self._dim = nsp, d
            self._sums = np.zeros((self._n_quantities, nsp, pairs.n_lags))
            self._counts = np.zeros((nsp, pairs.n_lags))
            self._n_origins = np.zeros(pairs.n_lags, dtype=np.int64)
            self._lag_times = lag_times
            self._lag_steps = lag_steps
        elif lag_times.shape != self._lag_times.shape or not np.allclose(lag_times, self._lag_times,
                                                                           rtol=1e-9, atol=1e-12):
            raise InputError("reset=False needs the same lag times as the data already accumulated")

        per_species = np.bincount(spec, minlength=nsp).astype(np.float64)
        chunk = max(1, _CHUNK_ELEMENTS // max(1, n * d))
        for g, (o, f) in enumerate(groups):
            for a in range(0, o.size, chunk):
                oc, fc = o[a:a + chunk], f[a:a + chunk]
                dr = pos[fc] - pos[oc]  # (P, N, d), unwrapped: no minimum image
                r2 = np.einsum("pnk,pnk->pn", dr, dr)
                for qi, q in enumerate(self._quantities(r2, d)):
                    self._sums[qi, :, g] += np.bincount(spec, weights=q.sum(axis=0), minlength=nsp)
                self._counts[:, g] += per_species * oc.size
                self._accumulate_samples(g, r2, spec, per_species)
            self._n_origins[g] += o.size
        self._n_runs += 1
        return self

    def compute_trajectory(self, trajectory: Any, species: np.ndarray | None = None,
                           box: np.ndarray | None = None, reset: bool = True) -> Any:
        """:meth:`compute` on a :class:`~glassgen.dynamics.results.Trajectory` (uses its steps)."""
        return self.compute(trajectory.times, trajectory.positions, species, box, reset=reset,
                            steps=getattr(trajectory, "steps", None))

    # ----------------------------------------------------------------- results
    def _mean(self, qi: int) -> tuple[np.ndarray, np.ndarray]:
        sums = _guard(self, self._sums, "result")
        with np.errstate(invalid="ignore", divide="ignore"):
            by = sums[qi] / self._counts
            tot = sums[qi].sum(axis=0) / self._counts.sum(axis=0)
        return tot, by

    @property
    def lag_times(self) -> np.ndarray:
        """(n_lags,) lag times t (time units), increasing from 0."""
        return _guard(self, self._lag_times, "lag_times").copy()

    @property
    def lag_steps(self) -> np.ndarray | None:
        """(n_lags,) lags in MD steps, or None if no steps were given."""
        _guard(self, self._lag_times, "lag_steps")
        return None if self._lag_steps is None else self._lag_steps.copy()

    @property
    def n_origins(self) -> np.ndarray:
        """(n_lags,) number of time origins averaged at each lag (summed over accumulated runs)."""
        return _guard(self, self._n_origins, "n_origins").copy()

    @property
    def n_samples(self) -> np.ndarray:
        """(nsp, n_lags) number of (particle, origin) samples per species and lag."""
        return _guard(self, self._counts, "n_samples").copy()

    @property
    def n_species(self) -> int:
        """Number of species."""
        return int(_guard(self, self._nsp, "n_species"))

    def _columns(self) -> tuple[list[np.ndarray], list[str]]:
        raise NotImplementedError

    def write(self, path: str | os.PathLike[str], **meta: Any) -> None:
        """Write ``t value value_s...`` columns with a provenance header (atomic)."""
        cols, names = self._columns()
        extra = {"q": getattr(self, "q", None)}
        write_columns(path, [self.lag_times, *cols], ["t", *names], analysis=self._analysis,
                      origins=self.origins if isinstance(self.origins, str) else type(self.origins).__name__,
                      n_runs=self._n_runs, **extra, **meta)


class MSD(_SelfCorrelation):
    """Mean-squared displacement MSD(t) = <|r_i(t0 + t) - r_i(t0)|^2> (length^2 units).

    Args:
        origins: ``"first"`` (default), ``"all"``, a BlockLogSchedule or LagPairs (module docstring).
        max_lag: largest lag in frames for ``"first"``/``"all"`` (default: all).
        wrapped_input: unwrap a wrapped trajectory first (see :func:`unwrap`).
        n_species: number of species (default ``species.max() + 1``).
    """

    _n_quantities = 1
    _analysis = "msd"

    def _quantities(self, r2: np.ndarray, dim: int) -> list[np.ndarray]:
        return [r2]

    @property
    def msd(self) -> np.ndarray:
        """(n_lags,) MSD over all particles."""
        return self._mean(0)[0]

    @property
    def msd_by_species(self) -> np.ndarray:
        """(nsp, n_lags) MSD per species (NaN for an absent species)."""
        return self._mean(0)[1]

    def _columns(self) -> tuple[list[np.ndarray], list[str]]:
        by = self.msd_by_species
        return [self.msd, *by], ["msd", *[f"msd_{s}" for s in range(by.shape[0])]]


class SelfIntermediateScattering(_SelfCorrelation):
    """Self intermediate scattering function F_s(q, t), isotropically averaged (dimensionless).

    3D: <sin(q r) / (q r)>; 2D: <J_0(q r)>, r = |r_i(t0 + t) - r_i(t0)|.

    Args:
        q: wavenumber (inverse length), e.g. 7.25 for KA A particles at rho = 1.2.
        origins, max_lag, wrapped_input, n_species: as for :class:`MSD`.
    """

    _n_quantities = 1
    _analysis = "fs"

    def __init__(self, q: float, origins: str | LagPairs | BlockLogSchedule = "first", *,
                 max_lag: int | None = None, wrapped_input: bool = False,
                 n_species: int | None = None, remove_drift: bool = True) -> None:
        if not (np.isfinite(q) and q > 0):
            raise InputError(f"q must be positive, got {q}")
        self.q = float(q)
        super().__init__(origins, max_lag=max_lag, wrapped_input=wrapped_input, n_species=n_species,
                         remove_drift=remove_drift)

    def _quantities(self, r2: np.ndarray, dim: int) -> list[np.ndarray]:
        qr = self.q * np.sqrt(r2)
        if dim == 3:
            return [np.sinc(qr / np.pi)]  # sin(qr)/(qr), = 1 at r = 0
        return [j0(qr)]

    @property
    def fs(self) -> np.ndarray:
        """(n_lags,) F_s over all particles."""
        return self._mean(0)[0]

    @property
    def fs_by_species(self) -> np.ndarray:
        """(nsp, n_lags) F_s per species (NaN for an absent species)."""
        return self._mean(0)[1]

    def tau_alpha(self, threshold: float = float(np.exp(-1.0)), species: int | None = None) -> float:
        """Relaxation time from :func:`tau_alpha` (NaN if F_s never reaches ``threshold``).

        Args:
            threshold: level, default 1/e.
            species: species index, or None for all particles.
        """
        f = self.fs if species is None else self.fs_by_species[int(species)]
        return float(tau_alpha(self.lag_times, f, threshold))

    def _columns(self) -> tuple[list[np.ndarray], list[str]]:
        by = self.fs_by_species
        return [self.fs, *by], ["fs", *[f"fs_{s}" for s in range(by.shape[0])]]


class NonGaussian(MSD):
    """Non-Gaussian parameter alpha_2(t) = d/(d+2) <r^4> / <r^2>^2 - 1 (dimensionless).

    Args: as for :class:`MSD`. At lag 0 (r = 0) alpha_2 is NaN (0/0). The MSD (quantity 0, <r^2>) is
    computed on the way and inherited as :attr:`msd` / :attr:`msd_by_species`.
    """

    _n_quantities = 2
    _analysis = "ngp"

    def _quantities(self, r2: np.ndarray, dim: int) -> list[np.ndarray]:
        return [r2, r2 * r2]

    def _alpha(self, r2: np.ndarray, r4: np.ndarray) -> np.ndarray:
        d = _guard(self, self._dim, "alpha2")
        with np.errstate(invalid="ignore", divide="ignore"):
            return d / (d + 2.0) * r4 / (r2 * r2) - 1.0

    @property
    def alpha2(self) -> np.ndarray:
        """(n_lags,) alpha_2 over all particles."""
        return self._alpha(self._mean(0)[0], self._mean(1)[0])

    @property
    def alpha2_by_species(self) -> np.ndarray:
        """(nsp, n_lags) alpha_2 per species."""
        return self._alpha(self._mean(0)[1], self._mean(1)[1])

    def _columns(self) -> tuple[list[np.ndarray], list[str]]:
        by = self.alpha2_by_species
        return [self.alpha2, *by], ["alpha2", *[f"alpha2_{s}" for s in range(by.shape[0])]]


class FourPointSusceptibility(_SelfCorrelation):
    """Self overlap Q(t) and the four-point dynamic susceptibility chi_4(t) (both dimensionless).

    For each (origin t0, lag t) sample and species s (N_s particles; "all" with N):

        Q_s(t0, t) = (1 / N_s) sum_{i in s} theta(a - |r_i(t0 + t) - r_i(t0)|)   (unwrapped displacements)
        chi_4,s(t) = N_s [ <Q_s^2> - <Q_s>^2 ],

    the average < > and the variance running over the samples: every time origin of every accumulated run
    (``reset=False`` adds independent runs or chains, which is how chi_4 should be measured; origins of one
    run are correlated, so one short run underestimates it). The variance is the unbiased sample variance
    (NaN with fewer than two samples at a lag). For independent particles chi_4 = p (1 - p), p the
    probability that one particle stays within a; if all particles move together it is N p (1 - p).
    The peak chi_4* at t* ~ tau_alpha measures the size of dynamically correlated regions
    (Lacevic, Starr, Schroder, Glotzer, J. Chem. Phys. 119, 7372 (2003)).

    Args:
        a: overlap radius (sigma_AA units), default 0.3 (:data:`glassgen.observables.overlap.OVERLAP_RADIUS`).
        origins, max_lag, wrapped_input, n_species: as for :class:`MSD`.
    """

    _n_quantities = 1
    _analysis = "chi4"

    def __init__(self, a: float = OVERLAP_RADIUS, origins: str | LagPairs | BlockLogSchedule = "first", *,
                 max_lag: int | None = None, wrapped_input: bool = False, n_species: int | None = None,
                 remove_drift: bool = True) -> None:
        if not (np.isfinite(a) and a > 0):
            raise InputError(f"overlap radius a must be positive, got {a}")
        self.a = float(a)
        super().__init__(origins, max_lag=max_lag, wrapped_input=wrapped_input, n_species=n_species,
                         remove_drift=remove_drift)

    def _reset(self) -> None:
        super()._reset()
        self._q_sums: np.ndarray | None = None  # (2, 1 + nsp, n_lags): sums of Q and Q^2 (all, then species)
        self._q_samples: np.ndarray | None = None  # (n_lags,) samples (origin, frame pairs over runs)

    def _quantities(self, r2: np.ndarray, dim: int) -> list[np.ndarray]:
        return [(r2 < self.a * self.a).astype(np.float64)]

    def _accumulate_samples(self, g: int, r2: np.ndarray, spec: np.ndarray, per_species: np.ndarray) -> None:
        if self._q_sums is None:
            self._q_sums = np.zeros((2, 1 + self._nsp, self._lag_times.size))
            self._q_samples = np.zeros(self._lag_times.size, dtype=np.int64)
        stay = (r2 < self.a * self.a).astype(np.float64)  # (P, N)
        onehot = np.zeros((spec.size, per_species.size))
        onehot[np.arange(spec.size), spec] = 1.0
        with np.errstate(invalid="ignore", divide="ignore"):
            q = np.concatenate([stay.mean(axis=1)[:, None], stay @ onehot / per_species], axis=1)  # (P, 1 + nsp)
        self._q_sums[0, :, g] += q.sum(axis=0)
        self._q_sums[1, :, g] += (q * q).sum(axis=0)
        self._q_samples[g] += q.shape[0]

    def _chi4(self, k: int) -> np.ndarray:
        sums = _guard(self, self._q_sums, "chi4")
        n_part = float(self._counts.sum(axis=0)[0] / self._n_origins[0]) if k == 0 else \
            float(self._counts[k - 1, 0] / self._n_origins[0])
        m = self._q_samples.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = sums[0, k] / m
            var = (sums[1, k] - m * mean * mean) / (m - 1.0)
        var[m < 2] = np.nan
        return n_part * np.maximum(var, 0.0)

    @property
    def overlap(self) -> np.ndarray:
        """(n_lags,) mean self overlap Q(t) over all particles (1 at t = 0)."""
        return self._mean(0)[0]

    @property
    def overlap_by_species(self) -> np.ndarray:
        """(nsp, n_lags) Q(t) per species (NaN for an absent species)."""
        return self._mean(0)[1]

    @property
    def chi4(self) -> np.ndarray:
        """(n_lags,) chi_4(t) of all particles, N var(Q)."""
        return self._chi4(0)

    @property
    def chi4_by_species(self) -> np.ndarray:
        """(nsp, n_lags) chi_4(t) per species, N_s var(Q_s) (NaN for an absent species)."""
        return np.array([self._chi4(k) for k in range(1, self.n_species + 1)])

    @property
    def n_overlap_samples(self) -> np.ndarray:
        """(n_lags,) number of (origin, frame) samples behind each chi_4 value."""
        return _guard(self, self._q_samples, "n_overlap_samples").copy()

    def peak(self, species: int | None = None) -> tuple[float, float]:
        """(t*, chi_4*) at the largest finite chi_4(t), lag 0 excluded; (NaN, NaN) if there is none."""
        c = self.chi4 if species is None else self.chi4_by_species[int(species)]
        t = self.lag_times
        ok = np.isfinite(c) & (t > 0)
        if not ok.any():
            return float("nan"), float("nan")
        k = int(np.flatnonzero(ok)[np.argmax(c[ok])])
        return float(t[k]), float(c[k])

    def _columns(self) -> tuple[list[np.ndarray], list[str]]:
        byq, byc = self.overlap_by_species, self.chi4_by_species
        nsp = byq.shape[0]
        return ([self.overlap, self.chi4, *byq, *byc, self.n_overlap_samples.astype(np.float64)],
                ["Q", "chi4", *[f"Q_{s}" for s in range(nsp)], *[f"chi4_{s}" for s in range(nsp)], "samples"])


def relaxation_time(trajectory: Any, q: float, species: np.ndarray | None = None, *,
                    which: int | None = None, threshold: float = float(np.exp(-1.0)),
                    origins: str | LagPairs | BlockLogSchedule = "first", box: np.ndarray | None = None,
                    wrapped_input: bool = False) -> float:
    """tau_alpha of a trajectory: F_s(q, t) then :func:`tau_alpha`.

    Args:
        trajectory: a :class:`~glassgen.dynamics.results.Trajectory` (times, steps, positions (F, N, d)).
        q: wavenumber (inverse length).
        species: (N,) species indices (default all 0).
        which: species whose F_s defines tau_alpha (None: all particles).
        threshold: F_s level, default 1/e.
        origins: time origins, as for :class:`SelfIntermediateScattering`.
        box: (d,) box lengths (only for ``wrapped_input``).
        wrapped_input: the trajectory is wrapped into the box.

    Returns:
        tau_alpha (time units), NaN if F_s never reaches the threshold.
    """
    fs = SelfIntermediateScattering(q, origins, wrapped_input=wrapped_input)
    fs.compute_trajectory(trajectory, species, box)
    return fs.tau_alpha(threshold, which)


def batched_self_correlations(trajectory: Any, species: np.ndarray, schedule: Any, q: float, *,
                              min_lag: int = 1, max_lag: int | None = None, n_batches: int = 10,
                              which: int | None = 0) -> dict[str, Any]:
    """MSD and F_s(q, t) over a block-log schedule, with error bars from batches of time origins.

    Values average over every (origin, lag) pair of ``schedule`` (a
    :class:`~glassgen.observables.schedule.BlockLogSchedule`) with ``min_lag <= lag <= max_lag`` (steps).
    Errors: the origins are cut into ``n_batches`` contiguous batches, the curves are averaged per batch,
    and the standard error is the spread of the batch means / sqrt(batches). Origins closer than the lag
    overlap, so batches, not single origins, are the ~independent units; at lags longer than the span of a
    batch, neighbouring batches share trajectory and the error is underestimated (a lower bound there). A
    lag that only one batch reaches gets error NaN.

    Args:
        trajectory: :class:`~glassgen.dynamics.results.Trajectory` stored on ``schedule.steps``
            (offset by its first step).
        species: (N,) species indices; ``which`` selects one species (None: all particles).

    Returns:
        dict with ``t``, ``steps`` (lags), ``msd``, ``fs``, ``msd_err``, ``fs_err`` ((n_lags,) each),
        ``tau_alpha`` (F_s = 1/e) and ``n_origins``.
    """
    lags = schedule.lags[schedule.lags >= min_lag]
    if max_lag is not None:
        lags = lags[lags <= max_lag]
    if lags.size == 0:
        raise InputError("no lags in the requested range")
    steps = np.asarray(trajectory.steps, dtype=np.int64)
    origins = int(steps[0]) + schedule.origin_steps

    def curves(origin_steps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
        pairs = lag_pairs_from_steps(steps, origin_steps, lags)
        msd = MSD(origins=pairs).compute(trajectory.times, trajectory.positions, species, steps=steps)
        fs = SelfIntermediateScattering(q, origins=pairs).compute(trajectory.times, trajectory.positions, species,
                                                                  steps=steps)
        m = msd.msd if which is None else msd.msd_by_species[which]
        f = fs.fs if which is None else fs.fs_by_species[which]
        return np.searchsorted(lags, msd.lag_steps), m, f, fs

    idx, msd_all, fs_all, fs_obj = curves(origins)
    per = np.full((n_batches, 2, lags.size), np.nan)
    for b, batch in enumerate(np.array_split(origins, n_batches)):
        i, m, f, _ = curves(batch)
        per[b, 0, i], per[b, 1, i] = m, f
    n_ok = np.sum(np.isfinite(per), axis=0)
    err = np.full(per.shape[1:], np.nan)
    two = n_ok >= 2
    if two.any():
        err[two] = np.nanstd(per[:, two], axis=0, ddof=1) / np.sqrt(n_ok[two])
    msd_full = np.full(lags.size, np.nan)
    fs_full = np.full(lags.size, np.nan)
    msd_full[idx], fs_full[idx] = msd_all, fs_all
    t = np.full(lags.size, np.nan)
    t[idx] = fs_obj.lag_times
    return {"t": t, "steps": lags, "msd": msd_full, "fs": fs_full, "msd_err": err[0], "fs_err": err[1],
            "tau_alpha": float(fs_obj.tau_alpha(species=which)) if which is not None else float(fs_obj.tau_alpha()),
            "n_origins": fs_obj.n_origins}
