"""Interrupt-safe HDF5 trajectories: append frames, resume after a crash, read back.

File layout (glassgen trajectory, format_version 1)::

    /                      attrs: provenance (command, glassgen_version, time, host, ...) and model
    /trajectory            attrs: format="glassgen-trajectory", format_version, dim, model, n_frames
    /trajectory/positions  (F, N, d) float64, UNWRAPPED, resizable along F, chunked
    /trajectory/steps      (F,) int64 MD steps, strictly increasing
    /trajectory/times      (F,) float64 times (time units), strictly increasing
    /trajectory/velocities (F, N, d) float64 (only if the writer stores velocities)
    /trajectory/species    (N,) int32 species indices, 0-based
    /trajectory/box        (d,) float64 box lengths

Interrupt safety: frames go to ``path + ".partial"``, flushed after every frame; the attribute
``n_frames`` is updated only after a frame is completely written, so a frame half-written at a
crash is discarded on resume. :meth:`TrajectoryWriter.close` renames the partial file onto ``path``
atomically: ``path`` exists only for a complete run. ``TrajectoryWriter(..., resume=True)`` reopens
the partial file; :attr:`TrajectoryWriter.last_step` tells the MD driver where to continue.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np

from glassgen.dynamics.results import Trajectory
from glassgen.errors import InputError
from glassgen.provenance import provenance as _provenance
from glassgen.systems.io import h5_write_attrs

__all__ = ["TrajectoryWriter", "TrajectoryData", "read_trajectory", "partial_path", "FORMAT",
           "FORMAT_VERSION"]

FORMAT = "glassgen-trajectory"
FORMAT_VERSION = 1


def partial_path(path: str | os.PathLike[str]) -> Path:
    """The in-progress file of a trajectory: ``path + '.partial'``."""
    return Path(str(path) + ".partial")


class TrajectoryWriter:
    """Append frames to an HDF5 trajectory, interrupt-safe and resumable.

    Args:
        path: final file; frames are written to ``path + '.partial'`` until :meth:`close`.
        species: (N,) int species indices, 0-based.
        box: (d,) box lengths (constant over the run).
        model_name: interaction model name (stored as attribute ``model``), or None.
        provenance: dict of provenance attributes (default :func:`glassgen.provenance.provenance`).
        dim: spatial dimension d (default ``len(box)``; checked against it).
        store_velocities: also store (F, N, d) velocities; then :meth:`append` requires them.
        compression: None, ``"gzip"`` or ``"lzf"``.
        chunk_frames: frames per HDF5 chunk (default: about 512 KiB of positions per chunk).
        resume: reopen an existing ``.partial`` file and continue after its last complete frame
            (species, box, dim and velocity storage must match). Without a partial file a new one is
            started, unless ``path`` already exists (the run was complete): then InputError.

    Example:
        >>> with TrajectoryWriter(p, species, box, "ka3d", resume=True) as w:  # doctest: +SKIP
        ...     start = 0 if w.last_step is None else w.last_step  # continue the MD run from here
        ...     w.append(step, step * dt, positions)
    """

    def __init__(self, path: str | os.PathLike[str], species: np.ndarray, box: np.ndarray,
                 model_name: str | None = None, provenance: dict[str, Any] | None = None,
                 dim: int | None = None, *, store_velocities: bool = False, compression: str | None = None,
                 chunk_frames: int | None = None, resume: bool = False) -> None:
        self.path = Path(path)
        self.partial_path = partial_path(path)
        spec = np.asarray(species)
        if spec.ndim != 1 or spec.size == 0 or not np.issubdtype(spec.dtype, np.integer) or spec.min() < 0:
            raise InputError("species must be a non-empty 1D array of non-negative integers")
        bx = np.asarray(box, dtype=np.float64)
        if bx.ndim != 1 or bx.size not in (2, 3) or np.any(~np.isfinite(bx)) or np.any(bx <= 0):
            raise InputError(f"box must be (d,) positive lengths with d in (2, 3), got {bx}")
        d = bx.size if dim is None else int(dim)
        if d != bx.size:
            raise InputError(f"dim = {d} does not match the box {bx}")
        if compression not in (None, "gzip", "lzf"):
            raise InputError(f"compression must be None, 'gzip' or 'lzf', got {compression!r}")
        self.species = spec.astype(np.int32)
        self.box = bx
        self.dim = d
        self.n = int(spec.size)
        self.model_name = model_name
        self.store_velocities = bool(store_velocities)
        self._file: h5py.File | None = None
        self._n_frames = 0
        self._last_step: int | None = None
        self._last_time: float | None = None
        if chunk_frames is None:
            chunk_frames = max(1, min(256, (1 << 16) // (self.n * d)))
        self._chunk = int(chunk_frames)
        self._compression = compression

        if resume and self.partial_path.exists():
            self._open_resume()
        elif resume and self.path.exists():
            raise InputError(f"{self.path} is already complete (no {self.partial_path.name} to resume)")
        else:
            self._open_new(provenance)

    # ----------------------------------------------------------------- opening
    def _open_new(self, provenance: dict[str, Any] | None) -> None:
        self.partial_path.parent.mkdir(parents=True, exist_ok=True)
        f = h5py.File(self.partial_path, "w")
        try:
            prov = dict(_provenance() if provenance is None else provenance)
            if self.model_name is not None:
                prov["model"] = self.model_name
            h5_write_attrs(f, prov)
            g = f.create_group("trajectory")
            h5_write_attrs(g, {"format": FORMAT, "format_version": FORMAT_VERSION, "dim": self.dim,
                               "model": self.model_name, "n_frames": 0})
            g.create_dataset("species", data=self.species)
            g.create_dataset("box", data=self.box)
            kw: dict[str, Any] = {"compression": self._compression}
            if self._compression == "gzip":
                kw["compression_opts"] = 4
            frame_shape = (self.n, self.dim)
            g.create_dataset("positions", shape=(0, *frame_shape), maxshape=(None, *frame_shape),
                             dtype=np.float64, chunks=(self._chunk, *frame_shape), **kw)
            if self.store_velocities:
                g.create_dataset("velocities", shape=(0, *frame_shape), maxshape=(None, *frame_shape),
                                 dtype=np.float64, chunks=(self._chunk, *frame_shape), **kw)
            g.create_dataset("steps", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(1024,))
            g.create_dataset("times", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(1024,))
            f.flush()
        except BaseException:
            f.close()
            raise
        self._file = f

    def _open_resume(self) -> None:
        try:
            f = h5py.File(self.partial_path, "r+")
        except OSError as exc:
            raise InputError(f"cannot reopen {self.partial_path} to resume: {exc}") from exc
        try:
            if "trajectory" not in f or f["trajectory"].attrs.get("format") != FORMAT:
                raise InputError(f"{self.partial_path} is not a glassgen trajectory")
            g = f["trajectory"]
            if int(g.attrs["dim"]) != self.dim or not np.array_equal(g["species"][()], self.species):
                raise InputError(f"cannot resume {self.partial_path}: species or dimension differ")
            if not np.allclose(g["box"][()], self.box, rtol=1e-12, atol=0):
                raise InputError(f"cannot resume {self.partial_path}: box {g['box'][()]} != {self.box}")
            if ("velocities" in g) != self.store_velocities:
                raise InputError(f"cannot resume {self.partial_path}: store_velocities differs")
            n = int(g.attrs["n_frames"])
            names = ["positions", "steps", "times"] + (["velocities"] if self.store_velocities else [])
            n = min([n] + [g[k].shape[0] for k in names])
            for k in names:  # drop a frame half-written at the interruption
                g[k].resize(n, axis=0)
            g.attrs["n_frames"] = n
            log = json.loads(g.attrs.get("resume_log", "[]"))
            now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            log.append({"time": now, "n_frames": n})
            g.attrs["resume_log"] = json.dumps(log)
            if n:
                self._last_step = int(g["steps"][n - 1])
                self._last_time = float(g["times"][n - 1])
            self._n_frames = n
            f.flush()
        except BaseException:
            f.close()
            raise
        self._file = f

    # ----------------------------------------------------------------- writing
    def append(self, step: int, time: float, positions: np.ndarray,
               velocities: np.ndarray | None = None) -> None:
        """Append one frame and flush it to disk.

        Args:
            step: MD step (int), strictly greater than the previous frame's.
            time: time of the frame (time units), strictly greater than the previous frame's.
            positions: (N, d) UNWRAPPED positions.
            velocities: (N, d) velocities; required iff ``store_velocities``.
        """
        f = self._require_open()
        step = int(step)
        time = float(time)
        pos = np.asarray(positions, dtype=np.float64)
        if pos.shape != (self.n, self.dim):
            raise InputError(f"positions must have shape {(self.n, self.dim)}, got {pos.shape}")
        if not (np.all(np.isfinite(pos)) and np.isfinite(time)):
            raise InputError("positions or time are not finite")
        if self._last_step is not None and (step <= self._last_step or time <= self._last_time):
            raise InputError(f"frames must advance: step {step} / time {time} after step {self._last_step} "
                             f"/ time {self._last_time}")
        vel = None
        if self.store_velocities:
            if velocities is None:
                raise InputError("this writer stores velocities: pass velocities=")
            vel = np.asarray(velocities, dtype=np.float64)
            if vel.shape != (self.n, self.dim):
                raise InputError(f"velocities must have shape {(self.n, self.dim)}, got {vel.shape}")
        elif velocities is not None:
            raise InputError("this writer does not store velocities (store_velocities=False)")
        g = f["trajectory"]
        k = self._n_frames
        for name in ("positions", "steps", "times") + (("velocities",) if vel is not None else ()):
            g[name].resize(k + 1, axis=0)
        g["positions"][k] = pos
        g["steps"][k] = step
        g["times"][k] = time
        if vel is not None:
            g["velocities"][k] = vel
        g.attrs["n_frames"] = k + 1  # commit point
        f.flush()
        self._n_frames = k + 1
        self._last_step, self._last_time = step, time

    def flush(self) -> None:
        """Flush HDF5 buffers (already done after every frame)."""
        self._require_open().flush()

    def close(self) -> Path:
        """Finish the file and rename ``path.partial`` onto ``path`` atomically (idempotent).

        Returns:
            the final path.
        """
        if self._file is not None:
            self._file["trajectory"].attrs["complete"] = True
            self._file.close()
            self._file = None
            os.replace(self.partial_path, self.path)
        return self.path

    def abandon(self) -> None:
        """Close the HDF5 handle but keep ``path.partial`` (for a later ``resume=True``)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def _require_open(self) -> h5py.File:
        if self._file is None:
            raise InputError(f"trajectory writer for {self.path} is closed")
        return self._file

    # ----------------------------------------------------------------- state
    @property
    def n_frames(self) -> int:
        """Number of complete frames stored (including those before a resume)."""
        return self._n_frames

    @property
    def last_step(self) -> int | None:
        """Step of the last stored frame (None if none): a resumed run continues after it."""
        return self._last_step

    @property
    def last_time(self) -> float | None:
        """Time of the last stored frame (None if none)."""
        return self._last_time

    @property
    def closed(self) -> bool:
        """True after :meth:`close` or :meth:`abandon`."""
        return self._file is None

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:  # interrupted: keep the partial file for resume
            self.abandon()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"TrajectoryWriter({str(self.path)!r}, n_frames={self._n_frames}, {state})"


@dataclass(frozen=True)
class TrajectoryData:
    """A trajectory read from disk.

    Attributes:
        trajectory: :class:`~glassgen.dynamics.results.Trajectory` (times (F,), steps (F,),
            positions (F, N, d) unwrapped, velocities (F, N, d) or None).
        species: (N,) int32 species indices.
        box: (d,) box lengths.
        model: model name or None.
        attrs: root (provenance) attributes, JSON strings decoded where possible.
        complete: False for a ``.partial`` file of an unfinished run.
    """

    trajectory: Trajectory
    species: np.ndarray
    box: np.ndarray
    model: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    complete: bool = True


def _decode(v: Any) -> Any:
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, str) and v.startswith(("[", "{")):
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            return v
    if isinstance(v, np.generic):
        return v.item()
    return v


def read_trajectory(path: str | os.PathLike[str], frames: slice | None = None,
                    allow_partial: bool = False) -> TrajectoryData:
    """Read a glassgen HDF5 trajectory.

    Args:
        path: the file (a ``.partial`` file may be named directly).
        frames: optional slice of frames to read (default all).
        allow_partial: if ``path`` does not exist, read ``path + '.partial'`` (an unfinished run).

    Returns:
        :class:`TrajectoryData` with the :class:`~glassgen.dynamics.results.Trajectory`, species and box.

    Raises:
        InputError: missing file or not a glassgen trajectory.
    """
    p = Path(path)
    if not p.exists():
        pp = partial_path(p)
        if allow_partial and pp.exists():
            p = pp
        elif pp.exists():
            raise InputError(f"{p} does not exist, but {pp.name} does (unfinished run: allow_partial=True)")
        else:
            raise InputError(f"trajectory file not found: {p}")
    sl = slice(None) if frames is None else frames
    try:
        with h5py.File(p, "r") as f:
            if "trajectory" not in f and "thermo" in f:
                raise InputError(f"{p} is a run stored without trajectory frames (md/mc run --traj log or linear)")
            if "trajectory" not in f or f["trajectory"].attrs.get("format") != FORMAT:
                raise InputError(f"{p} is not a glassgen trajectory")
            g = f["trajectory"]
            n = int(g.attrs.get("n_frames", g["steps"].shape[0]))
            start, stop, step = sl.indices(n)
            if step < 1:
                raise InputError("frames must be a slice with a positive step")
            sel = slice(start, max(start, stop), step)
            steps = g["steps"][sel]
            times = g["times"][sel]
            pos = g["positions"][sel]
            vel = g["velocities"][sel] if "velocities" in g else None
            spf = g["species_frames"][sel] if "species_frames" in g else None
            model = g.attrs.get("model")
            traj = Trajectory(times=np.asarray(times, dtype=np.float64),
                              steps=np.asarray(steps, dtype=np.int64),
                              positions=np.asarray(pos, dtype=np.float64),
                              velocities=None if vel is None else np.asarray(vel, dtype=np.float64),
                              species=None if spf is None else np.asarray(spf, dtype=np.int32))
            species, box = g["species"][()], g["box"][()].astype(np.float64)
            _check_read(p, traj, species, box)
            return TrajectoryData(trajectory=traj, species=species.astype(np.int32), box=box,
                                  model=None if model is None else str(_decode(model)),
                                  attrs={k: _decode(v) for k, v in f.attrs.items()},
                                  complete=bool(g.attrs.get("complete", False)))
    except OSError as exc:
        raise InputError(f"cannot read trajectory {p}: {exc}") from exc
    except KeyError as exc:
        raise InputError(f"malformed trajectory {p}: missing {exc}") from None


def _check_read(p: Path, traj: Trajectory, species: np.ndarray, box: np.ndarray) -> None:
    """One-line errors for a trajectory file whose arrays cannot be a run (edited or foreign files)."""
    pos = traj.positions
    if pos.ndim != 3 or pos.shape[2] not in (2, 3):
        raise InputError(f"malformed trajectory {p}: positions of shape {pos.shape}, not (frames, N, d)")
    n, d = pos.shape[1], pos.shape[2]
    if not np.all(np.isfinite(traj.times)):
        raise InputError(f"malformed trajectory {p}: times contain NaN or infinite values")
    if box.shape != (d,) or not np.all(np.isfinite(box)) or np.any(box <= 0) or np.any(box > 1e8):
        raise InputError(f"malformed trajectory {p}: box {box.tolist()} is not {d} positive lengths up to 1e8")
    if species.shape != (n,) or not np.issubdtype(species.dtype, np.integer) or (n and species.min() < 0):
        raise InputError(f"malformed trajectory {p}: species must be {n} non-negative integers")
    spf = traj.species
    if spf is not None and (spf.shape != pos.shape[:2] or (spf.size and spf.min() < 0)):
        raise InputError(f"malformed trajectory {p}: species_frames must be (frames, {n}) non-negative integers")


def write_trajectory_group(f: h5py.File, trajectory: Trajectory, species: np.ndarray, box: np.ndarray,
                           model_name: str | None = None, compression: str | None = "gzip") -> None:
    """Write a complete in-memory trajectory as the ``/trajectory`` group of an open HDF5 file.

    The layout is the one :class:`TrajectoryWriter` produces, so :func:`read_trajectory` reads it.
    """
    g = f.create_group("trajectory")
    h5_write_attrs(g, {"format": FORMAT, "format_version": FORMAT_VERSION, "dim": int(np.asarray(box).size),
                       "n_frames": int(trajectory.steps.shape[0]), "complete": True, "model": model_name})
    g.create_dataset("positions", data=trajectory.positions, compression=compression)
    g.create_dataset("steps", data=trajectory.steps)
    g.create_dataset("times", data=trajectory.times)
    if trajectory.velocities is not None:
        g.create_dataset("velocities", data=trajectory.velocities, compression=compression)
    g.create_dataset("species", data=np.asarray(species, dtype=np.int32))
    if trajectory.species is not None:  # species that change (swaps): every frame's, particles keep their labels
        g.create_dataset("species_frames", data=np.asarray(trajectory.species, dtype=np.int32),
                         compression=compression)
    g.create_dataset("box", data=np.asarray(box, dtype=np.float64))
