"""Package settings read from the environment (one place for each).

- ``GLASSGEN_DATA``: the directory of the shared reference data (GlassBench samples, reference
  configurations); default ``../shared/data`` relative to the repository root.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_dir", "repo_root"]


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
