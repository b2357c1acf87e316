"""Training data for predictors: inherent states (cached), descriptors (cached) and propensity targets.

Caches live under ``runs/predictors/cache`` (gitignored; ``$GLASSGEN_PREDICTOR_CACHE`` overrides), keyed by
a hash of the sample's content (positions, species, box) and the descriptor settings, so a changed file or
setting is never served stale. Inherent states: the file's own ``initial_positions_inherent`` when it was produced with
the settings' interaction model (our datasets record it in their provenance), else our FIRE
(:func:`glassgen.dynamics.minimize.fire_minimize`, ``ftol`` from the settings) with that model.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from glassgen.errors import InputError
from glassgen.predictors.descriptors import DescriptorSettings, compute_descriptors
from glassgen.provenance import atomic_path
from glassgen.systems.glassbench import GlassBenchSample

__all__ = ["cache_dir", "sample_cache_key", "inherent_positions", "sample_features", "target", "Frame", "frames"]


def cache_dir() -> Path:
    """Cache directory (``$GLASSGEN_PREDICTOR_CACHE`` or ``<repo>/runs/predictors/cache``)."""
    env = os.environ.get("GLASSGEN_PREDICTOR_CACHE")
    if env:
        return Path(env)
    from glassgen.config import repo_root

    return repo_root() / "runs" / "predictors" / "cache"


def sample_cache_key(sample: GlassBenchSample) -> str:
    """Cache key of a sample: its file's stem and a hash of its content (positions, species, box), so two
    files with the same name, size and time, or a file rewritten in place, never share an entry."""
    h = hashlib.sha1()
    for a in (sample.positions, sample.species, sample.box):
        arr = np.ascontiguousarray(a)
        h.update(str((arr.dtype.str, arr.shape)).encode())
        h.update(arr.tobytes())
    return Path(sample.path).stem + "-" + h.hexdigest()[:16]


def _sample_model(sample: GlassBenchSample) -> str | None:
    prov = sample.metadata.get("provenance")
    return prov.get("model") if isinstance(prov, dict) else None


def inherent_positions(sample: GlassBenchSample, model: str, ftol: float = 1e-6,
                       cache: Path | None = None) -> np.ndarray:
    """(N, d) inherent state of the sample's initial configuration under ``model`` (cached)."""
    if sample.inherent is not None and _sample_model(sample) == model:
        return sample.inherent
    cache = cache or cache_dir()
    f = cache / "inherent" / f"{sample_cache_key(sample)}-{model}-{ftol:g}.npy"
    if f.is_file():
        return np.load(f)
    from glassgen.dynamics.minimize import fire_minimize
    from glassgen.systems.configuration import Configuration
    from glassgen.systems.model import load_model

    conf = Configuration(sample.positions, sample.species, sample.box, load_model(model))
    res = fire_minimize(conf, ftol=ftol, max_iter=200000)
    if not res.converged:
        raise InputError(f"FIRE did not converge on {sample.path} (max force {res.max_force:.2e})")
    with atomic_path(f) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, res.configuration.positions)
    return res.configuration.positions


def sample_features(sample: GlassBenchSample, settings: DescriptorSettings,
                    cache: Path | None = None) -> np.ndarray:
    """(N, F) descriptors of a sample (on its inherent state if ``settings.inherent``), cached."""
    cache = cache or cache_dir()
    h = hashlib.sha1(json.dumps(settings.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
    f = cache / "features" / f"{sample_cache_key(sample)}-{h}.npy"
    if f.is_file():
        return np.load(f)
    x = inherent_positions(sample, settings.model, settings.ftol, cache) if settings.inherent else sample.positions
    feats, _ = compute_descriptors(settings, x, sample.species, sample.box, thermal=sample.positions)
    with atomic_path(f) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, feats)
    return feats


def target(sample: GlassBenchSample, time: float | None) -> np.ndarray:
    """(N,) propensity at lag ``time`` (row of ``md_prop``), or from the replicas at ``replica_time``."""
    if sample.md_prop is not None and sample.times is not None and time is not None:
        return sample.md_prop[sample.time_index(time)]
    if sample.replicas is not None and (time is None or (sample.replica_time is not None
                                                         and abs(sample.replica_time - time) <= 1e-3 * time)):
        from glassgen.observables.isoconfig import propensity

        return propensity(sample.positions, sample.replicas, sample.box)
    if sample.replicas is not None and sample.replica_time is None:
        raise InputError(f"{sample.path}: the replicas' lag time is not recorded (no _tcXX code or replica_time "
                         f"entry), so they cannot be checked to be at t = {time}")
    if time is None:  # neither the caller nor the predictor (a model trained on replicas records none) named one
        grid = "" if sample.times is None else f" (its propensity is tabulated at {len(sample.times)} lag times)"
        raise InputError(f"{sample.path}: no lag time given{grid} and no isoconfigurational replicas to take it "
                         "from: pass --time or --time-index")
    raise InputError(f"{sample.path}: no propensity at t = {time}")


@dataclass(frozen=True)
class Frame:
    """One configuration ready for training/evaluation: features (N, F), species (N,), target (N,) or None."""

    features: np.ndarray
    species: np.ndarray
    target: np.ndarray | None
    positions: np.ndarray
    box: np.ndarray
    index: int
    T: float


def frames(samples: Iterable[GlassBenchSample], settings: DescriptorSettings, time: float | None,
           with_target: bool = True, cache: Path | None = None, progress: bool = False) -> list[Frame]:
    """Features and targets of several samples (positions: the ones the descriptors were computed on).

    The first use of a sample computes its inherent state (FIRE) and descriptors, minutes for N = 4096; both
    are cached, so ``progress`` shows a bar per sample."""
    from glassgen.progress import progress_bar

    samples = list(samples)
    out = []
    label = "descriptors (FIRE inherent states, cached)" if settings.inherent else "descriptors"
    with progress_bar(len(samples), label, progress) as advance:
        for s in samples:
            x = inherent_positions(s, settings.model, settings.ftol, cache) if settings.inherent else s.positions
            out.append(Frame(sample_features(s, settings, cache), s.species,
                             target(s, time) if with_target else None, x, s.box, s.index, s.T))
            advance(1)
    return out
