"""The event loop shared by MD, MC and PGMC runs: interrupts and checkpoints."""

from __future__ import annotations

import os
import signal

import pytest

from glassgen.dynamics.schedule import run_events


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the ignored exception, on purpose
def test_an_interrupt_swallowed_in_a_destructor_still_stops_the_run():
    """A Ctrl-C whose KeyboardInterrupt lands in a destructor (where Python ignores exceptions) still stops the
    run at the next event, after a checkpoint; without the flag the run went on to its end."""

    class SignalOnDelete:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)

    reached, saved = [], []

    def advance_to(a, b):
        if a == 30:
            obj = SignalOnDelete()
            del obj  # the handler's KeyboardInterrupt is raised inside __del__ and ignored by Python
        reached.append(b)

    # as in a command run from a terminal (pytest-xdist workers ignore SIGINT, and the flag respects that)
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_events(100, range(0, 101, 10), -1, advance_to, lambda ev: None,
                       lambda: saved.append(reached[-1]), 1000)
    finally:
        signal.signal(signal.SIGINT, old)
    assert reached[-1] == 40 and saved == [40]
