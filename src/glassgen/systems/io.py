"""Readers and writers: extended xyz, LAMMPS data files and glassgen HDF5.

All writers are atomic (temporary file, then rename) and record provenance. Readers raise
:class:`~glassgen.errors.InputError` with one line on missing or malformed files.

Formats
-------
- **xyz** (as in ``shared/data/configurations``): line 1 N; line 2 ``key:value`` tokens, of which
  ``cell:Lx,Ly[,Lz]`` is required (ASE's ``Lattice="..."`` is also read); then ``species x y [z]``.
  Species are 1-based integers or the model's names. Coordinates may be centred or in [0, L).
- **LAMMPS data** (atom_style atomic): ``N atoms``, ``K atom types``, ``xlo xhi`` ..., ``Atoms``
  (``id type x y z [ix iy iz]``), optional ``Velocities``. Types are 1-based species.
- **HDF5** (glassgen): group ``/configuration`` with datasets ``positions`` (N, d), ``species`` (N,),
  ``box`` (d,), optional ``velocities``; attributes ``model`` (name), ``model_toml`` and provenance
  (``command``, ``glassgen_version``, ``seed``, ``T``, ``time``, ...).
"""

from __future__ import annotations

import functools
import json
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import h5py
import numpy as np
import tomllib

from glassgen.errors import InputError
from glassgen.provenance import atomic_path, provenance
from glassgen.systems.configuration import Configuration
from glassgen.systems.model import InteractionModel, load_model

__all__ = ["read_configuration", "write_configuration", "read_xyz", "write_xyz", "read_lammps_data",
           "write_lammps_data", "read_hdf5", "write_hdf5", "h5_write_attrs", "read_json_object",
           "write_configuration_group", "file_kind", "written_by"]

PathLike = str | os.PathLike[str]
_Reader = TypeVar("_Reader", bound=Callable[..., Configuration])


def _check_file(path: PathLike) -> Path:
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{p} is a folder, not a configuration file")
    if not p.is_file():
        raise InputError(f"file not found: {p}")
    return p


def written_by(command: Any) -> str:
    """``glassgen <command> [<subcommand>]`` of a provenance ``command`` string (the program's path dropped), or
    "" if it is not a glassgen command line."""
    if isinstance(command, bytes):
        command = command.decode(errors="replace")
    words = str(command or "").split()
    for k, w in enumerate(words):
        if Path(w).name in ("glassgen", "glassgen.cli", "__main__.py"):
            subs = []
            for x in words[k + 1:k + 3]:  # the command words: up to the first option or file name
                if x.startswith("-") or "." in x or "/" in x:
                    break
                subs.append(x)
            return " ".join(["glassgen", *subs])
    return ""


def file_kind(path: PathLike) -> str:
    """A short phrase saying what a file is, for the errors of a reader given the wrong file: "an HDF5 file
    written by `glassgen md run`", "a JSON file of format glassgen-pgmc-policy-1", "a zip archive (a torch
    checkpoint or a NumPy .npz)", "a text file"; "" if it cannot be read."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            head = fh.read(512)
    except OSError:
        return ""
    if not head:
        return "an empty file"
    if head.startswith(b"\x89HDF"):
        try:
            with h5py.File(p, "r") as f:
                cmd = written_by(f.attrs.get("command", ""))
        except OSError:
            cmd = ""
        return f"an HDF5 file written by `{cmd}`" if cmd else "an HDF5 file"
    if head.startswith(b"PK"):
        return "a zip archive (a torch checkpoint or a NumPy .npz)"
    if head.lstrip()[:1] in (b"{", b"["):
        try:
            doc = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            return "a text file"
        fmt = doc.get("format") if isinstance(doc, dict) else None
        return f"a JSON file of format {fmt}" if fmt else "a JSON file"
    try:
        head.decode()
    except UnicodeDecodeError:
        return "a binary file"
    return "a text file"


def read_json_object(path: PathLike, what: str) -> dict[str, Any]:
    """A JSON file holding one object (``what`` names it in the one-line errors: missing, malformed, not an
    object)."""
    p = Path(path)
    if not p.is_file():
        where = "" if p.is_absolute() else f" (looked for {p.absolute()})"
        raise InputError(f"{what} file not found: {p}{where}")
    try:
        doc = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        kind = file_kind(p)
        if kind and not kind.startswith(("a JSON", "a text")):
            raise InputError(f"{p} is not a {what} file (JSON) but {kind}") from None
        raise InputError(f"malformed {what} file {p}: {exc}") from None
    if not isinstance(doc, dict):
        raise InputError(f"malformed {what} file {p}: a JSON object is expected, got {type(doc).__name__}")
    return doc


def _malformed_as_input_error(kind: str) -> Callable[[_Reader], _Reader]:
    """Decorate a reader so that a parse failure (a number that is not one, a missing column or key, an array
    of the wrong shape) becomes one ``InputError`` naming the file, not a traceback."""
    def wrap(reader: _Reader) -> _Reader:
        @functools.wraps(reader)
        def read(path: PathLike, *args: Any, **kwargs: Any) -> Configuration:
            try:
                return reader(path, *args, **kwargs)
            except InputError:
                raise
            except (ValueError, IndexError, KeyError, TypeError) as exc:
                raise InputError(f"malformed {kind} file {path}: {exc}") from None
        return read  # type: ignore[return-value]
    return wrap


def _species_indices(labels: list[str], model: InteractionModel | None) -> np.ndarray:
    if model is not None:
        return np.array([model.species_index(s) for s in labels], dtype=np.int32)
    try:
        ints = np.array([int(s) for s in labels], dtype=np.int64)
    except ValueError:
        uniq = sorted(set(labels))
        return np.array([uniq.index(s) for s in labels], dtype=np.int32)
    return (ints - ints.min()).astype(np.int32) if ints.min() != 1 else (ints - 1).astype(np.int32)


# ---------------------------------------------------------------------------------------- xyz
#: Model names other codes write in xyz headers, and ours: ParticlesMC's "JBB" (Jung, Biroli, Berthier) is the
#: KA2D ternary mixture (its test configuration has U/N = -2.676832 with our ka2d, as tests/test_forces.py checks).
FOREIGN_MODEL_NAMES = {"JBB": "ka2d"}


@_malformed_as_input_error("xyz")
def read_xyz(path: PathLike, model: str | InteractionModel | None = None) -> Configuration:
    """Read an (extended) xyz file: see the module docstring for the layout."""
    p = _check_file(path)
    m = load_model(model) if model is not None else None
    lines = p.read_text().splitlines()
    try:
        n = int(lines[0].split()[0])
    except (IndexError, ValueError):
        raise InputError(f"malformed xyz file {p}: first line must be the particle number") from None
    if n < 1:
        raise InputError(f"malformed xyz file {p}: the particle number must be >= 1, got {n}")
    if len(lines) < n + 2:
        raise InputError(f"malformed xyz file {p}: expected {n} particle lines, found {len(lines) - 2}")
    rest = [ln for ln in lines[n + 2:] if ln.strip()]
    if rest and not (len(rest[0].split()) == 1 and rest[0].strip().isdigit()):  # nothing, or a next frame's count
        raise InputError(f"malformed xyz file {p}: more particle lines than the {n} of its first line")
    header = lines[1]
    meta: dict[str, Any] = {}
    box = None
    lat = re.search(r'Lattice="([^"]+)"', header)
    if lat:
        try:
            vals = [float(x) for x in lat.group(1).split()]
        except ValueError:
            raise InputError(f"malformed xyz file {p}: Lattice=\"{lat.group(1)}\" is not numbers") from None
        if len(vals) not in (4, 9):
            raise InputError(f"malformed xyz file {p}: Lattice= needs 4 (2D) or 9 (3D) numbers, got {len(vals)}")
        dim3 = 2 if len(vals) == 4 else 3
        cell = np.array(vals).reshape(dim3, dim3)
        if np.any(cell[~np.eye(dim3, dtype=bool)] != 0):
            raise InputError(f"xyz file {p}: Lattice= is not orthorhombic (off-diagonal entries); glassgen boxes are "
                             "orthorhombic")
        box = np.diag(cell).copy()
    for tok in header.split():
        if ":" in tok and "=" not in tok:
            k, v = tok.split(":", 1)
            if len(v) >= 2 and v[0] == v[-1] == '"':  # provenance values are JSON strings (spaces as \u0020)
                try:
                    v = str(json.loads(v))
                except json.JSONDecodeError:
                    v = v[1:-1]
            elif v[:1] in ("{", "["):  # a provenance record (e.g. a flow's) written as JSON
                try:
                    v = json.loads(v)
                except json.JSONDecodeError:
                    pass
            meta.setdefault(k, v)  # the first occurrence wins
    if box is None:
        if "cell" not in meta:
            raise InputError(f"malformed xyz file {p}: header has no cell:Lx,Ly[,Lz] (or Lattice=)")
        box = np.array([float(x) for x in meta["cell"].split(",")])
    d = len(box)
    labels, rows = [], []
    extra_cols = 0
    for k, line in enumerate(lines[2:2 + n]):
        parts = line.split()
        if len(parts) < 1 + d:
            raise InputError(f"malformed xyz file {p}: particle line {k + 1} has {len(parts)} columns, "
                             f"expected species + {d} coordinates")
        extra_cols = max(extra_cols, len(parts) - 1 - d)
        labels.append(parts[0])
        try:
            rows.append([float(x) for x in parts[1:1 + d]])
        except ValueError:
            raise InputError(f"malformed xyz file {p}: non-numeric coordinate on particle line {k + 1}") from None
    pos = np.array(rows, dtype=np.float64)
    if extra_cols and "properties" not in {k.lower() for k in meta}:  # extended xyz declares its columns
        warnings.warn(f"xyz file {p}: particle lines have {extra_cols} column(s) beyond species + {d} coordinates; "
                      "they are ignored (velocities are not read from xyz)", stacklevel=2)
    if m is None and "model" in {k.lower() for k in meta}:
        name = str(meta.get("model") or meta.get("Model"))
        try:
            m = load_model(FOREIGN_MODEL_NAMES.get(name, name))
        except InputError:
            m = None
    species = _species_indices(labels, m)
    if m is not None and m.dim != d:
        raise InputError(f"xyz file {p} is {d}D but model {m.name!r} is {m.dim}D")
    return Configuration(pos, species, box, m, metadata=meta)


def write_xyz(path: PathLike, conf: Configuration, **extra: Any) -> None:
    """Write an xyz file with ``cell:``, ``model:`` and provenance in the header (1-based species)."""
    prov = provenance(model=conf.model.name if conf.model else None, **extra)
    cell = ",".join(repr(float(x)) for x in conf.box)
    head = [f"cell:{cell}", "columns:species,position"]
    if conf.model is not None:
        head.append(f"model:{conf.model.name}")
    # one token per value: compact JSON, whose only spaces are inside strings, escaped there as \u0020 (still
    # valid JSON), so the header splits on spaces and every value reads back exactly
    head += [f"{k}:{json.dumps(v, default=str, separators=(',', ':')).replace(' ', chr(92) + 'u0020')}"
             for k, v in prov.items()
             if not (k == "model" and conf.model is not None)]
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            fh.write(f"{conf.n}\n{' '.join(head)}\n")
            fmt = " ".join(["{:.12f}"] * conf.dim)
            for s, x in zip(conf.species, conf.positions, strict=True):
                fh.write(f"{int(s) + 1} {fmt.format(*x)}\n")


# ---------------------------------------------------------------------------------- LAMMPS data
@_malformed_as_input_error("LAMMPS data")
def read_lammps_data(path: PathLike, model: str | InteractionModel | None = None,
                     dim: int | None = None) -> Configuration:
    """Read a LAMMPS data file (atom_style atomic). ``dim`` defaults to the model's, else 3. A file written by
    glassgen keeps its provenance (model, T, seed, ...) in its first line: it becomes the metadata, and names
    the model when none is given."""
    p = _check_file(path)
    text = p.read_text()
    meta: dict[str, Any] = {}
    head = text.split("\n", 1)[0]
    if head.startswith("LAMMPS data file written by glassgen {"):
        try:
            parsed = json.loads(head[head.index("{"):])
        except json.JSONDecodeError:
            parsed = None
        meta = parsed if isinstance(parsed, dict) else {}
    if model is None:
        model = meta.get("model")
    m = load_model(model) if model is not None else None
    d = dim or (m.dim if m else 3)
    raw = text.splitlines()
    lines = [ln.split("#")[0].rstrip() for ln in raw]
    n = None
    lo = np.zeros(3)
    hi = np.ones(3)
    axes: set[int] = set()
    sections: dict[str, list[str]] = {}
    i = 1
    current = None
    while i < len(lines):
        ln = lines[i].strip()
        i += 1
        if not ln:
            continue
        toks = ln.split()
        if current is None and toks[-1] == "atoms" and len(toks) == 2:
            n = int(toks[0])
            if n < 1:
                raise InputError(f"LAMMPS data file {p} has {n} atoms")
        elif current is None and toks[-3:] == ["xy", "xz", "yz"]:
            if any(float(x) != 0 for x in toks[:3]):
                raise InputError(f"LAMMPS data file {p}: a triclinic box (tilt factors {' '.join(toks[:3])}); "
                                 "glassgen boxes are orthorhombic")
        elif current is None and len(toks) == 4 and toks[2].endswith("lo") and toks[3].endswith("hi"):
            k = "xyz".index(toks[2][0])
            lo[k], hi[k] = float(toks[0]), float(toks[1])
            axes.add(k)
        elif toks[0] in ("Atoms", "Velocities", "Masses"):
            current = toks[0]
            sections[current] = []
            style = raw[i - 1].partition("#")[2].split()
            if current == "Atoms" and style and style[0] != "atomic":
                raise InputError(f"LAMMPS data file {p}: atom style {style[0]!r} is not supported (atomic only)")
        elif current is not None and toks[0][0].isalpha() and not toks[0][0].isdigit():
            current = toks[0]
            sections[current] = []
        elif current is not None:
            sections[current].append(ln)
    if n is None or "Atoms" not in sections:
        raise InputError(f"malformed LAMMPS data file {p}: needs 'N atoms' and an Atoms section")
    missing = [f"{'xyz'[k]}lo {'xyz'[k]}hi" for k in range(d) if k not in axes]
    if missing:
        raise InputError(f"malformed LAMMPS data file {p}: no box line(s) {', '.join(missing)}")
    rows = [r.split() for r in sections["Atoms"]]
    if len(rows) != n:
        raise InputError(f"malformed LAMMPS data file {p}: header says {n} atoms, Atoms has {len(rows)}")
    try:
        arr = np.array([[float(x) for x in r[:5]] for r in rows])
    except (ValueError, IndexError):
        raise InputError(f"malformed LAMMPS data file {p}: Atoms lines must be 'id type x y z'") from None
    ids_types = arr[:, :2]
    if np.any(ids_types != np.round(ids_types)) or np.any(arr[:, 1] < 1):
        raise InputError(f"malformed LAMMPS data file {p}: atom ids and types must be integers (types >= 1)")
    if np.unique(arr[:, 0]).size != n:
        raise InputError(f"malformed LAMMPS data file {p}: atom ids are not unique")
    order = np.argsort(arr[:, 0])
    arr = arr[order]
    pos = arr[:, 2:2 + d].copy()
    box = (hi - lo)[:d]
    if len(rows[0]) >= 8:
        img = np.array([[int(x) for x in r[5:8]] for r in rows])[order][:, :d]
        pos += img * box
    pos -= lo[:d]
    species = (arr[:, 1].astype(np.int64) - 1).astype(np.int32)
    if m is not None and species.max() >= m.nsp:
        raise InputError(f"LAMMPS data file {p}: atom type {int(species.max()) + 1} but model {m.name!r} has "
                         f"{m.nsp} species (types 1..{m.nsp})")
    vel = None
    if "Velocities" in sections:
        v = np.array([[float(x) for x in r.split()[:4]] for r in sections["Velocities"]])
        vel = v[np.argsort(v[:, 0])][:, 1:1 + d]
    return Configuration(pos, species, box, m, velocities=vel, metadata=meta)


def write_lammps_data(path: PathLike, conf: Configuration, **extra: Any) -> None:
    """Write a LAMMPS data file (atom_style atomic, box [0, L), 1-based types, masses from the model, image flags,
    so that unwrapped positions read back unwrapped)."""
    nsp = conf.model.nsp if conf.model else int(conf.species.max()) + 1
    masses = conf.model.masses if conf.model else np.ones(nsp)
    pos, img = conf.wrapped_and_images()
    box3 = np.ones(3)
    box3[: conf.dim] = conf.box
    prov = json.dumps(provenance(model=conf.model.name if conf.model else None, **extra), default=str)
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            fh.write(f"LAMMPS data file written by glassgen {prov}\n\n{conf.n} atoms\n{nsp} atom types\n\n")
            for k, ax in enumerate("xyz"):
                lo, hi = (0.0, box3[k]) if k < conf.dim else (-0.5, 0.5)
                fh.write(f"{lo:.12f} {hi:.12f} {ax}lo {ax}hi\n")
            fh.write("\nMasses\n\n")
            for a in range(nsp):
                fh.write(f"{a + 1} {masses[a]:.12f}\n")
            fh.write("\nAtoms # atomic\n\n")
            for i in range(conf.n):
                xyz = np.zeros(3)
                xyz[: conf.dim] = pos[i]
                n3 = np.zeros(3, dtype=np.int64)
                n3[: conf.dim] = img[i]
                fh.write(f"{i + 1} {int(conf.species[i]) + 1} {xyz[0]:.12f} {xyz[1]:.12f} {xyz[2]:.12f} "
                         f"{n3[0]} {n3[1]} {n3[2]}\n")
            if conf.velocities is not None:
                fh.write("\nVelocities\n\n")
                for i in range(conf.n):
                    v = np.zeros(3)
                    v[: conf.dim] = conf.velocities[i]
                    fh.write(f"{i + 1} {v[0]:.12f} {v[1]:.12f} {v[2]:.12f}\n")


# ---------------------------------------------------------------------------------------- HDF5
def h5_write_attrs(obj: h5py.HLObject, attrs: dict[str, Any]) -> None:
    """Store a dict as HDF5 attributes (non-scalar values as JSON strings)."""
    for k, v in attrs.items():
        if v is None:
            continue
        if isinstance(v, (str, int, float, bool, np.integer, np.floating)):
            obj.attrs[k] = v
        else:
            obj.attrs[k] = json.dumps(v, default=str)


def write_configuration_group(g: h5py.Group, conf: Configuration) -> None:
    """Write ``conf`` into the HDF5 group ``g`` (positions, species, box, velocities, model): the
    ``/configuration`` group that :func:`read_hdf5` reads, in any glassgen output."""
    g.create_dataset("positions", data=conf.positions)
    g.create_dataset("species", data=conf.species)
    g.create_dataset("box", data=conf.box)
    if conf.velocities is not None:
        g.create_dataset("velocities", data=conf.velocities)
    if conf.model is not None:
        g.attrs["model"] = conf.model.name
        g.attrs["model_toml"] = conf.model.source_text or json.dumps(conf.model.to_dict())


def write_hdf5(path: PathLike, conf: Configuration, **extra: Any) -> None:
    """Write a configuration to glassgen HDF5 with provenance attributes (atomic)."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            h5_write_attrs(f, provenance(model=conf.model.name if conf.model else None, **extra))
            write_configuration_group(f.create_group("configuration"), conf)


def _model_from_attrs(attrs: Any) -> InteractionModel | None:
    if "model_toml" in attrs:
        text = str(attrs["model_toml"])
        try:
            return InteractionModel.from_dict(tomllib.loads(text), source_text=text)
        except tomllib.TOMLDecodeError:
            pass
        try:
            return InteractionModel.from_dict(json.loads(text))
        except json.JSONDecodeError:
            raise InputError("malformed model_toml attribute (neither TOML nor JSON); pass --model") from None
    if "model" in attrs:
        return load_model(str(attrs["model"]))
    return None


@_malformed_as_input_error("glassgen HDF5")
def read_hdf5(path: PathLike, model: str | InteractionModel | None = None,
              group: str = "configuration", frame: int = -1) -> Configuration:
    """Read a configuration from glassgen HDF5 (``/configuration`` or a frame of ``/trajectory``)."""
    p = _check_file(path)
    try:
        with h5py.File(p, "r") as f:
            if group not in f:
                if "trajectory" in f and "box" in f["trajectory"]:
                    group = "trajectory"
                else:
                    raise InputError(f"{p} holds no configuration (no /{group} group): it is {file_kind(p)}")
            g = f[group]
            pos = g["positions"][()]
            if pos.ndim == 3:
                pos = pos[frame]
            vel = None
            if "velocities" in g:
                vel = g["velocities"][()]
                vel = vel[frame] if vel.ndim == 3 else vel
            m = load_model(model) if model is not None else _model_from_attrs(g.attrs)
            meta = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
            return Configuration(pos, g["species"][()], g["box"][()], m, velocities=vel, metadata=meta)
    except OSError as exc:
        raise InputError(f"cannot read HDF5 file {p}: {exc}") from None
    except KeyError as exc:
        raise InputError(f"malformed glassgen HDF5 file {p} ({file_kind(p)}): missing {exc}") from None


# ------------------------------------------------------------------------------------ dispatch
def read_configuration(path: PathLike, model: str | InteractionModel | None = None) -> Configuration:
    """Read a configuration, choosing the format from the suffix (.xyz, .data/.lmp, .h5/.hdf5)."""
    p = Path(path)
    suf = p.suffix.lower()
    if p.is_dir():
        raise InputError(f"{p} is a folder, not a configuration file")
    if suf in (".xyz", ".extxyz"):
        return read_xyz(p, model)
    if suf in (".data", ".lmp", ".lammps"):
        return read_lammps_data(p, model)
    if suf in (".h5", ".hdf5"):
        return read_hdf5(p, model)
    raise InputError(f"unknown configuration format {p.suffix!r} for {p} (use .xyz, .data, .h5)")


def write_configuration(path: PathLike, conf: Configuration, **extra: Any) -> None:
    """Write a configuration, choosing the format from the suffix (.xyz, .data/.lmp, .h5/.hdf5)."""
    suf = Path(path).suffix.lower()
    if suf in (".xyz", ".extxyz"):
        write_xyz(path, conf, **extra)
    elif suf in (".data", ".lmp", ".lammps"):
        write_lammps_data(path, conf, **extra)
    elif suf in (".h5", ".hdf5"):
        write_hdf5(path, conf, **extra)
    elif Path(path).is_dir():
        raise InputError(f"--out {path} is a folder: name the output file (.xyz, .data or .h5)")
    else:
        raise InputError(f"unknown configuration format {Path(path).suffix!r} (use .xyz, .data, .h5)")
