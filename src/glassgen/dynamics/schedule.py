"""The checkpointed event loop shared by every simulation driver (MD, MC, ...).

A run is a sorted list of event points (steps or sweeps) at which something is recorded. The loop
advances the simulation from one event to the next, calls ``on_event``, and saves a checkpoint
every ``checkpoint_every`` units and on Ctrl-C. A resumed run skips the events already processed.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from glassgen.dynamics.results import Thermo, Trajectory
from glassgen.errors import InputError
from glassgen.progress import progress_bar

__all__ = ["run_events", "collect_results", "new_samples"]


def new_samples() -> dict[str, list[float]]:
    """Empty thermo sample lists, one per :class:`Thermo` field."""
    return {k: [] for k in Thermo.__dataclass_fields__}


def run_events(total: int, events: Iterable[int], last_done: int, advance_to: Callable[[int, int], None],
               on_event: Callable[[int], None], save: Callable[[], None] | None, checkpoint_every: int,
               progress: bool = False, label: str = "run") -> None:
    """Drive a simulation through ``events`` (relative units, sorted, within [0, total]).

    Args:
        total: length of the run (for the progress bar).
        events: event points; those <= ``last_done`` were processed before a resume and are skipped.
        last_done: last event processed (-1 for a fresh run).
        advance_to: ``advance_to(current, target)`` moves the simulation from ``current`` to ``target``.
        on_event: records whatever is due at an event point.
        save: writes a checkpoint (None: no checkpoints); also called on KeyboardInterrupt.
        checkpoint_every: units between checkpoints.
    """
    if last_done > total:
        raise InputError(f"the checkpoint is at {last_done} of a longer run than the {total} asked for now: "
                         "give the original length, or another --out")
    done = max(last_done, 0)
    next_ckpt = done + checkpoint_every
    interrupted = _InterruptFlag()
    try:
        with interrupted, progress_bar(total, label, progress) as advance:
            advance(done)
            for ev in events:
                if ev <= last_done:
                    continue
                if ev > done:
                    advance_to(done, ev)
                    advance(ev - done)
                    done = ev
                on_event(ev)
                last_done = ev
                if save is not None and done >= next_ckpt:
                    save()
                    next_ckpt = done + checkpoint_every
                if interrupted.seen:  # the signal's KeyboardInterrupt was swallowed (raised in a __del__)
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        if save is not None:
            save()
        raise


class _InterruptFlag:
    """Context manager: while active, SIGINT raises KeyboardInterrupt as usual AND records that it came.

    Python ignores an exception raised inside a destructor or weakref callback ("Exception ignored in ..."),
    so a Ctrl-C that lands there would be lost and the run would go on to the end; the flag lets the event
    loop raise it at the next event instead. Installed only in the main thread and only where SIGINT has
    Python's default handler (a job started with SIGINT ignored keeps ignoring it).
    """

    def __init__(self) -> None:
        self.seen = False
        self._old: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        self.seen = True
        raise KeyboardInterrupt

    def __enter__(self) -> _InterruptFlag:
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None


def collect_results(samples: dict[str, list[float]], frames: list[tuple[int, np.ndarray]],
                    time_unit: float) -> tuple[Thermo, Trajectory | None]:
    """Thermo arrays and the trajectory (frames are ``(step, positions)``; time = step * time_unit)."""
    th = Thermo(**{k: np.asarray(v, dtype=np.float64) for k, v in samples.items()})
    if not frames:
        return th, None
    steps = np.array([s for s, _ in frames], dtype=np.int64)
    return th, Trajectory(times=steps * float(time_unit), steps=steps, positions=np.stack([p for _, p in frames]))
