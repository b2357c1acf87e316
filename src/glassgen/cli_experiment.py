"""Command line for the predict-then-propose experiments (``glassgen experiment``); see glassgen.cli."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this area's command group(s) to the root ``glassgen`` app."""
