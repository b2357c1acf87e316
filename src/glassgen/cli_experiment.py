"""Command line for the predict-then-propose experiments (``glassgen experiment``); see glassgen.cli."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

experiment_app = typer.Typer(no_args_is_help=True, help="Combined experiments (predictors + generators + samplers).",
                             epilog=("Examples:\n\n"
                                     "glassgen experiment predict-propose "
                                     "--config configs/experiments/predict_propose.toml --out runs/pp"))


@experiment_app.command("predict-propose", epilog=(
        "Examples:\n\n"
        "  glassgen experiment predict-propose --config configs/experiments/predict_propose.toml\n\n"
        "  glassgen experiment predict-propose -c configs/experiments/predict_propose.toml --full --out runs/pp\n\n"
        "  glassgen experiment predict-propose -c configs/experiments/predict_propose.toml --seed 3 --out runs/pp3\n\n"
        "Writes OUT/results.json, OUT/report.md and OUT/fs_*.png (tables of tau_alpha and tau_U per CPU second, "
        "the predictor/uniform ratio, U/N checks, the load average)."))
def predict_propose(
    config: Annotated[Path, typer.Option("--config", "-c", help="Experiment TOML (configs/experiments/).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: the config's out).")] = None,
    full: Annotated[bool, typer.Option(
        "--full/--quick", help="Full budget (many hours) or the quick mode (about an hour of CPU on 2 cores for the "
                               "shipped config); finished cases of an earlier run of the same code are reused.")]
    = False,
    seed: Annotated[int | None, typer.Option("--seed", help="Replaces every seed of the config (recorded in "
                                             "results.json).")] = None,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress", help="Progress bars.")] = None,
) -> None:
    """Decorrelation per CPU second of MD, Metropolis, PGMC, predictor-biased PGMC, local flow moves (uniform
    and predictor-selected centres) and global flow-MCMC on small KA systems; Markdown report with plots."""
    from glassgen.api_experiment import predict_propose_experiment

    res = predict_propose_experiment(config=config, out=out, quick=not full, seed=seed,
                                     progress=sys.stderr.isatty() if progress is None else progress)
    for c in res["cases"]:
        typer.echo(f"{c['model']} N={c['N']} T={c['T']}: tau_U ratio predictor/uniform local flow = "
                   f"{c['ratio_tau_U_predictor_over_uniform']:.3g}; tau_alpha ratio predict-PGMC/PGMC = "
                   f"{c['ratio_tau_alpha_predict_pgmc_over_pgmc']:.3g}")
    if res.get("cases_reused"):
        typer.echo(f"{res['cases_reused']} case(s) reused from an earlier run of the same config, mode and code")
    typer.echo(f"report: {Path(res['out_dir']) / 'report.md'}")


def register(app: typer.Typer) -> None:
    """Add this area's command group(s) to the root ``glassgen`` app."""
    app.add_typer(experiment_app, name="experiment")
