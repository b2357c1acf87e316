"""Frame schedules for dynamics: log-spaced steps, and log-spaced blocks for several time origins.

Glassy dynamics span many decades of time, so frames are stored on a logarithmic grid. With one
log-spaced run there is one time origin (frame 0) and the averages are noisy at long lags. The
*block* schedule fixes that: the run is cut into ``n_blocks`` blocks of ``block_steps`` MD steps; the
frames inside each block are log-spaced from the block start, and every block start is a time
origin. The lags available are then

- the in-block log lags ``l < block_steps``, each from all ``n_blocks`` origins;
- the long lags ``k * block_steps`` (k = 1 .. n_blocks), each from ``n_blocks - k + 1`` origins.

:class:`LagPairs` lists the (origin frame, later frame) pairs grouped by lag; the dynamics classes
(:mod:`glassgen.observables.dynamics`) average over them::

    sched = block_log_schedule(n_blocks=10, block_steps=10_000, n_per_decade=10)
    # run MD and store a frame at every step in sched.steps, then
    msd = MSD(origins=sched).compute(traj.times, traj.positions, species, steps=traj.steps)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glassgen.errors import InputError

__all__ = ["log_spaced_steps", "block_log_schedule", "BlockLogSchedule", "LagPairs",
           "lag_pairs_single_origin", "lag_pairs_all_origins", "lag_pairs_from_steps"]


def log_spaced_steps(n_steps: int, n_per_decade: int = 10, first: int = 1) -> np.ndarray:
    """Logarithmically spaced integer steps from 0 to ``n_steps``.

    Candidates are ``round(first * 10**(k / n_per_decade))`` for k = 0, 1, ... up to ``n_steps``;
    duplicates (dense at small k) are removed, and 0 and ``n_steps`` are always included.

    Args:
        n_steps: last step (>= 0).
        n_per_decade: points per decade of the geometric grid (>= 1).
        first: smallest positive step (>= 1).

    Returns:
        (n,) sorted unique int64 steps, ``out[0] == 0`` and ``out[-1] == n_steps``.
    """
    n_steps, n_per_decade, first = int(n_steps), int(n_per_decade), int(first)
    if n_steps < 0:
        raise InputError(f"n_steps must be >= 0, got {n_steps}")
    if n_per_decade < 1:
        raise InputError(f"n_per_decade must be >= 1, got {n_per_decade}")
    if first < 1:
        raise InputError(f"first must be >= 1, got {first}")
    if n_steps < first:
        return np.unique(np.array([0, n_steps], dtype=np.int64))
    kmax = int(np.floor(n_per_decade * np.log10(n_steps / first))) + 1
    cand = np.rint(first * 10.0 ** (np.arange(kmax + 1) / n_per_decade)).astype(np.int64)
    cand = cand[cand <= n_steps]
    return np.unique(np.concatenate([[0], cand, [n_steps]])).astype(np.int64)


@dataclass(frozen=True)
class LagPairs:
    """Pairs of frames (origin, later frame) grouped by lag.

    Attributes:
        origin: (P,) int64 frame index of each pair's time origin.
        frame: (P,) int64 frame index of each pair's later frame (``frame >= origin``).
        lag_index: (P,) int64 index of each pair's lag in ``lags``.
        lags: (n_lags,) sorted lags, in steps when built from steps, else in frames.
    """

    origin: np.ndarray
    frame: np.ndarray
    lag_index: np.ndarray
    lags: np.ndarray

    def __post_init__(self) -> None:
        o = np.asarray(self.origin, dtype=np.int64)
        f = np.asarray(self.frame, dtype=np.int64)
        li = np.asarray(self.lag_index, dtype=np.int64)
        lags = np.asarray(self.lags)
        if not (o.shape == f.shape == li.shape) or o.ndim != 1:
            raise InputError("origin, frame and lag_index must be 1D arrays of equal length")
        if o.size and (o.min() < 0 or np.any(f < o) or li.min() < 0 or li.max() >= lags.size):
            raise InputError("invalid lag pairs: need 0 <= origin <= frame and 0 <= lag_index < n_lags")
        object.__setattr__(self, "origin", o)
        object.__setattr__(self, "frame", f)
        object.__setattr__(self, "lag_index", li)
        object.__setattr__(self, "lags", lags)

    @property
    def n_lags(self) -> int:
        """Number of distinct lags."""
        return int(self.lags.size)

    @property
    def n_origins(self) -> np.ndarray:
        """(n_lags,) number of origins averaged at each lag."""
        return np.bincount(self.lag_index, minlength=self.n_lags)

    def groups(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each lag, the ``(origin, frame)`` index arrays of its pairs."""
        order = np.argsort(self.lag_index, kind="stable")
        bounds = np.searchsorted(self.lag_index[order], np.arange(self.n_lags + 1))
        return [(self.origin[order[a:b]], self.frame[order[a:b]])
                for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def lag_pairs_single_origin(n_frames: int) -> LagPairs:
    """Frame 0 as the only origin: pairs (0, k), lag k (in frames), k = 0 .. n_frames - 1."""
    k = np.arange(int(n_frames), dtype=np.int64)
    return LagPairs(np.zeros_like(k), k, k, k)


def lag_pairs_all_origins(n_frames: int, max_lag: int | None = None) -> LagPairs:
    """Every frame as an origin, for equally spaced frames: pairs (i, i + k), lag k (in frames).

    Args:
        n_frames: number of frames F.
        max_lag: largest lag in frames (default F - 1).

    Returns:
        :class:`LagPairs` with ``F - k`` origins at lag k.
    """
    n_frames = int(n_frames)
    kmax = n_frames - 1 if max_lag is None else min(int(max_lag), n_frames - 1)
    if kmax < 0:
        raise InputError("need at least one frame")
    origin, frame, lag = [], [], []
    for k in range(kmax + 1):
        i = np.arange(n_frames - k, dtype=np.int64)
        origin.append(i)
        frame.append(i + k)
        lag.append(np.full(i.size, k, dtype=np.int64))
    return LagPairs(np.concatenate(origin), np.concatenate(frame), np.concatenate(lag),
                    np.arange(kmax + 1, dtype=np.int64))


def lag_pairs_from_steps(steps: np.ndarray, origin_steps: np.ndarray, lags: np.ndarray) -> LagPairs:
    """Pairs (origin, origin + lag) for every origin step and lag whose later step was stored.

    Args:
        steps: (F,) sorted unique int steps of the stored frames.
        origin_steps: steps used as time origins (each must be stored).
        lags: candidate lags in steps; a (origin, lag) pair is kept when ``origin + lag`` is stored.

    Returns:
        :class:`LagPairs` with frame indices into ``steps`` and ``lags`` (steps) restricted to the
        lags that occur at least once.
    """
    steps = np.asarray(steps, dtype=np.int64)
    if steps.ndim != 1 or np.any(np.diff(steps) <= 0):
        raise InputError("steps must be a strictly increasing 1D integer array")
    origin_steps = np.unique(np.asarray(origin_steps, dtype=np.int64))
    lags = np.unique(np.asarray(lags, dtype=np.int64))
    oi = np.searchsorted(steps, origin_steps)
    if np.any(oi >= steps.size) or np.any(steps[np.minimum(oi, steps.size - 1)] != origin_steps):
        raise InputError("every origin step must be one of the stored steps")
    target = origin_steps[:, None] + lags[None, :]  # (n_origins, n_lags)
    fi = np.searchsorted(steps, target)
    ok = (fi < steps.size) & (steps[np.minimum(fi, steps.size - 1)] == target)
    o_idx, l_idx = np.nonzero(ok)
    used = np.unique(l_idx)
    remap = np.full(lags.size, -1, dtype=np.int64)
    remap[used] = np.arange(used.size)
    return LagPairs(oi[o_idx], fi[o_idx, l_idx], remap[l_idx], lags[used])


@dataclass(frozen=True)
class BlockLogSchedule:
    """Log-spaced frames inside blocks that start at multiples of ``block_steps``.

    Attributes:
        steps: (F,) sorted unique int64 steps at which to store a frame (0 .. n_blocks * block_steps).
        n_blocks: number of blocks (time origins).
        block_steps: MD steps per block.
        in_block: sorted unique int64 offsets (0 .. block_steps) of the frames inside one block.
    """

    steps: np.ndarray
    n_blocks: int
    block_steps: int
    in_block: np.ndarray

    @property
    def origin_steps(self) -> np.ndarray:
        """(n_blocks,) steps of the time origins (block starts)."""
        return np.arange(self.n_blocks, dtype=np.int64) * self.block_steps

    @property
    def lags(self) -> np.ndarray:
        """Sorted lags (steps): in-block log lags < block_steps, then k * block_steps, k = 1 .. n_blocks."""
        short = self.in_block[self.in_block < self.block_steps]
        long = np.arange(1, self.n_blocks + 1, dtype=np.int64) * self.block_steps
        return np.unique(np.concatenate([short, long]))

    def lag_pairs(self, steps: np.ndarray | None = None, offset: int | None = None) -> LagPairs:
        """(origin, frame) pairs for every origin and lag of this schedule.

        Args:
            steps: the steps actually stored (default :attr:`steps`); pairs whose frame is missing
                (e.g. a run stopped early) are dropped, so a partial trajectory can be analysed.
            offset: absolute step of the schedule's step 0 (e.g. the MD step counter at the start
                of the production run); default ``steps[0]``.

        Returns:
            :class:`LagPairs` with lags in steps.
        """
        stored = self.steps if steps is None else np.asarray(steps, dtype=np.int64)
        if stored.size == 0:
            raise InputError("no stored steps")
        base = int(stored[0]) if offset is None else int(offset)
        origins = base + self.origin_steps
        origins = origins[np.isin(origins, stored)]
        if origins.size == 0:
            raise InputError("none of the schedule's time origins is among the stored steps")
        return lag_pairs_from_steps(stored, origins, self.lags)


def block_log_schedule(n_blocks: int, block_steps: int, n_per_decade: int = 10,
                       first: int = 1) -> BlockLogSchedule:
    """Frames for several time origins with log-spaced lags.

    Block b covers steps ``[b * block_steps, (b + 1) * block_steps]``; inside it frames are stored at
    ``b * block_steps + log_spaced_steps(block_steps, n_per_decade, first)``.

    Args:
        n_blocks: number of blocks = time origins (>= 1).
        block_steps: steps per block (>= 1); the longest in-block lag.
        n_per_decade: log-grid density inside a block.
        first: smallest positive in-block lag.

    Returns:
        :class:`BlockLogSchedule`; its ``lag_pairs()`` feeds the ``origins`` argument of MSD / F_s.
    """
    n_blocks, block_steps = int(n_blocks), int(block_steps)
    if n_blocks < 1 or block_steps < 1:
        raise InputError(f"need n_blocks >= 1 and block_steps >= 1, got {n_blocks}, {block_steps}")
    inner = log_spaced_steps(block_steps, n_per_decade, first)
    steps = np.unique((np.arange(n_blocks, dtype=np.int64)[:, None] * block_steps + inner[None, :]).ravel())
    return BlockLogSchedule(steps=steps, n_blocks=n_blocks, block_steps=block_steps, in_block=inner)
