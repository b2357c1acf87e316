"""glassgen trap-model run / step-model run: help texts, one-line errors, outputs with provenance, resume."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from glassgen.cli import main


@pytest.mark.parametrize("group", ["trap-model", "step-model"])
def test_help_has_examples(group: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([group, "run", "--help"]) == 0
    out = capsys.readouterr().out
    assert "Examples" in out and f"glassgen {group} run" in out and "--seed" in out and "--out" in out


@pytest.mark.parametrize("args", [
    ["trap-model", "run", "--model", "bouchaud", "--T", "0", "--out", "x.h5"],
    ["trap-model", "run", "--model", "nonsense", "--T", "1", "--out", "x.h5"],
    ["trap-model", "run", "--model", "bouchaud", "--T0", "2", "--T", "1", "--out", "x.h5"],
    ["trap-model", "run", "--model", "softness", "--T", "0.4", "--softness-law", "missing.toml", "--out", "x.h5"],
    ["step-model", "run", "--L", "15", "--out", "x.h5"],
    ["trap-model", "run", "--T", "1", "--out", "x.h5"],
])
def test_bad_input_is_one_line_exit_2(args: list[str], tmp_path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
    assert not (tmp_path / "x.h5").exists()


def test_trap_sweep_writes_provenance_and_plot(tmp_path) -> None:
    out = tmp_path / "mb.h5"
    assert main(["trap-model", "run", "--model", "bouchaud", "--T", "2", "--T", "3", "--N", "500", "--seed", "4",
                 "--out", str(out), "--no-progress"]) == 0
    with h5py.File(out) as f:
        assert f.attrs["model"] == "bouchaud" and int(f.attrs["seed"]) == 4
        assert "glassgen_version" in f.attrs and "command" in f.attrs
        assert np.allclose(f["sweep/T"][()], [2.0, 3.0])
        assert f["T_2/fs"].shape == f["T_2/times"].shape
    assert out.with_suffix(".png").stat().st_size > 1000
    assert not (tmp_path / "mb.h5.ckpt.h5").exists()


def test_sweep_resumes_without_recomputing(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from glassgen import api_models
    from glassgen.models import trap

    out = tmp_path / "s.h5"
    real = trap.simulate
    calls: list[float] = []

    def flaky(model, T, **kw):
        calls.append(T)
        if T == 3.0:
            raise RuntimeError("interrupted")
        return real(model, T, **kw)

    monkeypatch.setattr(trap, "simulate", flaky)
    with pytest.raises(RuntimeError):
        api_models.trap_model_run("bouchaud", [2.0, 3.0], out, n=300, plot=False)
    assert (tmp_path / "s.h5.ckpt.h5").exists() and not out.exists()
    calls.clear()

    def counting(model, T, **kw):
        calls.append(T)
        return real(model, T, **kw)

    monkeypatch.setattr(trap, "simulate", counting)
    api_models.trap_model_run("bouchaud", [2.0, 3.0], out, n=300, plot=False)
    assert calls == [3.0]  # T = 2 came from the checkpoint
    assert out.exists()


def test_step_model_run(tmp_path) -> None:
    out = tmp_path / "step.h5"
    assert main(["step-model", "run", "--L", "12", "--gamma-max", "0.02", "--s-mean", "-1.66", "--s-mean", "1",
                 "--seed", "2", "--out", str(out), "--no-progress"]) == 0
    with h5py.File(out) as f:
        assert f.attrs["model"] == "StEP" and set(f) == {"S_-1.66", "S_1"}
        assert f["S_1/plastic_map"].shape == (12, 12)
    assert out.with_suffix(".png").exists()


def test_config_files_load(tmp_path) -> None:
    from glassgen.api_models import load_model_config
    from glassgen.config import repo_root
    from glassgen.models.step import StepParams
    from glassgen.models.trap import load_trap_model

    d = repo_root() / "configs" / "models" / "phenomenological"
    for name in ("bouchaud", "bouchaud_gaussian", "softness", "softness_facilitated_2d", "facilitated_trap"):
        job, params = load_model_config(d / f"{name}.toml")
        load_trap_model(job["model"], params)
    job, params = load_model_config(d / "step_prr.toml")
    assert StepParams.from_dict(params).coupling == 101.3
