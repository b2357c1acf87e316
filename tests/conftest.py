"""Shared fixtures: the reference data directory (skips with a reason when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from glassgen.config import data_dir


@pytest.fixture(scope="session")
def data() -> Path:
    d = data_dir()
    if not d.is_dir():
        pytest.skip(f"shared data not found at {d} (set GLASSGEN_DATA)")
    return d


@pytest.fixture(scope="session")
def ka3d_n150(data: Path):
    from glassgen.systems.io import read_xyz

    return read_xyz(data / "configurations" / "ka3d_N150_rho1.2.xyz", "ka3d")


@pytest.fixture(scope="session")
def ka2d_n1290(data: Path):
    from glassgen.systems.io import read_xyz

    return read_xyz(data / "configurations" / "ka2d_N1290_T0.231.xyz", "ka2d")
