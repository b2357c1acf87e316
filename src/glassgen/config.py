"""Package settings read from the environment (one place for each).

- ``GLASSGEN_DATA``: the directory of the shared reference data (GlassBench samples, reference
  configurations); default ``../shared/data`` relative to the repository root.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_dir", "repo_root", "config_path"]


def repo_root() -> Path:
    """The repository root (the directory holding ``pyproject.toml``) for a source checkout."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    return Path.cwd()


def data_dir() -> Path:
    """Shared data directory: ``$GLASSGEN_DATA`` or ``<repo>/../shared/data``."""
    env = os.environ.get("GLASSGEN_DATA")
    return Path(env) if env else repo_root().parent / "shared" / "data"


def config_path(value: str | os.PathLike[str]) -> Path:
    """A path written in a shipped config: ``$GLASSGEN_DATA/...`` (or ``${GLASSGEN_DATA}/...``) lies under
    :func:`data_dir`; a relative path is taken from the working directory, or from the repository root when
    only that holds it (so ``configs/...`` and ``datasets/...`` work from any folder of a source checkout)."""
    text = os.fspath(value)
    for prefix in ("${GLASSGEN_DATA}", "$GLASSGEN_DATA"):
        if text.startswith(prefix):
            return data_dir() / text[len(prefix):].lstrip("/")
    p = Path(text)
    if not p.is_absolute() and not p.exists() and (repo_root() / p).exists():
        return repo_root() / p
    return p
