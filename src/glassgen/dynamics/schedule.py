"""The checkpointed event loop shared by every simulation driver (MD, MC, ...).

A run is a sorted list of event points (steps or sweeps) at which something is recorded. The loop
advances the simulation from one event to the next, calls ``on_event``, and saves a checkpoint
every ``checkpoint_every`` units and at the first event point after a Ctrl-C. A resumed run skips the events
already processed.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from glassgen.dynamics.results import Thermo, Trajectory
from glassgen.errors import InputError
from glassgen.progress import progress_bar

__all__ = ["run_events", "collect_results", "new_samples", "check_resumed_schedule", "open_checkpoint",
           "DeferredInterrupt"]


def new_samples() -> dict[str, list[float]]:
    """Empty thermo sample lists, one per :class:`Thermo` field."""
    return {k: [] for k in Thermo.__dataclass_fields__}


def open_checkpoint(path: Any, signature: str) -> Any:
    """Open a run's checkpoint (h5py.File, read-only; the caller closes it) after checking it is one of this run:
    one-line errors for an unreadable file, a file without a run signature and another run's checkpoint."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"checkpoint {path} cannot be read ({' '.join(str(exc).split())}); delete it or change "
                         "--out") from None
    if "signature" not in f.attrs:
        f.close()
        raise InputError(f"{path} is not a checkpoint of this command (no run signature); delete it or change --out")
    if str(f.attrs["signature"]) != signature:
        f.close()
        raise InputError(f"checkpoint {path} belongs to a different run; delete it or change --out")
    return f


def check_resumed_schedule(path: Any, last_done: int, frame_events: Iterable[int], wanted: Iterable[int],
                           n_samples: int, sample_every: int, total: int, what: str = "run") -> None:
    """Refuse to resume a checkpoint written with another recording schedule.

    The frames and samples already taken (relative event points <= ``last_done``) must be those the schedule
    asked for now would have taken; otherwise the output would mix two schedules in one file (e.g. log-spaced
    frames up to the interruption and linear ones after, which no analysis can read), so the run is refused
    with a one-line error.

    Args:
        path: the checkpoint (for the message).
        last_done: last event point the checkpoint processed.
        frame_events: relative event points of the frames in the checkpoint.
        wanted: relative event points of the frames asked for now.
        n_samples: thermo samples in the checkpoint; sample_every: the sampling interval asked for now.
        total: the run's length asked for now.
        what: ``"run"``, or ``"equilibration"`` for the checkpoint of an unrecorded equilibration (whose length
            is the option that differs).
    """
    if last_done < 0:
        return
    if last_done > total:
        raise InputError(f"the checkpoint {path} is at {last_done} of a longer {what} than the {total} asked for "
                         "now: give the original length, or another --out")
    if what != "run":
        opts = "the equilibration length (--equilibrate...)"
        if n_samples != last_done // sample_every + 1:
            raise InputError(f"checkpoint {path} was written with another {opts}; give the original one, or delete "
                             "it or change --out")
        return
    if sorted(int(e) for e in frame_events) != sorted(int(s) for s in wanted if s <= last_done):
        raise InputError(f"checkpoint {path} was written with another trajectory schedule (--traj, --traj-every, "
                         "--traj-blocks, or a --steps/--sweeps that sets its spacing): resuming would mix two "
                         "schedules in one file; give the original options, or delete it or change --out")
    if n_samples != last_done // sample_every + 1:
        raise InputError(f"checkpoint {path} was written with another sampling interval (--thermo-every or "
                         "--sample-every); give the original one, or delete it or change --out")


def run_events(total: int, events: Iterable[int], last_done: int, advance_to: Callable[[int, int], None],
               on_event: Callable[[int], None], save: Callable[[], None] | None, checkpoint_every: int,
               progress: bool = False, label: str = "run") -> None:
    """Drive a simulation through ``events`` (relative units, sorted, within [0, total]).

    With checkpoints (``save``), a Ctrl-C is deferred to the next event point, where the state is whole (no move
    or step half done), and the checkpoint is written there as a periodic one would be, so the resumed run is the
    uninterrupted one; the multiples of ``checkpoint_every`` are event points too, so the wait is at most that
    long. A second Ctrl-C stops at once and keeps the last periodic checkpoint. A Ctrl-C during the last advance
    lets the run finish. Without checkpoints a Ctrl-C stops at once (nothing would be kept by waiting).

    Args:
        total: length of the run (for the progress bar).
        events: event points; those <= ``last_done`` were processed before a resume and are skipped.
        last_done: last event processed (-1 for a fresh run).
        advance_to: ``advance_to(current, target)`` moves the simulation from ``current`` to ``target``.
        on_event: records whatever is due at an event point.
        save: writes a checkpoint (None: no checkpoints); also called at the event point after a Ctrl-C.
        checkpoint_every: units between checkpoints.
    """
    if last_done > total:
        raise InputError(f"the checkpoint is at {last_done} of a longer run than the {total} asked for now: "
                         "give the original length, or another --out")
    done = max(last_done, 0)
    next_ckpt = done + checkpoint_every
    if save is not None:  # bound the wait of a deferred Ctrl-C (on_event records only what is due at a point)
        events = sorted(set(events) | set(range(0, total + 1, max(1, int(checkpoint_every)))))
    with DeferredInterrupt(active=save is not None) as interrupted, progress_bar(total, label, progress) as advance:
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
            if ev >= total:  # the run is complete: a Ctrl-C during its last advance lets it finish
                break
            if save is not None and (done >= next_ckpt or interrupted.seen):
                save()
                next_ckpt = done + checkpoint_every
            if interrupted.seen:
                raise KeyboardInterrupt


class DeferredInterrupt:
    """Context manager: while active, a first SIGINT only records that it came (the event loop stops at the next
    event point, where the state is consistent); a second one raises KeyboardInterrupt at once.

    Installed only in the main thread and only where SIGINT has Python's default handler (a job started with
    SIGINT ignored keeps ignoring it; elsewhere a Ctrl-C raises where it lands and no checkpoint is written
    for it). Scopes nest: one entered while another is installed shares its record, so a job of several
    phases (an equilibration, then the run; the temperatures of a sweep) wraps them in one scope, and a
    Ctrl-C that came during a phase's last stretch (which a phase lets finish) stops the job at the next
    phase's first event point instead of being forgotten when the phase's own scope closes. While installed,
    a KeyboardInterrupt that Python cannot raise (it landed in a destructor or a weakref callback, where it is
    "ignored") is not printed as a traceback: the recorded Ctrl-C stops the run at the next event point.
    """

    _installed: DeferredInterrupt | None = None

    def __init__(self, active: bool = True) -> None:
        self._seen = False
        self.active = active
        self._old: Any = None
        self._old_hook: Any = None
        self._parent: DeferredInterrupt | None = None

    @property
    def seen(self) -> bool:
        """Whether a Ctrl-C came while this scope (or the scope it shares) was installed."""
        return self._parent.seen if self._parent is not None else self._seen

    def _handler(self, signum: int, frame: Any) -> None:
        if self._seen:
            raise KeyboardInterrupt
        self._seen = True

    @staticmethod
    def _unraisable(hook: Any) -> Any:
        def quiet(unraisable: Any) -> None:
            if not isinstance(unraisable.exc_value, KeyboardInterrupt):
                hook(unraisable)
        return quiet

    def __enter__(self) -> DeferredInterrupt:
        if not self.active:
            return self
        if DeferredInterrupt._installed is not None:
            self._parent = DeferredInterrupt._installed
        elif (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._old = signal.signal(signal.SIGINT, self._handler)
            self._old_hook = sys.unraisablehook
            sys.unraisablehook = self._unraisable(self._old_hook)
            DeferredInterrupt._installed = self
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            sys.unraisablehook = self._old_hook
            self._old = self._old_hook = None
            DeferredInterrupt._installed = None
        self._parent = None


def collect_results(samples: dict[str, list[float]], frames: list[tuple[Any, ...]],
                    time_unit: float) -> tuple[Thermo, Trajectory | None]:
    """Thermo arrays and the trajectory (frames are ``(step, positions)`` or ``(step, positions, species)``;
    time = step * time_unit)."""
    th = Thermo(**{k: np.asarray(v, dtype=np.float64) for k, v in samples.items()})
    if not frames:
        return th, None
    steps = np.array([fr[0] for fr in frames], dtype=np.int64)
    species = np.stack([fr[2] for fr in frames]) if len(frames[0]) > 2 else None
    return th, Trajectory(times=steps * float(time_unit), steps=steps, positions=np.stack([fr[1] for fr in frames]),
                          species=species)
