"""Command line for GlassBench datasets and metrics (glassgen dataset, glassgen bench); registered by :mod:`glassgen.cli`."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this area's command group(s) to the root glassgen app."""
