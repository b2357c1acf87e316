"""The event loop shared by MD, MC and PGMC runs: interrupts and checkpoints."""

from __future__ import annotations

import os
import signal

import numpy as np
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


def test_a_ctrl_c_stops_at_the_next_event_and_a_second_at_once(sigint_as_in_a_terminal):
    """The first Ctrl-C lets the advance in progress finish, then the event is recorded and a checkpoint
    written before the run stops; a second Ctrl-C stops at once and writes none."""
    reached, recorded, saved = [], [], []

    def advance_once(a, b):
        if a == 30:
            os.kill(os.getpid(), signal.SIGINT)
        reached.append(b)  # the rest of the advance still runs

    with pytest.raises(KeyboardInterrupt):
        run_events(100, range(0, 101, 10), -1, advance_once, recorded.append, lambda: saved.append(reached[-1]),
                   1000)
    assert reached[-1] == 40 and recorded[-1] == 40 and saved == [40]

    reached.clear(), saved.clear()

    def advance_twice(a, b):
        if a == 30:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # raises here
        reached.append(b)

    with pytest.raises(KeyboardInterrupt):
        run_events(100, range(0, 101, 10), -1, advance_twice, lambda ev: None, lambda: saved.append(1), 1000)
    assert reached[-1] == 30 and saved == []


def test_where_a_ctrl_c_stops_a_run(sigint_as_in_a_terminal):
    """Without checkpoints a Ctrl-C stops at once (an unsaved equilibration once ran to its end first); with
    them it waits at most checkpoint_every (its multiples are event points) and a Ctrl-C during the last
    advance lets the run finish."""
    def signal_at(at):
        def advance(a, b):
            reached.append(a)
            if a == at:
                os.kill(os.getpid(), signal.SIGINT)
            reached.append(b)
        return advance

    reached, recorded, saved = [], [], []
    with pytest.raises(KeyboardInterrupt):
        run_events(100, [0, 100], -1, signal_at(0), recorded.append, None, 10)
    assert reached == [0] and recorded == [0]  # raised inside the advance: nothing to save, nothing waited for
    reached.clear(), recorded.clear()
    with pytest.raises(KeyboardInterrupt):
        run_events(100, [0, 100], -1, signal_at(0), recorded.append, lambda: saved.append(reached[-1]), 10)
    assert reached == [0, 10] and recorded == [0, 10] and saved == [10]  # waited one checkpoint interval
    reached.clear(), recorded.clear(), saved.clear()
    run_events(100, range(0, 101, 10), -1, signal_at(90), recorded.append, lambda: saved.append(1), 1000)
    assert recorded[-1] == 100 and saved == []  # finished: the caller writes the output


def _split_with_ctrl_c(obj, method: str, call: int, signal_it: bool) -> None:
    """Replace ``obj.<method>(n)`` by two calls of n/2 at its ``call``-th use, with a SIGINT between them when
    ``signal_it``: a Ctrl-C landing in the middle of an advance (between steps of MD, between kernel calls of MC
    and PGMC)."""
    orig = getattr(obj, method)
    count = [0]

    def split(n, *args, **kw):
        count[0] += 1
        if count[0] != call or n < 2:
            return orig(n, *args, **kw)
        orig(n // 2, *args, **kw)
        if signal_it:
            os.kill(os.getpid(), signal.SIGINT)
        return orig(n - n // 2, *args, **kw)

    setattr(obj, method, split)


def _ctrl_c_after(obj, method: str, call: int, signal_it: bool) -> None:
    """A SIGINT right after the ``call``-th use of ``obj.<method>`` (when ``signal_it``; ``method`` may be dotted)."""
    *path, method = method.split(".")
    for name in path:
        obj = getattr(obj, name)
    orig = getattr(obj, method)
    count = [0]

    def then_signal(*args, **kw):
        out = orig(*args, **kw)
        count[0] += 1
        if signal_it and count[0] == call:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    setattr(obj, method, then_signal)


def _interrupted_and_resumed(make, method: str, run, ck, where=_split_with_ctrl_c):
    """(uninterrupted result, result of a run interrupted mid-advance and resumed from its checkpoint)."""
    a = make()
    where(a, method, 7, False)
    ra = run(a, None)
    b = make()
    where(b, method, 7, True)
    with pytest.raises(KeyboardInterrupt):
        run(b, ck)
    assert ck.is_file()
    return ra, run(make(), ck)


def test_md_interrupted_mid_advance_resumes_bitwise(sigint_as_in_a_terminal, tmp_path):
    """A Ctrl-C between two MD steps of an advance: the resumed run is the uninterrupted one, bit for bit (the
    checkpoint was once written in the middle, with the neighbour list rebuilt, and the runs parted)."""
    from glassgen.dynamics.initial import random_state
    from glassgen.dynamics.md import MDSimulation

    conf = random_state("ka3d", 120, seed=4)
    ra, rb = _interrupted_and_resumed(
        lambda: MDSimulation(conf, T=0.8, seed=3, init_velocities=True), "step",
        lambda sim, ck: sim.run(600, thermo_every=50, traj_steps=[0, 200, 600], checkpoint=ck,
                                checkpoint_every=10_000), tmp_path / "md.ckpt.h5")
    assert np.array_equal(ra.final.positions, rb.final.positions)
    assert np.array_equal(ra.final.velocities, rb.final.velocities)
    assert np.array_equal(ra.thermo.potential, rb.thermo.potential)
    assert np.array_equal(ra.trajectory.positions, rb.trajectory.positions)


def test_mc_interrupted_mid_advance_resumes_bitwise(sigint_as_in_a_terminal, tmp_path):
    """A Ctrl-C among the random draws of a sweep block once saved the stream past draws never used."""
    from glassgen.dynamics.initial import random_state
    from glassgen.dynamics.mc import MonteCarlo

    conf = random_state("ka2d", 60, seed=3)

    class Draws:  # the chain's generator, through which a SIGINT lands among the random draws of a sweep
        def __init__(self, rng):
            self._rng = rng

        def __getattr__(self, name):
            return getattr(self._rng, name)

    def make():
        mc = MonteCarlo(conf, 0.8, delta=0.15, swap_fraction=0.2, seed=9)
        mc.rng = Draws(mc.rng)
        return mc

    ra, rb = _interrupted_and_resumed(
        make, "rng.random",
        lambda mc, ck: mc.run(120, sample_every=10, traj_sweeps=[0, 30, 120], checkpoint=ck,
                              checkpoint_every=10_000), tmp_path / "mc.ckpt.h5", where=_ctrl_c_after)
    assert np.array_equal(ra.final.positions, rb.final.positions)
    assert np.array_equal(ra.final.species, rb.final.species)
    assert np.array_equal(ra.thermo.potential, rb.thermo.potential)
    assert np.array_equal(ra.trajectory.positions, rb.trajectory.positions)


def test_pgmc_interrupted_mid_advance_resumes_bitwise(sigint_as_in_a_terminal, tmp_path):
    """A Ctrl-C after the first chain's kernel call of a sweep block, before the second chain's, once left a
    checkpoint with the chains at different sweeps ("energy bookkeeping drifted" on every resume)."""
    from glassgen.dynamics.initial import random_state
    from glassgen.sampling.pgmc import PGMC, PGMCTarget
    from glassgen.sampling.policies import Policy

    conf = random_state("ka2d", 60, seed=3)
    m = conf.model
    pol = Policy.default(3, 2, sigma=0.1, local_fraction=0.3, swap_fraction=0.2, biased=True, counts=m.counts(60))
    tg = PGMCTarget.from_model(m, conf.box, 0.6)
    ra, rb = _interrupted_and_resumed(
        lambda: PGMC(tg, pol, [conf] * 2, seed=9), "_call",
        lambda p, ck: p.run(120, sample_every=10, frame_sweeps=[0, 30, 120], checkpoint=ck,
                            checkpoint_every=10_000), tmp_path / "pgmc.ckpt.h5", where=_ctrl_c_after)
    assert np.array_equal(ra.final_positions, rb.final_positions)
    assert np.array_equal(ra.final_species, rb.final_species)
    assert np.array_equal(ra.energies, rb.energies)
    assert np.array_equal(ra.frames, rb.frames)


def test_md_state_keeps_the_thermostats_kinetic_energy_bit_for_bit():
    """The NHC rescales sum m v^2 step by step; recomputed from the velocities it differs in the last bit, and
    a resumed run parted from the uninterrupted one (a reviewer saw 7e-10 in U after 500 steps). The state
    keeps it: a restored simulation continues bit for bit from a point where the two values differ."""
    from glassgen.dynamics.initial import random_state
    from glassgen.dynamics.md import MDSimulation

    conf = random_state("ka3d", 120, seed=4)
    sim = MDSimulation(conf, T=0.8, seed=3, init_velocities=True)
    for _ in range(100):
        sim.step(7)
        if sim.k2 != float(np.sum(sim.masses[:, None] * sim.velocities**2)):
            break
    else:
        raise AssertionError("no step where the carried and the recomputed sum m v^2 differ")
    twin = MDSimulation(conf, T=0.8, seed=3, init_velocities=True)
    twin.restore_state({k: np.copy(v) if isinstance(v, np.ndarray) else v for k, v in sim.state().items()})
    assert twin.k2 == sim.k2
    sim.step(300)
    twin.step(300)
    assert np.array_equal(sim.positions, twin.positions) and sim.potential == twin.potential


def _md_datasets(path) -> dict:
    import h5py

    with h5py.File(path) as f:
        return {k: f[k][()] for k in ("configuration/positions", "configuration/velocities", "thermo/potential",
                                      "thermo/kinetic", "trajectory/positions")}


@pytest.mark.parametrize("equilibrate, signal_after", [(300, 2), (100, 1)])
def test_md_run_interrupted_in_its_equilibration_resumes_it(sigint_as_in_a_terminal, tmp_path, monkeypatch,
                                                            equilibrate, signal_after):
    """`md run --equilibrate`: a Ctrl-C in the middle of the equilibration (300 steps, checkpoints every 100)
    keeps its checkpoint and the rerun continues it (the rerun once skipped the rest of the equilibration: its
    output was that of --equilibrate 0); a Ctrl-C during its last stretch (100 steps: one advance) stops the run
    at the production's first event point with a checkpoint there (it was forgotten and the run went on to its
    end). Both reruns give the uninterrupted output, bit for bit."""
    from glassgen import api
    from glassgen.dynamics.md import MDSimulation

    kw = dict(T=0.8, steps=200, model="ka3d", n=64, equilibrate_steps=equilibrate, checkpoint_every=100,
              thermo_every=50, seed=3, plot=False)
    api.md_run(out=tmp_path / "ref.h5", **kw)
    api.md_run(out=tmp_path / "plain.h5", **(kw | {"equilibrate_steps": 0}))
    orig = MDSimulation.step
    monkeypatch.setattr(MDSimulation, "step", orig)  # (restored after the test)
    _ctrl_c_after(MDSimulation, "step", signal_after, True)
    out = tmp_path / "x.h5"
    with pytest.raises(KeyboardInterrupt):
        api.md_run(out=out, **kw)
    kept = tmp_path / ("x.h5.eq.ckpt.h5" if equilibrate == 300 else "x.h5.ckpt.h5")
    assert kept.is_file() and not out.exists()
    monkeypatch.setattr(MDSimulation, "step", orig)
    assert api.md_run(out=out, **kw)["resumed"]
    ref, got, plain = (_md_datasets(tmp_path / n) for n in ("ref.h5", "x.h5", "plain.h5"))
    for k in ref:
        assert np.array_equal(ref[k], got[k]), k
    assert not np.array_equal(ref["thermo/potential"], plain["thermo/potential"])  # the equilibration matters


@pytest.mark.filterwarnings("ignore:chains of")  # a short run: the error bar is a lower bound
def test_pgmc_run_interrupted_in_its_equilibration_resumes_it(sigint_as_in_a_terminal, tmp_path, monkeypatch):
    """`pgmc run --equilibrate`: the equilibration is a checkpointed run (`<out>.eq.ckpt.h5`; a Ctrl-C there lost
    it all); interrupted in its middle, the rerun continues it and gives the uninterrupted output bit for bit."""
    import h5py

    from glassgen.api_pgmc import pgmc_run
    from glassgen.sampling.pgmc import PGMC
    from glassgen.sampling.policies import Policy

    pol = Policy.default(3, 2, sigma=0.1, local_fraction=0.3, swap_fraction=0.2).save(tmp_path / "p.json")
    kw = dict(policy=pol, sweeps=40, T=0.6, model="ka2d", n=43, seed=2, n_chains=2, equilibrate_sweeps=60,
              sample_every=10, checkpoint_every=20)
    pgmc_run(out=tmp_path / "ref.h5", **kw)
    orig = PGMC.sweep
    monkeypatch.setattr(PGMC, "sweep", orig)  # (restored after the test)
    _ctrl_c_after(PGMC, "sweep", 2, True)  # the second block of the equilibration (sweeps 20-40 of 60)
    out = tmp_path / "x.h5"
    with pytest.raises(KeyboardInterrupt):
        pgmc_run(out=out, **kw)
    assert (tmp_path / "x.h5.eq.ckpt.h5").is_file() and not (tmp_path / "x.h5.ckpt.h5").exists()
    monkeypatch.setattr(PGMC, "sweep", orig)
    assert pgmc_run(out=out, **kw)["resumed"]
    assert not (tmp_path / "x.h5.eq.ckpt.h5").exists()
    with h5py.File(tmp_path / "ref.h5") as a, h5py.File(out) as b:
        for k in ("energies", "final/positions", "final/species", "trajectory/positions"):
            assert np.array_equal(a[k][()], b[k][()]), k


def test_pgmc_learning_interrupted_stops_after_the_iteration_and_resumes(sigint_as_in_a_terminal, tmp_path,
                                                                        monkeypatch):
    """A Ctrl-C during a learning iteration of `pgmc train` lets the iteration finish, saves the checkpoint
    there and stops (inside the command's Ctrl-C scope it was only recorded, so learning went on); the rerun
    learns the same policy as an uninterrupted run."""
    import json

    from glassgen.api_pgmc import pgmc_train
    from glassgen.sampling.pgmc import PGMC

    kw = dict(T=0.6, model="ka2d", n=43, seed=3, iterations=6, equilibrate_sweeps=20, n_chains=2,
              trials_per_chain=40)
    pgmc_train(out=tmp_path / "ref.json", **kw)
    orig, done = PGMC.trials, []
    monkeypatch.setattr(PGMC, "trials", lambda self, *a, **k: done.append(1) or orig(self, *a, **k))
    _ctrl_c_after(PGMC, "trials", 3, True)  # during the third iteration
    out = tmp_path / "x.json"
    with pytest.raises(KeyboardInterrupt):
        pgmc_train(out=out, **kw)
    assert len(done) == 3 and (tmp_path / "x.json.ckpt.h5").is_file()  # the iteration ended, no other began
    monkeypatch.setattr(PGMC, "trials", orig)
    assert pgmc_train(out=out, **kw)["resumed"]
    a, b = json.loads((tmp_path / "ref.json").read_text()), json.loads(out.read_text())
    for k in ("log_sigma", "ls0", "W1", "b1", "W2", "b2", "theta", "phi"):
        assert a[k] == b[k], k
    assert a["meta"]["history_tail"] == b["meta"]["history_tail"]
