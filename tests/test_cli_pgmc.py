"""glassgen pgmc train / run: end to end on tiny systems, provenance, resume, one-line errors (exit 2)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from glassgen.cli import main
from glassgen.sampling.policies import Policy


def test_train_then_run_writes_policy_and_trajectory(tmp_path, capsys):
    pol = tmp_path / "p.json"
    rc = main(["pgmc", "train", "--model", "ka2d", "--N", "43", "--T", "0.6", "--iterations", "5", "--trials", "20",
               "--chains", "2", "--equilibrate", "20", "--local-fraction", "0.2", "--seed", "3", "--out", str(pol),
               "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    p = Policy.load(pol)
    assert p.meta["model"] == "ka2d" and p.meta["T"] == 0.6 and p.meta["N"] == 43
    assert p.meta["provenance"]["seed"] == 3 and "glassgen_version" in p.meta["provenance"]
    assert p.move_probs[2] > 0 and not p.biased and p.pairs.tolist() == [[0, 2], [1, 2]]  # uniform by default
    out = tmp_path / "run.h5"
    trained = capsys.readouterr().out  # the summary names what was learned: Gaussian widths, no swap bias here
    assert "sigma_learned" in trained and "theta" not in trained
    rc = main(["pgmc", "run", "--policy", str(pol), "--sweeps", "40", "--chains", "2", "--seed", "4",
               "--out", str(out), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "U_per_N" in printed and "resumed: False" in printed.replace("  ", "")
    assert "gauss=" in printed and "local=" in printed and "swap=" in printed
    with h5py.File(out) as f:
        assert f.attrs["seed"] == 4 and f.attrs["model"] == "ka2d" and f.attrs["T"] == 0.6
        assert f.attrs["command"].startswith("glassgen pgmc run --policy")
        assert f["trajectory/positions"].shape[1:] == (2, 43, 2)
        assert f["energies"].shape[1] == 2 and np.all(np.isfinite(f["energies"][()]))
        assert json.loads(f.attrs["policy"])["format"] == Policy.load(pol).to_dict()["format"]
        run_summary = json.loads(f.attrs["summary"])
    assert not (tmp_path / "run.h5.ckpt.h5").exists()
    # the final state of chain 0 is a configuration every command takes as --input
    from glassgen.systems.io import read_configuration

    final = read_configuration(out)
    with h5py.File(out) as f:
        assert np.array_equal(final.positions, f["final/positions"][0]) and final.model.name == "ka2d"
    assert main(["minimize", "--input", str(out), "--out", str(tmp_path / "is.xyz")]) == 0
    # glassgen analyze reads the run: F_s pooled over the chains, time in sweeps, as the run's own summary
    capsys.readouterr()
    assert main(["analyze", str(out), "--out-dir", str(tmp_path / "an")]) == 0  # default q: the run's (2 pi in 2D)
    an = json.loads((tmp_path / "an" / "summary.json").read_text())
    assert an["q"] == run_summary["q"]
    assert an["chains"] == 2 and an["time_unit"] == "MC sweeps" and an["provenance"]["run_method"] == "pgmc"
    fs_table = np.loadtxt(tmp_path / "an" / "fs.txt")
    assert fs_table[-1, 0] == 40 and abs(fs_table[-1, 1] - run_summary["fs_final"]) < 1e-9  # the table keeps 10 digits
    for name in ("rdf.png", "msd.png", "fs.png", "rdf.txt", "ngp.txt", "chi4.png", "sq.png", "sq.txt"):
        assert (tmp_path / "an" / name).is_file()
    # chi_4 over the two chains at the last frame: N var(Q) from the stored unwrapped frames directly
    with h5py.File(out) as f:
        x = f["trajectory/positions"][()]
    stay = np.linalg.norm(x[-1] - x[0], axis=-1) < 0.3  # (chains, N)
    chi4_table = np.loadtxt(tmp_path / "an" / "chi4.txt")
    assert chi4_table[-1, 2] == pytest.approx(43 * np.var(stay.mean(axis=1), ddof=1), rel=1e-9, abs=1e-12)
    assert set(an["chi4_peak"]) == {"all", "A", "B", "C"}
    # a run stored without frames: a one-line error
    rc = main(["pgmc", "run", "--policy", str(pol), "--sweeps", "5", "--chains", "1", "--traj", "none",
               "--sample-every", "1", "--out", str(tmp_path / "noframes.h5"), "--no-progress"])
    assert rc == 0
    capsys.readouterr()
    assert main(["analyze", str(tmp_path / "noframes.h5")]) == 2
    err = capsys.readouterr().err
    assert "without trajectory frames" in err and len(err.strip().splitlines()) == 1


def test_config_file_and_bad_input(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('model = "ka2d"\nn = 20\nT = 0.8\nn_chains = 1\n[train]\niterations = 2\ntrials_per_chain = 10\n'
                   'equilibrate_sweeps = 5\n')
    assert main(["pgmc", "train", "--config", str(cfg), "--out", str(tmp_path / "p.json"), "--no-progress"]) == 0
    capsys.readouterr()
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nwhatever = 1\n")
    assert main(["pgmc", "train", "--config", str(bad), "--T", "1", "--out", str(tmp_path / "x.json")]) == 2
    assert "unknown key" in capsys.readouterr().err
    assert main(["pgmc", "train", "--model", "ka2d", "--N", "20", "--T", "-1", "--out", str(tmp_path / "y.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1
    assert main(["pgmc", "run", "--policy", str(tmp_path / "missing.json"), "--sweeps", "5",
                 "--out", str(tmp_path / "r.h5")]) == 2
    assert "policy file not found" in capsys.readouterr().err
    assert main(["pgmc", "train", "--model", "ka3d", "--N", "20", "--T", "1", "--swap-fraction", "0.2",
                 "--out", str(tmp_path / "z.json")]) == 2
    assert "no species pairs" in capsys.readouterr().err
    assert main(["pgmc", "run", "--policy", str(tmp_path / "p.json"), "--out", str(tmp_path / "r.h5")]) == 2
    assert "--sweeps" in capsys.readouterr().err
    for q in ("-1", "nan"):  # judged before the run (it was judged after it, leaving a checkpoint behind)
        assert main(["pgmc", "run", "--policy", str(tmp_path / "p.json"), "--sweeps", "400", "--q", q,
                     "--out", str(tmp_path / "q.h5")]) == 2
        assert "q must be positive" in capsys.readouterr().err
        assert not (tmp_path / "q.h5.ckpt.h5").exists()
    assert main(["pgmc", "train", "--model", "ka2d", "--N", "20", "--T", "1", "--flip", "0.5",
                 "--out", str(tmp_path / "f.json")]) == 2  # single-flip selection needs biased selection
    err = capsys.readouterr().err
    assert "--biased" in err and len(err.strip().splitlines()) == 1
    bare = Policy.default(3, 2).save(tmp_path / "bare.json")  # made in Python: no model, N or T recorded
    assert main(["pgmc", "run", "--policy", str(bare), "--sweeps", "5", "--out", str(tmp_path / "b.h5")]) == 2
    assert "records no temperature; pass --T" in capsys.readouterr().err
    assert main(["pgmc", "run", "--policy", str(bare), "--T", "1", "--sweeps", "5",
                 "--out", str(tmp_path / "b.h5")]) == 2
    assert "--model and --N" in capsys.readouterr().err


def test_train_with_single_flip_selection(tmp_path, capsys):
    """--biased --flip 0.5 starts phi at -0.5/T, learns it, saves it, and pgmc run uses it."""
    pol = tmp_path / "flip.json"
    rc = main(["pgmc", "train", "--model", "ka2d", "--N", "43", "--T", "0.5", "--iterations", "4", "--trials", "20",
               "--chains", "2", "--equilibrate", "20", "--biased", "--flip", "0.5", "--seed", "2", "--out", str(pol),
               "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    p = Policy.load(pol)
    assert p.biased and p.phi.shape == (2, 2) and np.all(p.phi < 0) and np.any(p.phi != -1.0)
    rc = main(["pgmc", "run", "--policy", str(pol), "--sweeps", "20", "--chains", "2", "--seed", "4",
               "--out", str(tmp_path / "run.h5"), "--no-progress"])
    assert rc == 0, capsys.readouterr().err


def test_pgmc_sample_entry_point(tmp_path):
    """The function for `glassgen sample --method pgmc`: trains a policy on the fly, then exact chains."""
    from glassgen.api_pgmc import pgmc_sample

    s = pgmc_sample(T=1.0, model="ka2d", n=20, n_samples=16, seed=1, out=tmp_path / "s.h5", n_chains=2,
                    sweeps_per_sample=2, train_iterations=3)
    assert s["method"] == "pgmc" and s["n_samples"] == 16
    assert (tmp_path / "s.h5.policy.json").is_file()
    # the measured default mixture: 80% environment-aware displacements and 20% swaps for small 2D systems
    assert np.allclose(Policy.load(tmp_path / "s.h5.policy.json").move_probs, [0.0, 0.8, 0.2])
    with h5py.File(tmp_path / "s.h5") as f:
        assert f["energies"].shape == (9, 2) and f.attrs["method"] == "pgmc"
        # the sampled states themselves are stored, each with the energy recorded for it (species as swapped)
        pos, spec, box = f["trajectory/positions"][()], f["trajectory/species"][()], f["box"][()]
        assert pos.shape == (9, 2, 20, 2) and np.array_equal(f["trajectory/sweeps"][()], f["sample_sweeps"][()])
        from glassgen.dynamics.forces import ForceField

        for k in (0, 4, 8):
            for c in range(2):
                u = ForceField("ka2d", spec[k, c], box, skin=0.0).energy(pos[k, c] - box * np.floor(pos[k, c] / box))
                assert u == pytest.approx(f["energies"][k, c], abs=1e-8)
    from PIL import Image

    assert s["plot"] == str(tmp_path / "s.png")  # as for every sample method: energy histogram and g(r)
    assert json.loads(Image.open(tmp_path / "s.png").text["Description"])["method"] == "pgmc"
    # a given policy brings its system: model and N (ka3d N = 64 with a KA2D policy was refused, reviewer's
    # finding), and its density to a run on that system (the model's default density was taken silently)
    assert main(["pgmc", "train", "--model", "ka2d", "--N", "20", "--density", "1.0", "--T", "1.0", "--iterations",
                 "2", "--chains", "2", "--out", str(tmp_path / "d.json"), "--no-progress"]) == 0
    s2 = pgmc_sample(T=1.0, n_samples=16, seed=1, out=tmp_path / "s2.h5", policy=tmp_path / "d.json", n_chains=2,
                     sweeps_per_sample=2)
    assert (s2["model"], s2["N"]) == ("ka2d", 20)
    assert main(["pgmc", "run", "--policy", str(tmp_path / "d.json"), "--sweeps", "20", "--chains", "2",
                 "--out", str(tmp_path / "r.h5"), "--no-progress"]) == 0
    for f in ("s2.h5", "r.h5"):
        with h5py.File(tmp_path / f) as h:
            assert np.allclose(h["box"][()], np.sqrt(20 / 1.0)), f
    # where a shipped generator's pool would give the starts (KA2D N = 43), it is at the model's density: not
    # used for a policy learned at another one
    assert main(["pgmc", "train", "--model", "ka2d", "--N", "43", "--density", "1.0", "--T", "0.5", "--iterations",
                 "2", "--chains", "2", "--out", str(tmp_path / "d43.json"), "--no-progress"]) == 0
    s3 = pgmc_sample(T=0.5, n_samples=16, seed=1, out=tmp_path / "s3.h5", policy=tmp_path / "d43.json", n_chains=2,
                     sweeps_per_sample=2)
    assert s3["chain_starts"] == "random state" and s3["N"] == 43
    with h5py.File(tmp_path / "s3.h5") as h:
        assert np.allclose(h["box"][()], np.sqrt(43 / 1.0))


@pytest.mark.parametrize("model, n, probs", [("ka2d", 20, [0.0, 0.8, 0.2]), ("ka2d", 120, [0.5, 0.3, 0.2]),
                                             ("ka3d", 20, [0.0, 1.0, 0.0]), ("ka2", 20, [0.0, 0.8, 0.2])])
def test_train_defaults_to_the_measured_local_fraction(tmp_path, capsys, model, n, probs):
    """Without --local-fraction, pgmc train mixes in environment-aware displacements at the fraction that
    measured fastest (0.8 for 2D systems of <= 100 particles, else 0.3; 1.0 in 3D, less the swaps of a model
    that has them: ka2), not Gaussian moves alone."""
    pol = tmp_path / "p.json"
    rc = main(["pgmc", "train", "--model", model, "--N", str(n), "--T", "1.0", "--iterations", "1", "--trials", "4",
               "--chains", "1", "--equilibrate", "2", "--seed", "1", "--out", str(pol), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert np.allclose(Policy.load(pol).move_probs, probs)
    rc = main(["pgmc", "train", "--model", model, "--N", str(n), "--T", "1.0", "--iterations", "1", "--trials", "4",
               "--chains", "1", "--equilibrate", "2", "--seed", "1", "--local-fraction", "0", "--out",
               str(tmp_path / "g.json"), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert Policy.load(tmp_path / "g.json").move_probs[1] == 0.0


def test_pgmc_chains_start_from_the_generator_pool():
    """sample --method pgmc starts its chains from equilibrium configurations of the shipped generator's pool
    nearest T from above (KA2D N = 43: swap-MC pools at 0.35 ... 0.6), or from a random state without one."""
    from glassgen.api_pgmc import generator_pool_starts
    from glassgen.systems.model import load_model

    got = generator_pool_starts("ka2d", 43, 0.45, 3)
    assert got is not None
    confs, t_h = got
    assert t_h == 0.5 and len(confs) == 3
    from glassgen.dynamics.batch import model_energy

    for c in confs:
        assert c.positions.shape == (43, 2) and np.all((c.positions >= 0) & (c.positions < c.box))
        assert np.array_equal(np.bincount(c.species, minlength=3), [20, 11, 12])
        u = model_energy(load_model("ka2d"), c.species, c.box)(c.positions[None])[0] / 43
        assert -2.55 < u < -2.2, u  # equilibrium at T = 0.5: U/N = -2.378 +- ~0.04 per configuration
    assert not np.array_equal(confs[0].positions, confs[1].positions)
    assert generator_pool_starts("ka2d", 44, 0.45, 2) is None  # no shipped generator for N = 44
    assert generator_pool_starts("ka2d", 43, 0.2, 2)[1] == 0.35  # below every pool: the coldest one



def test_summaries_name_only_the_moves_a_policy_makes():
    """A policy without Gaussian moves reported the untouched initial widths and acceptance gauss=nan."""
    from glassgen.api_pgmc import _used

    pol = Policy.default(3, 2, local_fraction=0.8, swap_fraction=0.2)
    assert pol.move_probs[0] == 0
    assert _used({"gauss": float("nan"), "local": 0.5, "swap": 0.1}, pol) == {"local": 0.5, "swap": 0.1}
