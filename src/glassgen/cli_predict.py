"""Command line for propensity predictors (``glassgen predict``); registered by :mod:`glassgen.cli`.

Each command parses options and calls one :mod:`glassgen.api_predict` job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from glassgen.cli_options import Split, split_value

predict_app = typer.Typer(no_args_is_help=True, help="Propensity predictors: train, evaluate, score.",
                          epilog=("Examples:\n\n"
                                  "glassgen predict train --config configs/predictors/ka3d_T0.44_ridge.toml\n\n"
                                  "glassgen predict score runs/predictors/ka3d_T0.44_ridge.npz conf.xyz -o scores.npz"))


def _json_opt(text: str | None, name: str) -> dict | None:
    if text is None:
        return None
    from glassgen.errors import InputError

    try:
        val = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"--{name} must be a JSON object: {exc}") from None
    if not isinstance(val, dict):
        raise InputError(f"--{name} must be a JSON object")
    return val


@predict_app.command("train")
def train_cmd(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML with a \\[predictor] table.")] = None,
    kind: Annotated[str | None, typer.Option("--kind", "-k", help="ridge, glassmlp, gnn or softness.")] = None,
    data: Annotated[Path | None, typer.Option("--data", "-d", help="GlassBench directory.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Model file (.npz).")] = None,
    T: Annotated[float | None, typer.Option("--T", "-T", help="Training temperature (default: all).")] = None,
    time: Annotated[float | None, typer.Option("--time", help="Lag time of the target propensity.")] = None,
    time_index: Annotated[int | None, typer.Option("--time-index", help="Row of the time grid instead.")] = None,
    indices: Annotated[list[int] | None, typer.Option("--index", help="Configuration index (repeat).")] = None,
    hyper: Annotated[str | None, typer.Option("--hyper", help="Hyperparameters as JSON.")] = None,
    descriptors: Annotated[str | None, typer.Option("--descriptors", help="Descriptor settings as JSON.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="Training seed >= 0.")] = None,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress", help="Progress bar.")] = None,
) -> None:
    """Train a propensity predictor on the train split of a GlassBench dataset and save it (one .npz).

    Inherent states (FIRE) and descriptors are cached under runs/predictors/cache. The GNN resumes from
    <out>.ckpt.npz after an interruption.

    Examples:
      glassgen predict train --config configs/predictors/ka3d_T0.44_ridge.toml
      glassgen predict train --kind ridge --data datasets/ka3d_n500 --T 0.8 --time-index 6 --out runs/r.npz
      glassgen predict train --kind glassmlp --data ../shared/data/ka3d-T0.44-isoconfig --out runs/m.npz \\
          --descriptors '{"model": "ka3d_sf"}' --seed 1
    """
    from glassgen.api_predict import train, train_spec_from_config
    from glassgen.cli import _print, _progress, _require

    spec = train_spec_from_config(config, kind=kind, data=data, out=out, T=T, time=time, time_index=time_index,
                                  indices=indices or None, hyper=_json_opt(hyper, "hyper"),
                                  descriptors=_json_opt(descriptors, "descriptors"), seed=seed)
    _require(spec, "kind", "data", "out")
    _print(train(progress=_progress(progress), **spec))


@predict_app.command("eval")
def eval_cmd(
    model: Annotated[Path, typer.Argument(help="Predictor file (.npz).")],
    data: Annotated[Path, typer.Option("--data", "-d", help="GlassBench directory.")],
    T: Annotated[float | None, typer.Option("--T", "-T", help="Test temperature (default: all).")] = None,
    split: Annotated[Split, typer.Option("--split", help="test (default), train, or all.")] = Split.test,
    time: Annotated[float | None, typer.Option("--time", help="Lag time (default: the model's).")] = None,
    time_index: Annotated[int | None, typer.Option(
        "--time-index", help="Row of each sample's time grid instead (6: tau_alpha at each T; default: the "
                             "model's training row where its lag time is not on the grid).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="JSON with the metrics.")] = None,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress", help="Progress bar.")] = None,
) -> None:
    """GlassBench metrics of a predictor on species A: pooled and per-configuration Pearson, R^2, chi_4.

    Examples:
      glassgen predict eval runs/predictors/ka3d_T0.44_ridge.npz --data ../shared/data/ka3d-T0.44-isoconfig
      glassgen predict eval runs/r.npz --data datasets/ka3d_n500 --T 0.64 --out runs/r_T064.json
      glassgen predict eval runs/r.npz --data datasets/ka3d_n500 --T 0.64 --time-index 3
    """
    from glassgen.api_predict import evaluate
    from glassgen.cli import _print, _progress

    _print(evaluate(model=model, data=data, T=T, split=split_value(split), time=time, time_index=time_index, out=out,
                    progress=_progress(progress)))


@predict_app.command("score")
def score_cmd(
    model: Annotated[Path, typer.Argument(help="Predictor file (.npz).")],
    input: Annotated[Path, typer.Argument(help="Configuration (xyz, h5, LAMMPS data, GlassBench npz).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output npz with the per-particle predictions.")],
    interaction_model: Annotated[str | None, typer.Option(
        "--model", "-m", help="Model to read an xyz or LAMMPS data file with (they name none; default: the "
                              "predictor's). Descriptors and inherent states always use the predictor's own model.")
    ] = None,
) -> None:
    """Per-particle predicted propensity of one configuration (inherent state computed if the model needs it).

    Examples:
      glassgen predict score runs/predictors/ka3d_T0.44_ridge.npz conf.xyz --out conf.pred.npz
      glassgen predict score runs/r.npz datasets/ka3d_n500/T0.80/N500T0.80_45.npz -o p.npz
    """
    from glassgen.api_predict import score_file
    from glassgen.cli import _print

    _print(score_file(model=model, input=input, out=out, interaction_model=interaction_model))


@predict_app.command("softness-law")
def softness_law_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Softness law (TOML, the trap models' format).")],
    temperatures: Annotated[list[float], typer.Option("--T", "-T", help="MD temperature (repeat; at least two).")],
    n: Annotated[int, typer.Option("--N", "--n", help="Particles.")] = 400,
    model: Annotated[str, typer.Option("--model", "-m", help="Interaction model.")] = "ka3d",
    t_prod: Annotated[float, typer.Option("--t-prod", help="Production time per temperature (LJ units).")] = 100.0,
    frame_dt: Annotated[float, typer.Option("--frame-dt", help="Frame spacing (LJ units).")] = 0.1,
    half_window: Annotated[int, typer.Option("--half-window", help="p_hop half window (frames).")] = 10,
    p_c: Annotated[float, typer.Option("--p-c", help="Rearrangement threshold on p_hop.")] = 0.2,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed (MD at the k-th T uses seed + k; SVM CV).")] = 0,
    svm_out: Annotated[Path | None, typer.Option("--svm-out", help="Also save the SVM as a predictor (.npz).")]
    = None,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress", help="Progress bars.")] = None,
) -> None:
    """Softness study: MD at each temperature, p_hop labels, a linear SVM for the softness S, the rearrangement
    probability P_R(S, T) and its per-bin Arrhenius fit, exported for the softness trap models.

    Equilibration per temperature: min(400, 30 / max(T - 0.45, 0.05)). Finished temperatures are kept in
    <out>.trajectories.npz until the law is written: after an interruption the same command resumes.

    Examples:
      glassgen predict softness-law --T 0.56 --T 0.62 --T 0.7 --T 0.8 --out soft_ka3d.toml  # the shipped law's run
      glassgen predict softness-law --T 0.8 --T 1.0 --N 200 --t-prod 50 --out soft.toml --svm-out soft.npz
    """
    from glassgen.api_predict import softness
    from glassgen.cli import _print, _progress

    _print(softness(out=out, temperatures=list(temperatures), n=n, model=model, t_prod=t_prod, frame_dt=frame_dt,
                    half_window=half_window, p_c=p_c, seed=seed, model_out=svm_out, progress=_progress(progress)))


def register(app: typer.Typer) -> None:
    """Add ``glassgen predict`` to the root app."""
    app.add_typer(predict_app, name="predict")
