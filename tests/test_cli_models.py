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
    ["trap-model", "run", "--model", "softness", "--T", "0.5", "--out", "x.h5"],  # above the law's onset 0.441
    ["trap-model", "run", "--model", "softness-facilitated", "--L", "4", "--r-c", "2", "--dim", "2", "--T", "0.4",
     "--out", "x.h5"],  # r_c >= L/2: a site would kick itself
    ["trap-model", "run", "--model", "bouchaud", "--T", "2", "--T", "3", "--q", "-1", "--out", "x.h5"],
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


def test_truncated_runs_warn_and_report_no_spectrum(tmp_path) -> None:
    """A run stopped by its event budget says so (summary, HDF5, one warning) and reports D and the chi''
    exponents as NaN: an undecayed correlation gives no spectrum."""
    from glassgen import api_models

    with pytest.warns(UserWarning, match="event budget"):
        s = api_models.trap_model_run("softness", [0.38], tmp_path / "t.h5", n=500, max_events=20_000, plot=False)
    r = s["T=0.38"]
    assert r["truncated"] is True and np.isnan(r["D"]) and np.isnan(r["beta_high"])
    with h5py.File(tmp_path / "t.h5") as f:
        g = f["T_0.38"]
        assert bool(g.attrs["truncated"]) and np.isnan(g.attrs["slope_low"]) and np.isnan(g.attrs["omega_peak"])
    full = api_models.trap_model_run("softness", [0.40], tmp_path / "f.h5", n=300, plot=False)
    assert "truncated" not in full["T=0.4"] and np.isfinite(full["T=0.4"]["D"])


def test_extrapolated_softness_distribution_is_flagged(tmp_path) -> None:
    """SystemIII's P(S; T) table holds T = 0.05 and 0.30: at T = 0.40 it is extrapolated, which is warned
    and recorded per temperature."""
    from glassgen import api_models

    with pytest.warns(UserWarning, match="extrapolated"):
        s = api_models.trap_model_run("softness", [0.40], tmp_path / "e.h5", n=300, plot=False)
    assert s["T=0.4"]["P_S_extrapolated"] is True
    with h5py.File(tmp_path / "e.h5") as f:
        assert bool(f["T_0.4"].attrs["P_S_extrapolated"])
