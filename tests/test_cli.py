"""The command line: help with examples, outputs with provenance, one-line errors, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from glassgen.cli import main

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [["md", "run"], ["mc", "run"], ["minimize"], ["analyze"], ["init"], ["models"]]
GROUPS = [[], ["md"], ["mc"], ["flow"], ["dataset"], ["bench"], ["predict"], ["pgmc"], ["trap-model"],
          ["step-model"], ["experiment"]]


def run_cli(args: list[str], cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "glassgen.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_has_examples(cmd, capsys):
    assert main([*cmd, "--help"]) == 0
    out = capsys.readouterr().out
    if cmd != ["models"]:
        assert "Example" in out and "glassgen" in out


def test_md_run_analyze_end_to_end(tmp_path):
    out = tmp_path / "md.h5"
    r = run_cli(["md", "run", "--model", "ka3d", "--N", "108", "--T", "1.0", "--steps", "600", "--seed", "5",
                 "--equilibrate", "200", "--out", str(out)])
    assert r.returncode == 0, r.stderr
    with h5py.File(out) as f:
        for key in ("command", "glassgen_version", "seed", "model", "T", "time"):
            assert key in f.attrs
        assert f.attrs["seed"] == 5 and f.attrs["model"] == "ka3d"
        assert f.attrs["equilibrate_steps"] == 200  # --equilibrate: unrecorded NVT steps first
        assert f["trajectory/positions"].shape[1:] == (108, 3)
        assert f["thermo/potential"].shape[0] > 3
    assert (tmp_path / "md.thermo.png").is_file()
    r = run_cli(["analyze", str(out), "--out-dir", str(tmp_path / "an")])
    assert r.returncode == 0, r.stderr
    for name in ("rdf.png", "msd.png", "fs.png", "summary.json", "fs.txt", "chi4.png", "chi4.txt", "sq.png", "sq.txt"):
        assert (tmp_path / "an" / name).is_file()
    # every output carries the analysed run's provenance (model, T, seed), the plots in their PNG text
    import json

    from PIL import Image

    def run_record(text: str) -> dict:
        rec = json.loads(text)
        return rec.get("provenance", rec)

    pngs = [Image.open(tmp_path / "md.thermo.png").text["Description"],
            *(Image.open(tmp_path / "an" / n).text["Description"] for n in ("rdf.png", "msd.png", "fs.png"))]
    header = (tmp_path / "an" / "fs.txt").read_text().splitlines()[0].split("provenance:", 1)[1]
    for rec in [run_record(t) for t in pngs[1:]] + [run_record(header),
                                                    run_record((tmp_path / "an" / "summary.json").read_text())]:
        assert rec["run_model"] == "ka3d" and rec["run_seed"] == 5 and rec["run_T"] == 1.0, rec
    thermo = run_record(pngs[0])
    assert thermo["model"] == "ka3d" and thermo["seed"] == 5 and thermo["T"] == 1.0, thermo


def test_same_seed_same_result(tmp_path):
    outs = []
    for k in range(2):
        out = tmp_path / f"mc{k}.h5"
        assert main(["mc", "run", "--model", "ka2d", "--N", "40", "--T", "0.8", "--sweeps", "50",
                     "--swap-fraction", "0.2", "--seed", "3", "--out", str(out), "--no-progress"]) == 0
        with h5py.File(out) as f:
            outs.append(f["configuration/positions"][()])
    assert np.array_equal(outs[0], outs[1])
    # an MC run's frames are counted in sweeps, and analyze says so (it printed "time_unit: 1"); with one time
    # origin (the default --traj-blocks 1) chi_4 is NaN, and analyze says why
    with pytest.warns(UserWarning, match="chi_4 is NaN: one time origin"):
        assert main(["analyze", str(tmp_path / "mc0.h5"), "--out-dir", str(tmp_path / "an")]) == 0
    summary = json.loads((tmp_path / "an" / "summary.json").read_text())
    assert summary["time_unit"] == "MC sweeps" and summary["provenance"]["time_unit"] == "MC sweeps"
    assert summary["chi4_samples_per_lag"] == [1, 1]


def _bad(tmp_path: Path, args: list[str], capsys) -> str:
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("group", GROUPS)
def test_group_help_has_examples(group, capsys):
    assert main([*group, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Examples:" in out and "glassgen " in out.split("Examples:")[1]


def test_analyze_says_which_files_it_reads(tmp_path, capsys):
    """analyze on a file glassgen wrote that holds no trajectory (a model run, an npz): one line naming the files
    it reads and, where recorded, the command that wrote the file (it printed h5py's 'file signature not found')."""
    np.savez(tmp_path / "d.npz", positions=np.zeros((4, 3)))
    msg = _bad(tmp_path, ["analyze", str(tmp_path / "d.npz")], capsys)
    assert "is not an HDF5 file" in msg and "md run, mc run and pgmc run" in msg
    with h5py.File(tmp_path / "m.h5", "w") as f:
        f.attrs["command"] = "/opt/venv/bin/glassgen trap-model run --model bouchaud --T 2"
        f["result"] = np.zeros(3)
    msg = _bad(tmp_path, ["analyze", str(tmp_path / "m.h5")], capsys)
    assert "holds no trajectory (this file was written by `glassgen trap-model run`)" in msg


def test_malformed_values_one_line_exit_2(tmp_path, capsys):
    """Values of the wrong kind inside otherwise readable files and configs: one line naming the problem."""
    o = str(tmp_path / "x.h5")
    assert "density" in _bad(tmp_path, ["init", "--model", "ka3d", "--N", "20", "--density", "0", "--out", o],
                             capsys)
    # an HDF5 configuration whose box has the wrong length, and one whose model record is garbage
    for name, box, attrs in (("box.h5", [4.0, 4.0], {"model": "ka3d"}), ("rec.h5", 4.0, {"model_toml": "{{oops"})):
        with h5py.File(tmp_path / name, "w") as f:
            g = f.create_group("configuration")
            g["positions"] = np.random.default_rng(0).uniform(0, 4, (8, 3))
            g["species"] = np.zeros(8, np.int32)
            g["box"] = np.asarray(box)
            for k, v in attrs.items():
                g.attrs[k] = v
    assert "box" in _bad(tmp_path, ["minimize", "--input", str(tmp_path / "box.h5"), "--out", o], capsys)
    assert "model_toml" in _bad(tmp_path, ["minimize", "--input", str(tmp_path / "rec.h5"), "--out", o], capsys)
    xyz = tmp_path / "cell.xyz"
    xyz.write_text("2\ncell:abc,2,3\nA 0 0 0\nA 1 1 1\n")
    assert "malformed xyz" in _bad(tmp_path, ["minimize", "--input", str(xyz), "--model", "ka3d", "--out", o],
                                   capsys)
    lmp = tmp_path / "bad.data"
    lmp.write_text("LAMMPS data\n\nx atoms\n1 atom types\n\nAtoms\n\n1 1 0 0 0\n")
    assert "malformed LAMMPS" in _bad(tmp_path, ["minimize", "--input", str(lmp), "--model", "ka3d", "--out", o],
                                      capsys)
    # configs with values of the wrong type
    for body, word in (('model = "ka3d"\nn = "ten"\n', "n must be int"),
                       ('model = "ka3d"\nn = 10.5\n', "n must be int"),  # 1.2e1 would be read as 12
                       ('model = "ka3d"\nn = 10\nT = "hot"\n', "T must be int or float")):
        cfg = tmp_path / "c.toml"
        cfg.write_text(body + f'out = "{o}"\n')
        assert word in _bad(tmp_path, ["init", "--config", str(cfg)], capsys)
    trap = tmp_path / "trap.toml"
    trap.write_text(f'model = "bouchaud"\nT = "hot"\nN = 10\nout = "{tmp_path / "t.h5"}"\n')
    assert "T must be int or float, got 'hot'" in _bad(tmp_path, ["trap-model", "run", "--config", str(trap)], capsys)
    # a model file with a NaN parameter
    from glassgen.systems.model import load_model

    text = load_model("ka3d").source_text.replace("epsilon = [[1.0,", "epsilon = [[nan,")
    assert "nan" in text
    (tmp_path / "nanm.toml").write_text(text)
    assert "epsilon[0][0] is NaN" in _bad(tmp_path, ["init", "--model", str(tmp_path / "nanm.toml"), "--N", "20",
                                                     "--out", o], capsys)
    assert "--T" in _bad(tmp_path, ["md", "export-lammps", "--model", "ka3d", "--N", "20", "--steps", "10",
                                    "--out-dir", str(tmp_path / "lmp")], capsys)
    traj = tmp_path / "traj.h5"
    with h5py.File(traj, "w") as f:
        g = f.create_group("trajectory")
        g.attrs["format"] = "glassgen-trajectory"
        g["times"] = np.arange(3.0)
        g["steps"] = np.arange(3)
        g["species"] = np.zeros(4, np.int32)
        g["box"] = np.full(3, 4.0)
    assert "malformed trajectory" in _bad(tmp_path, ["analyze", str(traj)], capsys)
    txt = tmp_path / "p.npz"
    txt.write_text("not a zip\n")
    assert "not a predictor file" in _bad(tmp_path, ["predict", "score", str(txt), str(xyz), "--out",
                                                     str(tmp_path / "s.npz")], capsys)
    assert not Path(o).exists()


def test_unexpected_failure_is_one_line(tmp_path, capsys, monkeypatch):
    """A failure no check foresaw still ends in one line and a non-zero exit; GLASSGEN_DEBUG=1 re-raises."""
    import glassgen.api

    def boom(**kw):
        raise RuntimeError("something\nunforeseen")

    monkeypatch.setattr(glassgen.api, "init_state", boom)
    args = ["init", "--model", "ka3d", "--N", "20", "--out", str(tmp_path / "x.h5")]
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "RuntimeError: something unforeseen" in err[0] and "GLASSGEN_DEBUG" in err[0]
    monkeypatch.setenv("GLASSGEN_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(args)


def test_bad_inputs_one_line_exit_2(tmp_path, capsys, data):
    o = str(tmp_path / "x.h5")
    assert "not found" in _bad(tmp_path, ["md", "run", "--input", str(tmp_path / "nope.xyz"), "--model", "ka3d",
                                          "--T", "1", "--steps", "10", "--out", o], capsys)
    assert "unknown model" in _bad(tmp_path, ["md", "run", "--model", "lj99", "--N", "10", "--T", "1",
                                              "--steps", "10", "--out", o], capsys)
    assert "positive" in _bad(tmp_path, ["md", "run", "--model", "ka3d", "--N", "32", "--T", "-0.5",
                                         "--steps", "10", "--out", o], capsys)
    assert "positive" in _bad(tmp_path, ["mc", "run", "--model", "ka3d", "--N", "32", "--T", "0",
                                         "--sweeps", "10", "--out", o], capsys)
    # wrong dimension: a 3D file with the 2D model
    f3 = str(data / "configurations" / "ka3d_N150_rho1.2.xyz")
    assert "2D" in _bad(tmp_path, ["minimize", "--input", f3, "--model", "ka2d", "--out", o], capsys)
    # overlapping particles
    lines = Path(f3).read_text().splitlines()
    lines[3] = lines[2]
    bad = tmp_path / "overlap.xyz"
    bad.write_text("\n".join(lines) + "\n")
    assert "overlapping" in _bad(tmp_path, ["md", "run", "--input", str(bad), "--model", "ka3d", "--T", "1",
                                            "--steps", "10", "--out", o], capsys)
    # NaN coordinates and malformed files
    lines = Path(f3).read_text().splitlines()
    lines[5] = "1 nan 0.0 0.0"
    nanf = tmp_path / "nan.xyz"
    nanf.write_text("\n".join(lines) + "\n")
    assert "NaN" in _bad(tmp_path, ["minimize", "--input", str(nanf), "--model", "ka3d", "--out", o], capsys)
    junk = tmp_path / "junk.xyz"
    junk.write_text("hello\n")
    assert "malformed" in _bad(tmp_path, ["minimize", "--input", str(junk), "--model", "ka3d", "--out", o],
                               capsys)
    assert "unknown engine" in _bad(tmp_path, ["md", "run", "--model", "ka3d", "--N", "32", "--T", "1",
                                               "--steps", "10", "--engine", "gromacs", "--out", o], capsys)
    # missing required option
    assert "--steps" in _bad(tmp_path, ["md", "run", "--model", "ka3d", "--N", "32", "--T", "1", "--out", o],
                             capsys)
    assert not Path(o).exists()  # nothing half-written
    # a checkpoint's name as --out (it would replace an interrupted run's work), and a damaged checkpoint
    assert "checkpoints" in _bad(tmp_path, ["mc", "run", "--model", "ka2d", "--N", "20", "--T", "1", "--sweeps",
                                            "10", "--out", str(tmp_path / "y.h5.ckpt.h5")], capsys)
    Path(o + ".ckpt.h5").write_text("not HDF5\n")
    assert "cannot be read" in _bad(tmp_path, ["mc", "run", "--model", "ka2d", "--N", "20", "--T", "1",
                                               "--sweeps", "10", "--out", o], capsys)
    Path(o + ".ckpt.h5").unlink()


def test_interrupted_md_resumes(tmp_path):
    """SIGINT during a run leaves a checkpoint; the same command resumes and completes."""
    cfg = tmp_path / "run.toml"
    out = tmp_path / "long.h5"
    cfg.write_text(f'model = "ka3d"\nn = 64\nseed = 2\n[md]\nT = 1.0\nsteps = 20000\ncheckpoint_every = 500\n'
                   f'traj = "none"\nout = "{out}"\n')
    # A shell's background job (nohup ... &) ignores SIGINT and children inherit that; restore the default
    # so Python installs its KeyboardInterrupt handler in the child.
    proc = subprocess.Popen([sys.executable, "-m", "glassgen.cli", "md", "run", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    ck = Path(str(out) + ".ckpt.h5")
    t0 = time.time()
    while not ck.exists() and time.time() - t0 < 240 and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, "run finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    # one line says so (typer turned the KeyboardInterrupt into a silent exit code 130)
    assert err.strip().splitlines()[-1] == "interrupted: run the same command again to resume (the work already " \
                                           "saved is kept)", err
    assert ck.exists() and not out.exists()
    r = run_cli(["md", "run", "--config", str(cfg)], timeout=600)
    assert r.returncode == 0, r.stderr
    assert "resumed: True" in r.stdout.replace("  ", "")
    assert out.exists() and not ck.exists()


def test_ctrl_c_is_reported_in_one_line(monkeypatch, capsys, tmp_path):
    """Ctrl-C anywhere in a command: exit 130 and one line on stderr, naming resumption only for the commands
    that keep their work, and saying so when nothing was saved yet (it said "the work already saved is kept")."""
    import glassgen.api as api

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "md_run", stop)
    monkeypatch.setattr(api, "analyze", stop)
    out = str(tmp_path / "x.h5")
    args = ["md", "run", "--model", "ka3d", "--N", "20", "--T", "1", "--steps", "5", "--out", out]
    assert main(args) == 130
    assert capsys.readouterr().err.strip() == "interrupted before any work was saved: the same command starts over"
    for kept in ("x.h5.eq.ckpt.h5", "x.h5.ckpt.h5"):
        (tmp_path / kept).write_bytes(b"")
        assert main(args) == 130
        assert capsys.readouterr().err.strip() == ("interrupted: run the same command again to resume (the work "
                                                   "already saved is kept)")
    assert main(["analyze", "x.h5"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"


def test_output_paths_under_a_file_and_negative_seeds(tmp_path, capsys):
    """An output whose folder is a file, or an output folder that is a file: one line, exit 2, the output named.
    A negative seed is a usage error (exit 2) before any work."""
    blocker = tmp_path / "plain.txt"
    blocker.write_text("x")
    msg = _bad(tmp_path, ["init", "--model", "ka3d", "--N", "20", "--T", "1", "--out", str(blocker / "x.h5")], capsys)
    assert msg.startswith("error: cannot write") and "is a file" in msg
    ok = tmp_path / "ok.h5"
    assert main(["init", "--model", "ka3d", "--N", "20", "--T", "1", "--seed", "1", "--out", str(ok)]) in (0, None)
    msg = _bad(tmp_path, ["minimize", "--input", str(ok), "--out", str(blocker / "sub" / "m.h5")], capsys)
    assert "is a file" in msg
    assert main(["md", "run", "--input", str(ok), "--T", "1", "--steps", "5", "--seed", "-1",
                 "--out", str(tmp_path / "md.h5")]) == 2
    assert not (tmp_path / "md.h5").exists()


def test_export_lammps_and_pgmc_reject_bad_states(tmp_path, capsys):
    """export-lammps checks T, steps, dt, tau, overlaps and velocities before writing anything; pgmc train/run
    reject overlapping particles (their kernels would start from an infinite-energy state)."""
    import h5py

    ok = tmp_path / "ok.h5"
    assert main(["init", "--model", "ka2d", "--N", "43", "--T", "0.5", "--seed", "1", "--out", str(ok)]) in (0, None)
    overlap, nanvel = tmp_path / "overlap.h5", tmp_path / "nanvel.h5"
    for path, key in ((overlap, "positions"), (nanvel, "velocities")):
        path.write_bytes(ok.read_bytes())
        with h5py.File(path, "r+") as f:
            a = f[f"configuration/{key}"][()]
            a[1] = a[0] if key == "positions" else np.nan
            f[f"configuration/{key}"][...] = a
    base = ["md", "export-lammps", "--steps", "10", "--T", "0.5"]
    cases = ((["--input", str(ok), "--T", "nan"], "positive"), (["--input", str(ok), "--steps", "-1"], "steps"),
             (["--input", str(ok), "--dt", "0"], "0 < dt <= 1"), (["--input", str(ok), "--tau", "0"], "tau"),
             (["--input", str(overlap)], "overlapping"), (["--input", str(nanvel)], "velocities"))
    for extra, msg in cases:
        assert msg in _bad(tmp_path, [*base, *extra, "--out-dir", str(tmp_path / "lmp")], capsys)
    assert not (tmp_path / "lmp").exists()
    assert "overlapping" in _bad(tmp_path, ["pgmc", "train", "--input", str(overlap), "--T", "0.5", "--iterations", "2",
                                            "--out", str(tmp_path / "p.json")], capsys)


@pytest.mark.parametrize("cmd, text, msg", [
    (["md", "run"], 'model = "ka3d"\nn = 20\n[md]\nT = 1.0\nsteps = 5\n[mdx]\nT = 2.0\n', "unknown table(s)"),
    (["pgmc", "train"], 'model = "ka2d"\nn = 43\nT = 0.5\n[train]\niterations = 1\n[runn]\nsweeps = 1\n',
     "unknown table(s)"),
    (["trap-model", "run"], 'model = "bouchaud"\nT = [1.5]\nN = 100\nout = "t.h5"\n[paramz]\nT0 = 1.0\n',
     "unknown table(s)"),
    (["trap-model", "run"], 'model = "bouchaud"\nT = [1.5]\nN = "many"\nout = "t.h5"\n', "N must be int"),
    (["trap-model", "run"], 'model = "bouchaud"\nT = ["hot"]\nN = 100\nout = "t.h5"\n', "T[0] must be"),
    (["trap-model", "run"], 'model = "bouchaud"\nT = [1.5]\nN = 100\nout = "t.h5"\n[params]\nT0 = "one"\n',
     "T0 must be"),
    (["step-model", "run"], 'out = "s.h5"\n[params]\nL = "eight"\n', "L must be int"),
    (["dataset", "make"], '[dataset]\nout = "d"\nmodel = "ka3d"\nn = "twenty"\ntemperatures = [0.8]\n',
     "n must be int"),
    (["dataset", "make"], '[dataset]\nout = "d"\nmodel = "ka3d"\nn = 20\ntemperatures = [0.8]\nn_test = 0\n'
                          'engine = "foo"\n', "unknown engine"),
])
def test_config_tables_and_types_are_checked(tmp_path, capsys, cmd, text, msg):
    """A misspelt table is not silently ignored, and a value of the wrong type names its key (exit 2)."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    assert msg in _bad(tmp_path, [*cmd, "-c", str(cfg)], capsys)


@pytest.mark.parametrize("text, msg", [
    ('n_chains = 0\n[[case]]\nmodel = "ka2d"\nn = 43\nT = 0.5\n', "n_chains must be >= 1"),
    ('sweeps = "many"\n[[case]]\nmodel = "ka2d"\nn = 43\nT = 0.5\n', "sweeps must be int"),
    ('[[case]]\nmodel = "ka2d"\nn = 43\nT = 0.5\nbogus = 1\n', "unknown key(s) bogus"),
    ('[extra]\nx = 1\n[[case]]\nmodel = "ka2d"\nn = 43\nT = 0.5\n', "unknown key(s) extra"),
])
def test_experiment_config_is_checked_before_any_work(tmp_path, capsys, text, msg):
    cfg = tmp_path / "e.toml"
    cfg.write_text(text)
    assert msg in _bad(tmp_path, ["experiment", "predict-propose", "--config", str(cfg), "--out", str(tmp_path / "o")],
                       capsys)
    assert not (tmp_path / "o").exists()


def test_more_bad_values_are_one_line(tmp_path, capsys):
    """Values that used to be clamped, ignored or crash: one line, exit 2, nothing written."""
    ok = tmp_path / "ok.h5"
    assert main(["init", "--model", "ka3d", "--N", "20", "--T", "1", "--seed", "1", "--out", str(ok)]) in (0, None)
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    lr0 = tmp_path / "lr0.toml"
    lr0.write_text('[system]\nmodel = "ka3d"\nN = 8\n[training]\nlr = 0.0\n')
    cases = [
        (["init", "--model", "ka3d", "--N", "20", "--density", "100", "--out", str(tmp_path / "d.h5")], "too dense"),
        (["mc", "run", "--input", str(ok), "--T", "1", "--sweeps", "2", "--delta", "nan",
          "--out", str(tmp_path / "m.h5")], "delta must be positive"),
        (["step-model", "run", "--L", "8", "--s-mean", "nan", "--out", str(tmp_path / "s.h5")], "s_mean"),
        (["flow", "train", "-c", str(empty), "--out", str(tmp_path / "f.pt")], "[system] table"),
        (["flow", "train", "-c", str(lr0), "--out", str(tmp_path / "f.pt")], "lr and clip must be positive"),
    ]
    for args, msg in cases:
        assert msg in _bad(tmp_path, args, capsys), args
    assert main(["trap-model", "run", "--model", "bouchaud", "--T", "2", "--N", "100", "--replicas", "0",
                 "--out", str(tmp_path / "t.h5")]) == 2
    assert not any((tmp_path / f).exists() for f in ("d.h5", "m.h5", "s.h5", "f.pt", "t.h5"))


def test_audit_two_defects_are_fixed(tmp_path, capsys):
    """dataset make refuses to finish a dataset with other replica settings; --out may not be an input or a
    .png; a LAMMPS data file written by glassgen reads back without --model; a repeated temperature is refused."""
    base = ["dataset", "make", "--model", "ka3d", "--N", "20", "--T", "2.0", "--configs", "2", "--test", "1",
            "--tau-alpha", "2", "--out", str(tmp_path / "ds"), "--no-progress"]
    assert main([*base, "--replicas", "2"]) in (0, None)
    capsys.readouterr()
    assert "n_replicas" in _bad(tmp_path, [*base, "--replicas", "4"], capsys)
    assert main([*base, "--replicas", "2"]) in (0, None)  # the same settings: nothing to do
    capsys.readouterr()
    conf = tmp_path / "c.xyz"
    assert main(["init", "--model", "ka3d", "--N", "20", "--T", "1", "--out", str(conf)]) in (0, None)
    assert "also an input" in _bad(tmp_path, ["md", "run", "--input", str(conf), "--T", "1", "--steps", "5",
                                              "--out", str(conf)], capsys)
    assert "PNG is written next to it" in _bad(tmp_path, ["trap-model", "run", "--model", "bouchaud", "--T", "1.5",
                                                          "--out", str(tmp_path / "t.png")], capsys)
    assert "given twice" in _bad(tmp_path, ["trap-model", "run", "--model", "bouchaud", "--T", "1.5", "--T", "1.5",
                                            "--out", str(tmp_path / "t.h5")], capsys)
    assert main(["md", "export-lammps", "--input", str(conf), "--T", "1", "--steps", "10",
                 "--out-dir", str(tmp_path / "lmp")]) in (0, None)
    assert main(["md", "run", "--input", str(tmp_path / "lmp" / "conf.data"), "--T", "1", "--steps", "5",
                 "--out", str(tmp_path / "md.h5")]) in (0, None)


def test_output_that_is_a_folder_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "out.h5").mkdir()
    assert main(["md", "run", "--model", "ka3d", "--N", "50", "--T", "1", "--steps", "10",
                 "--out", str(tmp_path / "out.h5")]) == 2
    assert "is a folder" in capsys.readouterr().err



def test_audit_of_bad_inputs_gives_one_line_errors(tmp_path, capsys):
    """Cases found by a bad-input audit (2026-12-05), each a one-line error with exit code 2: usage errors
    (no usage block), TOML that is not UTF-8 or holds NaN, unknown keys in a model file, coordinates
    1e308 box lengths away, a non-HDF5 output name, an unknown --split, an MD step too large."""
    o = str(tmp_path / "x.h5")
    assert "--modle" in _bad(tmp_path, ["md", "run", "--modle", "ka3d"], capsys)
    assert "'glassgen md run --help'" in _bad(tmp_path, ["md", "run", "--N", "abc"], capsys)
    garbage = tmp_path / "garbage.toml"
    garbage.write_bytes(b"\xff\xfe\x00model = 1\x80\x81")
    assert "not UTF-8" in _bad(tmp_path, ["md", "run", "--config", str(garbage), "--out", o], capsys)
    assert "not UTF-8" in _bad(tmp_path, ["init", "--model", str(garbage), "--N", "20", "--out", o], capsys)
    nan_cfg = tmp_path / "nan.toml"
    nan_cfg.write_text('model = "ka3d"\nn = 20\n[md]\nT = nan\nsteps = 10\n')
    assert "T is NaN" in _bad(tmp_path, ["md", "run", "--config", str(nan_cfg), "--out", o], capsys)
    model = (Path(__file__).resolve().parents[1] / "configs" / "models" / "ka3d.toml").read_text()
    typo = tmp_path / "typo.toml"
    typo.write_text(model + "\ncutof_factor = 3.0\n")
    assert "cutof_factor" in _bad(tmp_path, ["init", "--model", str(typo), "--N", "20", "--out", o], capsys)
    xyz = tmp_path / "far.xyz"
    xyz.write_text("3\ncell:5.0,5.0,5.0 model:ka3d\nA 1e308 0 0\nA 1 1 1\nA 2 2 2\n")
    assert "1e6 box lengths" in _bad(tmp_path, ["minimize", "--input", str(xyz), "--model", "ka3d", "--out", o],
                                     capsys)
    assert "HDF5" in _bad(tmp_path, ["md", "run", "--model", "ka3d", "--N", "20", "--T", "1", "--steps", "5",
                                     "--out", str(tmp_path / "run.xyz")], capsys)
    assert "'foo'" in _bad(tmp_path, ["bench", "score", "--data", str(tmp_path), "--T", "0.8", "--split", "foo"],
                           capsys)
    # a second pass: numbers beyond 64 bits, NaN where a range check let it through, more output names
    assert "9223372036854775807" in _bad(tmp_path, ["init", "--model", "ka3d", "--N", "20", "--seed", "9" * 20,
                                                    "--out", o], capsys)
    assert "1e15" in _bad(tmp_path, ["md", "run", "--model", "ka3d", "--N", "20", "--T", "1", "--steps", "9" * 20,
                                     "--out", o], capsys)
    assert "p_stop" in _bad(tmp_path, ["trap-model", "run", "--model", "bouchaud", "--T", "1", "--p-stop", "nan",
                                       "--out", o], capsys)
    assert "tau must be positive" in _bad(tmp_path, ["md", "run", "--model", "ka3d", "--N", "20", "--T", "1",
                                                     "--steps", "5", "--tau", "nan", "--out", o], capsys)
    assert "writes HDF5" in _bad(tmp_path, ["sample", "--T", "0.45", "--out", str(tmp_path / "s.xyz")], capsys)
    assert "writes JSON" in _bad(tmp_path, ["pgmc", "train", "--model", "ka2d", "--N", "43", "--T", "0.5",
                                            "--out", str(tmp_path / "p.h5")], capsys)
    assert "is a folder" in _bad(tmp_path, ["md", "run", "--config", str(tmp_path), "--out", o], capsys)
    # particles that run into each other during MD: the step, not the start, is to blame
    assert "reduce dt: --dt" in _bad(tmp_path, ["md", "run", "--model", "ka3d", "--N", "50", "--T", "1", "--steps",
                                                "20", "--dt", "0.5", "--out", o], capsys)
    # a third pass: extreme temperatures and densities (once numpy overflow warnings, then a bare ValueError)
    for cmd in (["md", "run", "--steps", "5"], ["mc", "run", "--sweeps", "5"]):
        err = _bad(tmp_path, cmd + ["--model", "ka2d", "--N", "43", "--T", "1e308", "--out", o], capsys)
        assert "1e+06] in reduced units" in err and "warning" not in err
        err = _bad(tmp_path, cmd + ["--model", "ka2d", "--N", "43", "--T", "1", "--density", "1e300", "--out", o],
                   capsys)
        assert "too many periodic images" in err
    assert "--overlap-a" in _bad(tmp_path, ["analyze", o, "--overlap-a", "0"], capsys)
    assert "--q-max" in _bad(tmp_path, ["analyze", o, "--q-max", "inf"], capsys)
    assert "dt=5.0" in _bad(tmp_path, ["md", "run", "--model", "ka3d", "--N", "50", "--T", "1", "--steps", "20",
                                       "--dt", "5", "--out", o], capsys)
    # a third helper pass: files that only look right, and numbers at the edges
    tric = tmp_path / "tric.data"
    tric.write_text("x\n\n2 atoms\n1 atom types\n0 5 xlo xhi\n0 5 ylo yhi\n0 5 zlo zhi\n1.0 0.0 0.0 xy xz yz\n\n"
                    "Atoms # atomic\n\n1 1 0 0 0\n2 1 2 2 2\n")
    assert "triclinic" in _bad(tmp_path, ["minimize", "--input", str(tric), "--model", "ka3d", "--out", o], capsys)
    skew = tmp_path / "skew.xyz"
    skew.write_text('2\nLattice="5 0 0 1 5 0 0 0 5"\nA 0 0 0\nA 2 2 2\n')
    assert "orthorhombic" in _bad(tmp_path, ["minimize", "--input", str(skew), "--model", "ka3d", "--out", o], capsys)
    assert "1e-06" in _bad(tmp_path, ["md", "run", "--model", "ka3d", "--N", "50", "--T", "1e-300", "--steps", "5",
                                      "--out", o], capsys)
    assert "not both" in _bad(tmp_path, ["predict", "train", "--kind", "ridge", "--data", str(tmp_path), "--time", "2",
                                         "--time-index", "3", "--out", str(tmp_path / "p.npz")], capsys)
    flow_cfg = str(ROOT / "configs/flows/ka3d_n32.toml")
    assert "a PyTorch checkpoint" in _bad(tmp_path, ["flow", "train", "--config", flow_cfg,
                                                     "--out", str(tmp_path / "f.h5")], capsys)


def test_ridge_hyperparameters_and_provenance_fields_are_checked():
    """Bad ridge hyperparameters are one-line input errors; job entries named like the standard provenance
    fields (a predictor's lag ``time``) no longer overwrite them; JSON outputs are strict JSON."""
    import json
    import math

    from glassgen.errors import InputError
    from glassgen.predictors.ridge import RidgePredictor
    from glassgen.provenance import provenance, strict_json

    for hyper in ({"alphas": [-1.0]}, {"alphas": "x"}, {"alphas": []}, {"cv_folds": 0}, {"cv_folds": "a"}):
        with pytest.raises(InputError, match="alphas|cv_folds"):
            RidgePredictor(None, **hyper)
    rec = provenance(time=2.72, seed=3)
    assert rec["job_time"] == 2.72 and isinstance(rec["time"], str) and rec["seed"] == 3
    text = strict_json({"a": math.nan, "b": [1.0, math.inf], "c": np.float64(2.5), "d": np.arange(2)})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}")) == \
        {"a": None, "b": [1.0, None], "c": 2.5, "d": [0, 1]}


def test_sampler_options_do_what_they_say(tmp_path, capsys):
    """A reviewer's findings: --delta was silently retuned, --traj-every ignored with log frames, KA swaps
    wasted trials without a word, missing --N was called --n, --q-max below 2 pi / L gave an empty S(q)."""
    out = tmp_path / "m.h5"
    assert main(["mc", "run", "--model", "ka2d", "--N", "64", "--T", "0.5", "--sweeps", "20", "--delta", "0.3",
                 "--seed", "1", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out.replace("  ", "")
    assert "delta: [0.3, 0.3, 0.3]" in printed and "delta_tuned: False" in printed and "T_kin" not in printed
    assert "swap=" not in printed  # no swaps tried, no swap acceptance
    with h5py.File(out) as f:
        assert json.loads(f.attrs["info"])["sweeps"] == 20  # tuning sweeps are not run sweeps
    assert main(["mc", "run", "--model", "ka2d", "--N", "64", "--T", "0.5", "--sweeps", "20", "--seed", "1",
                 "--equilibrate", "30", "--out", str(out), "--no-progress"]) == 0
    assert "delta_tuned: True" in capsys.readouterr().out.replace("  ", "")
    with h5py.File(out) as f:  # 200 tuning and 30 equilibration sweeps before the 20 recorded
        info = json.loads(f.attrs["info"])
        assert info["sweeps"] == 20 and info["sweeps_before_run"] == 230 and f.attrs["equilibrate_sweeps"] == 30
    for args, msg in [(["mc", "run", "--model", "ka2d", "--N", "64", "--T", "0.5", "--sweeps", "20",
                        "--traj-every", "5"], "does nothing with --traj log"),
                      (["init", "--model", "ka3d"], "missing option(s): --N"),
                      (["analyze", str(out), "--q-max", "0.1"], "below the shortest wave vector")]:
        assert main([*args, "--out" if args[0] != "analyze" else "--out-dir", str(tmp_path / "x.h5")]) == 2, args
        err = capsys.readouterr().err.strip()
        assert msg in err and "\n" not in err, err
    with pytest.warns(UserWarning, match="no species pair worth swapping"):
        assert main(["mc", "run", "--model", "ka3d", "--N", "64", "--T", "0.8", "--sweeps", "10",
                     "--swap-fraction", "0.1", "--out", str(tmp_path / "s.h5"), "--no-progress"]) == 0


def test_a_file_of_another_command_is_named_in_the_error(tmp_path, capsys):
    """Given the wrong file, readers say what it is (was: 'utf-8' codec can't decode, UnpicklingError)."""
    run = tmp_path / "md.h5"
    assert main(["md", "run", "--model", "ka3d", "--N", "64", "--T", "0.8", "--steps", "10", "--traj", "none",
                 "--out", str(run), "--no-progress"]) == 0
    (tmp_path / "p.json").write_text(json.dumps({"format": "glassgen-pgmc-policy-1"}))
    capsys.readouterr()
    for args, msg in [(["pgmc", "run", "--policy", str(run), "--sweeps", "10"],
                       "is not a policy file (JSON) but an HDF5 file written by `glassgen md run`"),
                      (["sample", "--T", "0.45", "--checkpoint", str(tmp_path / "p.json")],
                       "it is a JSON file of format glassgen-pgmc-policy-1, not a flow checkpoint")]:
        assert main([*args, "--out", str(tmp_path / "x.h5")]) == 2
        err = capsys.readouterr().err.strip()
        assert msg in err and "\n" not in err, err


def test_ctrl_c_after_the_output_is_written_says_the_run_is_complete(tmp_path, capsys):
    """A Ctrl-C landing after a run wrote its output (and removed its checkpoint) said "run the same command
    again to resume", which would redo the whole run."""
    import glassgen.cli as cli

    out = tmp_path / "x.h5"
    cli._STARTED[0] = time.time() - 5
    cli.RUN_OUT[0] = None  # as main() sets it: no run command has resolved its output yet
    out.write_bytes(b"done")
    cli._report_interrupt(["md", "run", "--out", str(out)])
    assert capsys.readouterr().err.strip() == f"interrupted after {out} was written: that run is complete"
    ck = tmp_path / "x.h5.ckpt.h5"
    ck.write_bytes(b"")  # a checkpoint left: the run is not complete
    cli._report_interrupt(["md", "run", "--out", str(out)])
    assert "run the same command again to resume" in capsys.readouterr().err
    ck.unlink()
    cli._STARTED[0] = time.time() + 60  # a file older than the command: not its output, and nothing saved yet
    cli._report_interrupt(["md", "run", "-o", str(out)])
    assert "before any work was saved" in capsys.readouterr().err
    cli._STARTED[0] = time.time() - 5  # flow train checkpoints into --out itself: a fresh --out is not the end
    cli._report_interrupt(["flow", "train", "--config", "c.toml", "--out", str(out)])
    assert "run the same command again to resume" in capsys.readouterr().err
    cli.RUN_OUT[0] = str(out)  # the output named in a --config, as md run resolved it
    cli._report_interrupt(["md", "run", "--config", "c.toml"])
    assert "that run is complete" in capsys.readouterr().err
    cli.RUN_OUT[0] = None
