"""glassgen trap-model run / step-model run: help texts, one-line errors, outputs with provenance, resume."""

from __future__ import annotations

import json
import warnings

import h5py
import numpy as np
import pytest

from glassgen.cli import main
from glassgen.errors import InputError


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


def _h5_tree(path) -> dict:
    """Every dataset and attribute of the temperature groups (timings left out)."""
    out = {}
    with h5py.File(path) as f:
        for key in f:
            if not key.startswith("T_"):
                continue
            for k, v in f[key].attrs.items():
                if k not in ("events_per_s",):
                    out[f"{key}/@{k}"] = v
            for k in f[key]:
                out[f"{key}/{k}"] = f[key][k][()]
    return out


def test_an_interrupted_temperature_resumes_its_replica_where_it_stopped(tmp_path, monkeypatch,
                                                                         sigint_as_in_a_terminal) -> None:
    """A Ctrl-C in the middle of a replica saves the whole KMC state (and the finished replicas of that
    temperature); the rerun continues it, so the output equals the uninterrupted run's, value for value, and
    the rerun makes fewer kernel calls than a run from scratch."""
    import os
    import signal

    from glassgen import api_models
    from glassgen.models import trap

    real_sim, real_kmc = trap.simulate, trap.kmc_run
    calls = {"n": 0, "signal_at": -1}

    def kmc(*args):
        calls["n"] += 1
        if calls["n"] == calls["signal_at"]:
            os.kill(os.getpid(), signal.SIGINT)  # as a Ctrl-C in a terminal: lands during the kernel call
        return real_kmc(*args)

    starts: list[int] = []

    def sim(model, T, **kw):
        starts.append(calls["n"])
        return real_sim(model, T, **kw, chunk_events=300)

    monkeypatch.setattr(trap, "simulate", sim)
    monkeypatch.setattr(trap, "kmc_run", kmc)
    job = {"model": "bouchaud", "T": [2.0, 3.0], "n": 300, "replicas": 2, "seed": 3, "plot": False}
    api_models.trap_model_run(out=tmp_path / "ref.h5", **job)
    n_ref = calls["n"]
    assert len(starts) == 4 and n_ref - starts[3] >= 4  # several kernel calls in the last replica

    signal_at = (starts[3] + n_ref) // 2 + 1  # in the middle of the second replica of T = 3
    calls.update(n=0, signal_at=signal_at)
    out = tmp_path / "x.h5"
    with pytest.raises(KeyboardInterrupt):
        api_models.trap_model_run(out=out, **job)
    ck = tmp_path / "x.h5.ckpt.h5"
    assert not out.exists()
    with h5py.File(ck) as f:
        assert "T_2" in f and float(f["running"].attrs["T"]) == 3.0
        assert int(f["running"].attrs["n_runs"]) == 1 and "state" in f["running"]
        t_saved = float(f["running/state"].attrs["t"])
    assert t_saved > 0

    calls.update(n=0, signal_at=-1)
    api_models.trap_model_run(out=out, **job)
    assert calls["n"] == n_ref - signal_at  # only the rest of the interrupted replica was run
    assert not ck.exists()
    ref, got = _h5_tree(tmp_path / "ref.h5"), _h5_tree(out)
    assert ref.keys() == got.keys()
    for k in ref:
        assert np.array_equal(np.asarray(ref[k]), np.asarray(got[k]), equal_nan=True), k


def test_a_ctrl_c_in_a_replicas_last_kernel_call_stops_the_sweep(tmp_path, monkeypatch,
                                                                 sigint_as_in_a_terminal) -> None:
    """Replicas shorter than one kernel call: a Ctrl-C during one lets it finish, then the sweep stops with that
    replica saved (the Ctrl-C was forgotten and the sweep ran to its end); the rerun gives the uninterrupted
    output."""
    import os
    import signal

    from glassgen import api_models
    from glassgen.models import trap

    real_kmc, calls = trap.kmc_run, [0]

    def kmc(*args):
        calls[0] += 1
        if calls[0] == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return real_kmc(*args)

    job = {"model": "bouchaud", "T": [2.0, 3.0], "n": 300, "replicas": 2, "seed": 4, "plot": False}
    api_models.trap_model_run(out=tmp_path / "ref.h5", **job)
    monkeypatch.setattr(trap, "kmc_run", kmc)
    out = tmp_path / "x.h5"
    with pytest.raises(KeyboardInterrupt):
        api_models.trap_model_run(out=out, **job)
    assert calls[0] == 1  # one kernel call: the first replica, in one call
    with h5py.File(tmp_path / "x.h5.ckpt.h5") as f:
        assert int(f["running"].attrs["n_runs"]) == 1 and "state" not in f["running"]
    api_models.trap_model_run(out=out, **job)
    assert calls[0] == 4  # the three other replicas
    ref, got = _h5_tree(tmp_path / "ref.h5"), _h5_tree(out)
    assert ref.keys() == got.keys()
    for k in ref:
        assert np.array_equal(np.asarray(ref[k]), np.asarray(got[k]), equal_nan=True), k


def test_a_damaged_temperature_in_progress_is_a_one_line_error(tmp_path) -> None:
    from glassgen import api_models

    ck = tmp_path / "c.h5"
    with h5py.File(ck, "w") as f:
        g = f.create_group("running")
        g.attrs["T"], g.attrs["n_runs"] = 2.0, 1  # the finished replica it announces is missing
    with pytest.raises(InputError, match="damaged"):
        api_models._read_running(ck)


def test_a_saved_trap_state_resumes_bit_for_bit() -> None:
    """simulate() resumed from any saved state (here the middle one, with a different generator handed in)
    gives the uninterrupted run: every array of the TrapRun equal; a state of another T is refused."""
    import dataclasses

    from glassgen.models.trap import load_trap_model, simulate

    model = load_trap_model("facilitated", {"L": 10, "dim": 2, "warmup": 2.0})
    kw = {"chunk_events": 80, "record_waiting": 64}
    ref = simulate(model, 1.0, seed=np.random.default_rng(7), **kw)
    states: list[dict] = []
    simulate(model, 1.0, seed=np.random.default_rng(7), save_state=states.append, save_every_s=0.0, **kw)
    assert len(states) >= 3
    got = simulate(model, 1.0, seed=np.random.default_rng(99), resume=states[len(states) // 2], **kw)
    for f in dataclasses.fields(ref):
        if f.name in ("wall_s", "events_per_s", "seed"):
            continue
        a, b = getattr(ref, f.name), getattr(got, f.name)
        assert (a is None and b is None) or np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True), f.name
    with pytest.raises(InputError, match="T=1"):
        simulate(model, 1.5, seed=1, resume=states[0], **kw)


def test_step_model_run(tmp_path) -> None:
    out = tmp_path / "step.h5"
    cfg = tmp_path / "small.toml"  # L = 12 needs ranges that fit in L/2 = 6
    cfg.write_text("[params]\nco_range = 5\nr_soft = 6.0\nrestore_range = 6.0\n")
    assert main(["step-model", "run", "-c", str(cfg), "--L", "12", "--gamma-max", "0.02", "--s-mean", "-1.66",
                 "--s-mean", "1", "--seed", "2", "--out", str(out), "--no-progress"]) == 0
    with h5py.File(out) as f:
        assert f.attrs["model"] == "StEP" and set(f) == {"S_-1.66", "S_1"}
        assert f["S_1/plastic_map"].shape == (12, 12)
    from PIL import Image

    meta = json.loads(Image.open(out.with_suffix(".png")).text["Description"])
    assert (meta["model"], meta["L"], meta["seed"]) == ("StEP", 12, 2) and "command" in meta


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
    # a budget that stops the run before its second sampling time is a one-line input error (was a ValueError)
    with pytest.raises(InputError, match="max-events"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        api_models.trap_model_run("bouchaud", [1.5], tmp_path / "b.h5", max_events=10, plot=False)


def test_aging_runs_report_no_diffusion_constant(tmp_path) -> None:
    """A quench below T0 ages (Bouchaud x = 0.5: MSD ~ t^x): the summary says so and reports D as NaN."""
    from glassgen import api_models

    s = api_models.trap_model_run("bouchaud", [0.5], tmp_path / "a.h5", n=2000, t_max=1e4, p_stop=0.0,
                                  params={"T0": 1.0, "start": "quench"}, plot=False)
    r = s["T=0.5"]
    assert r.get("aging") is True and np.isnan(r["D"]) and np.isnan(r["D_tau_alpha"]), r


def test_extrapolated_softness_distribution_is_flagged(tmp_path) -> None:
    """SystemIII's P(S; T) table holds T = 0.05 and 0.30: at T = 0.40 it is extrapolated, which is warned
    and recorded per temperature."""
    from glassgen import api_models

    with pytest.warns(UserWarning, match="extrapolated"):
        s = api_models.trap_model_run("softness", [0.40], tmp_path / "e.h5", n=300, plot=False)
    assert s["T=0.4"]["P_S_extrapolated"] is True
    with h5py.File(tmp_path / "e.h5") as f:
        assert bool(f["T_0.4"].attrs["P_S_extrapolated"])


# ---------------------------------------------------------------------------------- review fixes
def _help_examples() -> list[str]:
    """The ``glassgen ...`` example lines of the trap-model / step-model help texts (docstrings and epilogs)."""
    import typer

    from glassgen import cli_models

    app = typer.Typer()
    cli_models.register(app)
    texts = [cli_models.trap_run_cmd.__doc__, cli_models.step_run_cmd.__doc__]
    texts += [g.typer_instance.info.epilog for g in app.registered_groups]
    return [line.strip() for t in texts for line in t.splitlines() if line.strip().startswith("glassgen ")]


def _stub_jobs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace the runs by their checks (model, temperatures, parameters, ranges), so that an example is
    checked as far as it would be before any work, without the work."""
    from dataclasses import replace

    from glassgen import api_models
    from glassgen.models.step import StepParams
    from glassgen.models.trap import load_trap_model

    ran: list[str] = []

    def trap(model, T, out, *, n=None, params=None, softness_law=None, input=None, **kw):
        mdl = load_trap_model(model, params or {}, softness_law=softness_law, input=input)
        for t in api_models._check_T(T):
            mdl.check_temperature(t)
        ran.append(model)
        return {}

    def step(out, *, s_mean=None, params=None, **kw):
        base = StepParams.from_dict(dict(params or {}))
        base.check_ranges()
        for sm in [base.s_mean] if s_mean is None else ([s_mean] if isinstance(s_mean, float) else s_mean):
            replace(base, s_mean=float(sm))
        ran.append("StEP")
        return {}

    monkeypatch.setattr(api_models, "trap_model_run", trap)
    monkeypatch.setattr(api_models, "step_model_run", step)
    return ran


def test_every_help_example_passes_the_checks_from_the_repository_root(monkeypatch, capsys) -> None:
    """Each example of the trap-model / step-model help runs as written from the repository root (its config
    and input files exist, nothing is missing, no option is unused, every range fits); the runs themselves
    are replaced by their checks (tested by the other tests). Negative control: the epilog's former example
    (a config without --T and --out) fails."""
    import shlex

    from glassgen.config import repo_root

    monkeypatch.chdir(repo_root())
    ran = _stub_jobs(monkeypatch)
    examples = _help_examples()
    assert len(examples) >= 10, examples
    for line in examples:
        assert main(shlex.split(line)[1:]) == 0, (line, capsys.readouterr().err)
    assert len(ran) == len(examples)
    capsys.readouterr()
    assert main(["trap-model", "run", "--config", "configs/models/phenomenological/softness.toml"]) == 2
    assert "missing option(s): --T, --out" in capsys.readouterr().err
    assert main(["step-model", "run", "--dim", "3", "--L", "24", "--gamma-max", "0.1", "--out", "step3d.h5"]) == 2
    assert "r_soft = 30" in capsys.readouterr().err


@pytest.mark.parametrize("args, named", [
    (["--model", "facilitated", "--T", "0.4", "--N", "100"], "--N"),
    (["--model", "softness-facilitated", "--dim", "2", "--T", "0.4", "--N", "100"], "--N"),
    (["--model", "bouchaud", "--T", "2", "--L", "48", "--eta0", "0.3"], "--L, --eta0"),
    (["--model", "softness", "--T", "0.4", "--input", "conf.xyz"], "--input"),
    (["--model", "softness", "--T", "0.4", "--T0", "1"], "--T0"),
    (["--model", "bouchaud", "--T", "2", "--softness-law", "softness_systemIII"], "--softness-law"),
    (["--model", "bouchaud", "--T", "2", "--redraw", "naive"], "--redraw"),
    (["--model", "bouchaud-gaussian", "--T", "2", "--r-c", "1.5"], "--r-c"),
    (["--model", "softness", "--T", "0.4", "--sigma-E", "1"], "--sigma-E"),
    (["-c", "configs/models/phenomenological/softness_facilitated_2d.toml", "--model", "softness", "--T", "0.4"],
     "L (--config), eta0 (--config)"),
    (["-c", "configs/models/phenomenological/bouchaud.toml", "--model", "facilitated", "--T", "0.4"],
     "T0 (--config), N (--config)"),
    (["--model", "softness-facilitated", "--T", "0.4", "--L", "8", "--input",
      "../shared/data/configurations/ka2d_N1290_T0.231.xyz"], "--L"),
])
def test_options_the_model_does_not_use_are_errors(args, named, monkeypatch, capsys) -> None:
    from glassgen.config import repo_root

    monkeypatch.chdir(repo_root())
    ran = _stub_jobs(monkeypatch)
    assert main(["trap-model", "run", *args, "--out", "unused.h5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: model ") and f"does not use {named}" in err[0], err
    assert not ran and not (repo_root() / "unused.h5").exists()


@pytest.mark.parametrize("args", [
    ["--model", "facilitated", "--T", "0.4", "--L", "8", "--dim", "2", "--E0", "0", "--sigma-E", "1", "--eta0",
     "0.1", "--r-c", "1"],
    ["--model", "bouchaud-gaussian", "--T", "2", "--N", "100", "--E0", "1", "--sigma-E", "0.5", "--dim", "2"],
    ["--model", "softness-facilitated", "--T", "0.4", "--L", "8", "--dim", "2", "--softness-law",
     "softness_systemIII", "--redraw", "naive", "--eta0", "0.2", "--r-c", "1.5"],
    ["--model", "softness", "--T", "0.4", "--N", "100", "--redraw", "naive"],
    ["--model", "bouchaud", "--T", "2", "--T0", "1", "--N", "100", "--q", "2", "--p-stop", "0.1"],
    ["--model", "facilitated", "--T", "0.4", "--input", "../shared/data/configurations/ka2d_N1290_T0.231.xyz"],
])
def test_options_shared_by_several_models_stay_allowed(args, monkeypatch, capsys) -> None:
    """Positive control of the check above: options a model does use pass."""
    from glassgen.config import repo_root

    monkeypatch.chdir(repo_root())
    ran = _stub_jobs(monkeypatch)
    assert main(["trap-model", "run", *args, "--out", "unused.h5"]) == 0, capsys.readouterr().err
    assert len(ran) == 1


def test_api_refuses_parameters_the_model_does_not_use(tmp_path) -> None:
    from glassgen import api_models
    from glassgen.errors import InputError
    from glassgen.models.trap import load_trap_model

    with pytest.raises(InputError, match="does not use eta0"):
        load_trap_model("bouchaud", {"eta0": 0.3})
    with pytest.raises(InputError, match="does not use softness_law"):
        load_trap_model("bouchaud-gaussian", {}, softness_law="softness_systemIII")
    with pytest.raises(InputError, match="does not use n "):
        api_models.trap_model_run("facilitated", [0.4], tmp_path / "f.h5", n=100, params={"L": 8, "dim": 2})
    assert load_trap_model("facilitated", {"E0": 0.0, "eta0": 0.3, "L": 8, "dim": 2}).L == 8  # used: fine
    assert not (tmp_path / "f.h5").exists()


@pytest.mark.parametrize("args, words", [
    (["--s-mean", "100"], ["mean yield strain", "needs s_mean < 11.49"]),
    (["--s-mean", "-1.66", "--s-mean", "12"], ["mean yield strain", "S = 18"]),  # every value before the first run
    (["--L", "8"], ["co_range = 10 (needs < 4)", "r_soft = 30 (needs <= 4)", "restore_range = 10 (needs <= 4)"]),
    (["--L", "32"], ["r_soft = 30 (needs <= 16)"]),
])
def test_step_model_ranges_are_checked(args, words, tmp_path, capsys) -> None:
    out = tmp_path / "s.h5"
    assert main(["step-model", "run", *args, "--gamma-max", "0.01", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: StEP") and all(w in err[0] for w in words), err
    assert not out.exists() and not (tmp_path / "s.h5.ckpt.h5").exists()


@pytest.mark.parametrize("group, job", [("trap-model", "trap_model_run"), ("step-model", "step_model_run")])
@pytest.mark.parametrize("with_checkpoint", [True, False])
def test_ctrl_c_prints_one_line_and_exits_130(group, job, with_checkpoint, tmp_path, monkeypatch, capsys) -> None:
    """Ctrl-C (KeyboardInterrupt in the job): one line on stderr naming the checkpoint to resume from, or just
    'interrupted' when none was written yet (interrupted during the first temperature / softness); code 130."""
    from glassgen import api_models

    out = tmp_path / "x.h5"
    ck = tmp_path / "x.h5.ckpt.h5"

    def interrupted(*args, **kwargs):
        if with_checkpoint:
            ck.write_bytes(b"")
        raise KeyboardInterrupt

    monkeypatch.setattr(api_models, job, interrupted)
    args = ["--model", "bouchaud", "--T", "2", "--N", "100"] if group == "trap-model" else []
    assert main([group, "run", *args, "--out", str(out)]) == 130
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    expected = f"interrupted: rerun the same command to resume from {ck}" if with_checkpoint else "interrupted"
    assert err == [expected] and captured.out == ""
