"""GlassBench data: readers and a writer for the published npz layouts (Jung et al., Nat. Rev. Phys. 2025).

Three layouts are read, each into a :class:`GlassBenchSample`:

* **model files** ``N4096T{T}_{i}.npz`` (KA 3D) / ``N1290T{T}_{i}.npz`` (KA2D): ``types``,
  ``initial_positions``, ``initial_positions_inherent``, ``initial_positions_cage`` (some files),
  ``md_prop`` and ``bb_prop`` of shape (n_times, N), and in test files the published predictions
  (``BOTAN``, ``CAGE``, ``GlassMLP``, ``SE3``, ``SBO``, ``SBO_CG``, ``DEN``, ``EPOT``, ``PSI6``/``PSI4``, ``TT``);
* **trajectory files** ``N1290T{T}_{i}_tcXX.npz`` (KA2D): replica positions ``positions`` (R, N, d) at the
  time with code ``tcXX``;
* **BOTAN isoconfigurational files** ``isoconfig_N4096T0.44_{i}_tc07.npz``: ``types`` (0/1),
  ``initial_positions``, replica positions ``positions`` (32, N, 3) at t = tau_alpha (unwrapped).

Conventions of the returned sample: species 0-based (GlassBench's 1/2/3 and BOTAN's 0/1 are both
recognised), positions as stored (wrapped or unwrapped; displacements use
:func:`glassgen.observables.isoconfig.displacements`, which decides), the box inferred from the model
density when the file has none (KA: rho = 1.2, KA2D: rho = N/L^2 with L = 32.8962), times from the
published grids (``REFERENCE.md`` section 2) unless the file stores its own ``times``.

A directory (the unpacked 6 GB archive, a folder of our own datasets, or ``shared/data``) is read by
:func:`read_dataset` as one :class:`GlassBenchDataset`. :func:`write_sample` writes the model-file layout
(types 1-based as in GlassBench) plus our metadata keys (``box``, ``times``, ``temperature``,
``provenance``); reading it back gives identical arrays.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from glassgen.errors import InputError
from glassgen.provenance import atomic_path

__all__ = ["GlassBenchSample", "GlassBenchDataset", "read_sample", "read_dataset", "write_sample", "resolve_split",
           "published_times", "published_tau_alpha", "PUBLISHED_TAU_ALPHA", "time_of_code", "infer_species",
           "PREDICTION_KEYS"]

PathLike = str | os.PathLike[str]

#: Published prediction keys that a GlassBench test file may hold, (n_times, N) each.
PREDICTION_KEYS = ("BOTAN", "CAGE", "GlassMLP", "SE3", "SBO", "SBO_CG", "DEN", "EPOT", "PSI6", "PSI4", "TT")

# Published time grids (LJ time units), REFERENCE.md section 2. KA 3D: index 6 (0-based) is tau_alpha.
_TIMES: dict[tuple[str, str], tuple[float, ...]] = {
    ("KA", "0.44"): (0.13, 1.3, 13, 130, 412, 1300, 4120, 13000, 41200, 130000),
    ("KA", "0.50"): (0.108, 0.434, 2.17, 6.86, 21.7, 68.6, 217, 686, 2170, 6860),
    ("KA", "0.56"): (0.104, 0.33, 0.99, 1.65, 5.2, 16.5, 52, 165, 520, 1650),
    ("KA", "0.64"): (0.032, 0.1, 0.165, 0.52, 1.65, 5.2, 16.5, 52, 165, 520),
    ("KA2D", "0.30"): (0.11, 1.25, 14.14, 158.74, 1781.79, 20000),
    ("KA2D", "0.23"): (0.1, 1.1, 11.64, 122.47, 1288.41, 13554, 142587, 1.5e6),
}
# Time codes of the KA2D trajectory files whose time is documented (shared/data/README.md). Other KA2D
# codes are not documented here: the reader then asks for explicit times instead of guessing.
_KA2D_CODES: dict[tuple[str, int], float] = {("0.30", 1): 0.11, ("0.23", 40): 1.5e6}
_DENSITY = {"KA": 1.2, "KA2D": 1290 / 32.8962**2}
_NAME = re.compile(r"N(?P<n>\d+)T(?P<T>\d+(?:\.\d+)?)_(?P<i>\d+)(?:_tc(?P<tc>\d+))?\.npz$")


def _tkey(T: float | str) -> str:
    return f"{float(T):.2f}"


# Published tau_alpha labels (LJ time), REFERENCE.md section 2 (not where F_s falls to 1/e: see there).
PUBLISHED_TAU_ALPHA: dict[tuple[str, str], float] = {
    ("KA", "0.64"): 16.5, ("KA", "0.56"): 52.0, ("KA", "0.50"): 217.0, ("KA", "0.44"): 4120.0,
    ("KA2D", "0.30"): 2200.0, ("KA2D", "0.23"): 9.2e5}


def published_tau_alpha(system: str, T: float | str) -> float | None:
    """The published tau_alpha label of (system, T), or None."""
    return PUBLISHED_TAU_ALPHA.get((system, _tkey(T)))


def published_times(system: str, T: float | str) -> np.ndarray | None:
    """The published GlassBench time grid for ``system`` ('KA' or 'KA2D') at ``T``, or None."""
    grid = _TIMES.get((system, _tkey(T)))
    return None if grid is None else np.asarray(grid, dtype=np.float64)


def time_of_code(system: str, T: float | str, code: int) -> float:
    """Lag time of a GlassBench time code ``tcXX``.

    KA 3D: ``tcXX`` is the XX-th point (1-based) of the published 10-point grid, so ``tc07`` is tau_alpha
    (4120 at T = 0.44; the BOTAN files are named ``_tc07``). KA2D: the codes documented with the shipped
    data (``tc01`` at T = 0.30 is t = 0.11; ``tc40`` at T = 0.23 is t = 1.5e6).

    Raises:
        InputError: for a code whose time is not known (pass explicit times instead).
    """
    if system == "KA":
        grid = published_times("KA", T)
        if grid is not None and 1 <= code <= grid.size:
            return float(grid[code - 1])
    elif system == "KA2D" and (_tkey(T), code) in _KA2D_CODES:
        return _KA2D_CODES[(_tkey(T), code)]
    raise InputError(f"time code tc{code:02d} of {system} at T={T} is not documented; pass the time explicitly")


def infer_species(types: np.ndarray) -> np.ndarray:
    """0-based species indices from GlassBench labels (1 = A, 2 = B, 3 = C) or BOTAN labels (0 = A, 1 = B)."""
    t = np.asarray(types)
    if t.ndim != 1 or t.size == 0:
        raise InputError(f"types must be a non-empty 1D array, got shape {t.shape}")
    if not np.issubdtype(t.dtype, np.number) or np.issubdtype(t.dtype, np.complexfloating):
        raise InputError(f"types must be integer labels, got an array of {t.dtype}")
    if not np.issubdtype(t.dtype, np.integer):
        if not (np.all(np.isfinite(t)) and np.all(np.equal(np.mod(t, 1), 0))):
            raise InputError("types must be integer labels")
        t = t.astype(np.int64)
    lo = int(t.min())
    if lo not in (0, 1):
        raise InputError(f"cannot infer species from type labels starting at {lo} (expected 0/1 or 1/2/3)")
    s = (t - lo).astype(np.int32)
    if s.max() > 2:
        raise InputError(f"too many type labels ({s.max() + 1}); GlassBench systems have 2 or 3 species")
    return s


@dataclasses.dataclass(frozen=True)
class GlassBenchSample:
    """One isoconfigurational sample (one initial configuration) in GlassBench form.

    Attributes:
        system: 'KA' (3D Kob-Andersen 80:20) or 'KA2D' (2D ternary), or a model name for our datasets.
        T: temperature (LJ units).
        index: configuration number in its set (GlassBench: train 1..400, test 401..500).
        species: (N,) int32, 0-based (A = 0).
        positions: (N, d) float64 initial (thermal) configuration.
        box: (d,) float64 box lengths.
        times: (n_times,) float64 lag times of ``md_prop``/``bb_prop`` rows (or of the replicas), or None.
        inherent: (N, d) inherent-state positions, or None.
        cage: (N, d) cage-state positions, or None.
        md_prop: (n_times, N) propensity R_i(t) = <|r_i(t) - r_i(0)|>_iso, or None.
        bb_prop: (n_times, N) bond-breaking C_B,i(t), or None.
        predictions: published predictions {key: (n_times, N) or (N,)}.
        replicas: (R, N, d) replica positions at ``replica_time``, or None.
        replica_time: lag time of ``replicas``.
        path: file it was read from.
        metadata: other scalar entries (provenance of our own files, source info of the shared data).
    """

    system: str
    T: float
    index: int
    species: np.ndarray
    positions: np.ndarray
    box: np.ndarray
    times: np.ndarray | None = None
    inherent: np.ndarray | None = None
    cage: np.ndarray | None = None
    md_prop: np.ndarray | None = None
    bb_prop: np.ndarray | None = None
    predictions: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    replicas: np.ndarray | None = None
    replica_time: float | None = None
    path: str = ""
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.species.size)

    @property
    def dim(self) -> int:
        return int(self.positions.shape[1])

    @property
    def split(self) -> str:
        """'train' or 'test' as :func:`read_sample` resolved it (:func:`resolve_split`): the file's own
        ``split``, the folder its archive member or path names, or for KA 3D the GlassBench index rule
        (test >= 401); 'unknown' where nothing says (never selected as training data)."""
        return str(self.metadata.get("split", "unknown"))

    def mask(self, species: int | None = 0) -> np.ndarray:
        """(N,) bool mask of one species (default A, the GlassBench convention), all if None."""
        return np.ones(self.n, bool) if species is None else self.species == species

    def time_index(self, t: float, rtol: float = 1e-3) -> int:
        """Row of ``times`` equal to ``t`` (relative tolerance ``rtol``)."""
        if self.times is None:
            raise InputError(f"{self.path or 'sample'} has no time grid")
        k = int(np.argmin(np.abs(np.log(self.times / t))))
        if abs(self.times[k] - t) > rtol * t:
            raise InputError(f"time {t} not in the grid {self.times.tolist()}")
        return k


def _box(system: str, n: int, d: int, stored: Any) -> np.ndarray:
    if stored is not None:
        b = np.asarray(stored, dtype=np.float64).reshape(-1)
        if b.size not in (1, d) or not np.all(np.isfinite(b)) or np.any(b <= 0):
            raise InputError(f"box must be 1 or {d} positive lengths, got {b.tolist()}")
        return np.full(d, float(b[0])) if b.size == 1 else b
    rho = _DENSITY.get(system)
    if rho is None:
        raise InputError(f"no box in the file and no known density for system {system!r}")
    return np.full(d, (n / rho) ** (1.0 / d))


def _scalar(v: np.ndarray) -> Any:
    x = v.item() if v.ndim == 0 else v
    return x.decode() if isinstance(x, bytes) else x


@contextlib.contextmanager
def _entries_as_input_error(p: Path) -> Iterator[None]:
    """An entry numpy cannot read safely (an object array needs pickle, which is never allowed) or cannot convert
    is bad input: one line naming the file."""
    try:
        yield
    except InputError:
        raise
    except (ValueError, TypeError) as exc:
        raise InputError(f"{p.name}: unreadable entry ({exc})") from None


def read_sample(path: PathLike, *, T: float | None = None, system: str | None = None,
                times: np.ndarray | list[float] | None = None, load_replicas: bool = True) -> GlassBenchSample:
    """Read one GlassBench-layout npz file (model, trajectory, BOTAN isoconfig, or ours).

    Args:
        path: the ``.npz`` file.
        T: temperature; default from the file (``temperature`` key) or its name (``N...T0.44_...``).
        system: 'KA' or 'KA2D'; default from the file or inferred from the dimension (3D -> KA).
        times: lag times of the ``md_prop`` rows or of the replicas, overriding the published grid.
        load_replicas: read replica positions (large) when present.

    Raises:
        InputError: missing or malformed file, unknown layout, inconsistent shapes.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"GlassBench file not found: {p}")
    import zipfile

    if not zipfile.is_zipfile(p):  # numpy would suggest allow_pickle=True for any non-archive: never do that
        raise InputError(f"{p} is not a GlassBench file (an .npz archive)")
    try:
        z = np.load(p, allow_pickle=False)
        files = set(z.files)
    except Exception as exc:  # noqa: BLE001 - any unreadable npz is bad input
        raise InputError(f"cannot read {p} as npz: {type(exc).__name__}") from None
    with z, _entries_as_input_error(p):
        if "initial_positions" not in files or "types" not in files:
            raise InputError(f"{p.name}: not a GlassBench file (needs 'types' and 'initial_positions')")
        m = _NAME.search(p.name)
        meta: dict[str, Any] = {}
        for k in files - {"types", "initial_positions", "initial_positions_inherent", "initial_positions_cage",
                          "md_prop", "bb_prop", "positions", "times", "box", *PREDICTION_KEYS}:
            if z[k].ndim == 0:
                meta[k] = _scalar(z[k])
        if "provenance" in meta:
            try:
                meta["provenance"] = json.loads(meta["provenance"])
            except (TypeError, json.JSONDecodeError):
                raise InputError(f"{p.name}: malformed 'provenance' entry (not JSON)") from None
        if T is None:
            if "temperature" in meta:
                try:
                    T = float(meta["temperature"])
                except (TypeError, ValueError):
                    raise InputError(f"{p.name}: 'temperature' is not a number: {meta['temperature']!r}") from None
            elif m is not None:
                T = float(m.group("T"))
            else:
                raise InputError(f"{p.name}: temperature unknown: neither a 'temperature' entry in the file nor a "
                                 "T<value> in its name (e.g. N4096T0.44_1.npz)")
        x0 = np.asarray(z["initial_positions"], dtype=np.float64)
        if x0.ndim != 2 or x0.shape[1] not in (2, 3):
            raise InputError(f"{p.name}: initial_positions must be (N, 2) or (N, 3), got {x0.shape}")
        n, d = x0.shape
        if not np.all(np.isfinite(x0)):
            raise InputError(f"{p.name}: initial_positions contain NaN or infinite values")
        try:
            species = infer_species(z["types"])
        except InputError as exc:
            raise InputError(f"{p.name}: {exc}") from None
        if species.size != n:
            raise InputError(f"{p.name}: {species.size} types for {n} positions")
        system = system or str(meta.get("system_id", meta.get("system", "KA" if d == 3 else "KA2D")))
        try:
            box = _box(system, n, d, z["box"] if "box" in files else None)
        except InputError as exc:
            raise InputError(f"{p.name}: {exc}") from None

        def opt(key: str, shape_tail: tuple[int, ...]) -> np.ndarray | None:
            if key not in files or z[key].size == 0:
                return None
            a = np.asarray(z[key], dtype=np.float64)
            if a.shape[-len(shape_tail):] != shape_tail:
                tail = ", ".join(map(str, shape_tail))
                raise InputError(f"{p.name}: {key} has shape {a.shape}, expected (..., {tail})")
            return a

        inherent = opt("initial_positions_inherent", (n, d))
        cage = opt("initial_positions_cage", (n, d))
        md_prop = opt("md_prop", (n,))
        bb_prop = opt("bb_prop", (n,))
        preds = {k: np.asarray(z[k], dtype=np.float64) for k in PREDICTION_KEYS if k in files and z[k].size}
        for k, v in preds.items():
            if v.shape[-1] != n:
                raise InputError(f"{p.name}: prediction {k} has shape {v.shape}, expected (..., {n})")
        grid: np.ndarray | None
        if times is not None:
            grid = np.asarray(times, dtype=np.float64)
        elif "times" in files:
            grid = np.asarray(z["times"], dtype=np.float64)
        else:
            grid = published_times(system, T)
        if md_prop is not None and grid is not None and grid.size != md_prop.shape[0]:
            raise InputError(f"{p.name}: md_prop has {md_prop.shape[0]} rows but the time grid has {grid.size}")
        replicas = None
        replica_time = None
        if "positions" in files:
            shape = z["positions"].shape
            if len(shape) != 3 or shape[1:] != (n, d):
                raise InputError(f"{p.name}: replica positions must be (R, {n}, {d}), got {shape}")
            if load_replicas:
                replicas = np.asarray(z["positions"], dtype=np.float64)
                if not np.all(np.isfinite(replicas)):
                    raise InputError(f"{p.name}: replica positions contain NaN or infinite values")
            if "replica_time" in meta:
                replica_time = float(meta.pop("replica_time"))
            elif times is not None and np.size(times) == 1:
                replica_time = float(np.asarray(times).reshape(-1)[0])
            elif m is not None and m.group("tc") is not None:
                replica_time = time_of_code(system, T, int(m.group("tc")))
        index = int(m.group("i")) if m is not None else int(meta.get("index", 0))
        own = meta.get("split")
        meta["split"] = resolve_split(system, index, p, str(own) if own is not None else None,
                                      str(meta["first_npz_member"]) if "first_npz_member" in meta else None)
    return GlassBenchSample(system=system, T=float(T), index=index, species=species, positions=x0, box=box,
                            times=grid, inherent=inherent, cage=cage, md_prop=md_prop, bb_prop=bb_prop,
                            predictions=preds, replicas=replicas, replica_time=replica_time, path=str(p),
                            metadata=meta)


def write_sample(path: PathLike, sample: GlassBenchSample, *, provenance: dict[str, Any] | None = None,
                 compress: bool = True, replicas: bool = True) -> None:
    """Write ``sample`` in the GlassBench model-file layout (atomically).

    Keys: ``types`` (1-based int8, as GlassBench), ``initial_positions``, ``initial_positions_inherent``,
    ``md_prop``, ``bb_prop`` (if present), published prediction keys, and our metadata ``box``, ``times``,
    ``temperature``, ``system_id``, ``index``, ``split``, ``provenance`` (JSON); ``positions`` (replicas) and
    ``replica_time`` if requested and present.
    """
    arrays: dict[str, Any] = {
        "types": (sample.species + 1).astype(np.int8),
        "initial_positions": sample.positions,
        "box": sample.box,
        "temperature": np.asarray(f"{sample.T:g}"),
        "system_id": np.asarray(sample.system),
        "index": np.asarray(sample.index),
    }
    if "split" in sample.metadata:
        arrays["split"] = np.asarray(sample.metadata["split"])
    for key, val in (("initial_positions_inherent", sample.inherent), ("initial_positions_cage", sample.cage),
                     ("md_prop", sample.md_prop), ("bb_prop", sample.bb_prop), ("times", sample.times)):
        if val is not None:
            arrays[key] = val
    arrays.update(sample.predictions)
    if replicas and sample.replicas is not None:
        arrays["positions"] = sample.replicas
        if sample.replica_time is not None:
            arrays["replica_time"] = np.asarray(sample.replica_time)
    if provenance is not None:
        arrays["provenance"] = np.asarray(json.dumps(provenance, default=str))
    target = Path(path)
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            (np.savez_compressed if compress else np.savez)(fh, **arrays)


@dataclasses.dataclass(frozen=True)
class GlassBenchDataset:
    """The GlassBench files found under one directory, grouped by (system, T, split).

    Attributes:
        root: the directory.
        files: {(system, T, split): [paths sorted by configuration index]}.
    """

    root: Path
    files: dict[tuple[str, float, str], list[Path]]

    @property
    def temperatures(self) -> list[float]:
        return sorted({k[1] for k in self.files})

    @property
    def systems(self) -> list[str]:
        return sorted({k[0] for k in self.files})

    def paths(self, system: str | None = None, T: float | None = None, split: str | None = None) -> list[Path]:
        out: list[Path] = []
        for (s, t, sp), ps in sorted(self.files.items()):
            if (system is None or s == system) and (T is None or abs(t - T) < 1e-9) and (split is None or sp == split):
                out.extend(ps)
        return out

    def samples(self, system: str | None = None, T: float | None = None, split: str | None = None,
                **kw: Any) -> Iterator[GlassBenchSample]:
        """Read the matching samples lazily (one file at a time: the full archive is 6 GB)."""
        for p in self.paths(system, T, split):
            yield read_sample(p, **kw)

    def __len__(self) -> int:
        return sum(len(v) for v in self.files.values())


def resolve_split(system: str, index: int, path: Path, split: str | None = None, member: str | None = None) -> str:
    """Train/test membership of a GlassBench file, from the most specific information available.

    Args:
        system: 'KA' or 'KA2D'; index: the configuration index of the file name.
        path: the file; its nearest folder named 'train' or 'test' counts.
        split: the file's own ``split`` entry (our datasets); member: ``first_npz_member`` of a re-saved
            archive member (``T0.23/test/N1290T0.23_151_tc40.npz``).

    Returns:
        'train' or 'test'; 'unknown' for a KA2D file with none of these (the index rule, test >= 401, is
        the KA 3D one only).
    """
    if split in ("train", "test"):
        return split
    if member:
        folders = [q.lower() for q in Path(member).parts[:-1]]
        for q in reversed(folders):
            if q in ("train", "test"):
                return q
    for q in reversed([q.lower() for q in path.parts[:-1]]):
        if q in ("train", "test"):
            return q
    if "2d" not in system.lower():  # KA 3D (GlassBench 'KA', or our ka3d datasets)
        return "test" if index >= 401 else "train"
    return "unknown"


def _classify(p: Path) -> tuple[str, float, str, int] | None:
    m = _NAME.search(p.name)
    if m is None:
        return None
    n = int(m.group("n"))
    parts = [q.lower() for q in p.parts]
    if any(q.startswith("ka2d") for q in parts) or n == 1290:
        system = "KA2D"
    elif any(q.startswith("ka_") or q.startswith("ka3d") for q in parts) or n == 4096:
        system = "KA"
    else:
        system = "KA"
    i = int(m.group("i"))
    return system, float(m.group("T")), resolve_split(system, i, p), i


def read_dataset(root: PathLike, pattern: str = "*.npz") -> GlassBenchDataset:
    """Index every GlassBench-layout npz file under ``root`` (recursively), without loading arrays.

    Works on the unpacked Zenodo archive (``KA_models/T0.44/test/N4096T0.44_401.npz`` ...), on the shipped
    ``shared/data`` folders and on datasets written by ``glassgen dataset make``. The system is taken from
    the folder names (``KA_models``, ``KA2D_*``) or N (4096 -> KA, 1290 -> KA2D); the split from a ``train``
    or ``test`` folder, else from the index (>= 401 is test, as in GlassBench). Our own datasets store
    ``system_id`` and ``split`` in every file; those win.
    """
    r = Path(root)
    if not r.is_dir():
        raise InputError(f"GlassBench directory not found: {r}")
    groups: dict[tuple[str, float, str], list[tuple[int, str, Path]]] = {}
    for p in sorted(r.rglob(pattern)):
        if p.name.startswith("."):
            continue
        c = _classify(p)
        if c is None:
            continue
        system, T, split, i = c
        try:
            with np.load(p, allow_pickle=False) as z:
                if "system_id" in z.files:
                    system = str(_scalar(z["system_id"]))
                own = str(_scalar(z["split"])) if "split" in z.files else None
                member = str(_scalar(z["first_npz_member"])) if "first_npz_member" in z.files else None
                split = resolve_split(system, i, p, own, member)
        except Exception:  # noqa: BLE001 - an unreadable file is reported when it is read
            pass
        tc = re.search(r"_tc(\d+)", p.name)
        groups.setdefault((system, T, split), []).append((i, tc.group(1) if tc else "", p))
    if not groups:
        raise InputError(f"no GlassBench npz files (N<n>T<T>_<i>[_tcXX].npz) under {r}")
    files = {k: [p for _, _, p in sorted(v)] for k, v in groups.items()}
    return GlassBenchDataset(root=r, files=files)
