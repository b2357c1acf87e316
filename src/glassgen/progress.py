"""Progress bars (rich) that are silent when disabled or when output is not a terminal."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

__all__ = ["progress_bar"]


@contextlib.contextmanager
def progress_bar(total: float, description: str, enabled: bool = True) -> Iterator[Callable[[float], None]]:
    """Context manager yielding ``advance(amount)``; draws a rich progress bar on stderr if enabled."""
    if not enabled:
        yield lambda amount: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(file=sys.stderr)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console, transient=False) as prog:
        task = prog.add_task(description, total=total)
        yield lambda amount: prog.advance(task, amount)
