"""The command line: help with examples, outputs with provenance, one-line errors, resume."""

from __future__ import annotations

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

COMMANDS = [["md", "run"], ["mc", "run"], ["minimize"], ["analyze"], ["init"], ["models"]]


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
                 "--out", str(out)])
    assert r.returncode == 0, r.stderr
    with h5py.File(out) as f:
        for key in ("command", "glassgen_version", "seed", "model", "T", "time"):
            assert key in f.attrs
        assert f.attrs["seed"] == 5 and f.attrs["model"] == "ka3d"
        assert f["trajectory/positions"].shape[1:] == (108, 3)
        assert f["thermo/potential"].shape[0] > 3
    assert (tmp_path / "md.thermo.png").is_file()
    r = run_cli(["analyze", str(out), "--out-dir", str(tmp_path / "an")])
    assert r.returncode == 0, r.stderr
    for name in ("rdf.png", "msd.png", "fs.png", "summary.json", "fs.txt"):
        assert (tmp_path / "an" / name).is_file()


def test_same_seed_same_result(tmp_path):
    outs = []
    for k in range(2):
        out = tmp_path / f"mc{k}.h5"
        assert main(["mc", "run", "--model", "ka2d", "--N", "40", "--T", "0.8", "--sweeps", "50",
                     "--swap-fraction", "0.2", "--seed", "3", "--out", str(out), "--no-progress"]) == 0
        with h5py.File(out) as f:
            outs.append(f["configuration/positions"][()])
    assert np.array_equal(outs[0], outs[1])


def _bad(tmp_path: Path, args: list[str], capsys) -> str:
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


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


def test_interrupted_md_resumes(tmp_path):
    """SIGINT during a run leaves a checkpoint; the same command resumes and completes."""
    cfg = tmp_path / "run.toml"
    out = tmp_path / "long.h5"
    cfg.write_text(f'model = "ka3d"\nn = 64\nseed = 2\n[md]\nT = 1.0\nsteps = 60000\ncheckpoint_every = 500\n'
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
    assert ck.exists() and not out.exists()
    r = run_cli(["md", "run", "--config", str(cfg)], timeout=600)
    assert r.returncode == 0, r.stderr
    assert "resumed: True" in r.stdout.replace("  ", "")
    assert out.exists() and not ck.exists()
