"""Command line for policy-guided Monte Carlo (glassgen pgmc); registered by :mod:`glassgen.cli`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from glassgen import cli_options as opts
from glassgen.cli_options import DensOpt, InputOpt, ModelOpt, NOpt, ProgOpt, SeedOpt, TOpt
from glassgen.errors import InputError

pgmc_app = typer.Typer(no_args_is_help=True,
                       help="Policy-guided Monte Carlo: learn proposals in burn-in, then run exact chains.",
                       epilog=("Examples:\n\n"
                               "glassgen pgmc train --model ka2d --N 43 --T 0.5 --out ka2d_n43.policy.json\n\n"
                               "glassgen pgmc run --policy ka2d_n43.policy.json --sweeps 20000 --chains 8 "
                               "--out pgmc.h5"))

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config (\\[train]/\\[run] tables); "
                                                                        "command-line options win.")]
ChainsOpt = Annotated[int | None, typer.Option("--chains", help="Parallel chains.")]


def _merge(config: Path | None, section: str, target: Any, **cli: Any) -> dict[str, Any]:
    """Config keys (top level + ``[section]``) overridden by the options given on the command line."""
    from glassgen.api import config_options

    return config_options(config, section, target, other_tables=("train", "run"), **cli)


def _require(opts: dict[str, Any], *keys: str) -> None:
    missing = [k for k in keys if opts.get(k) is None]
    if missing:
        raise InputError(f"missing option(s): {', '.join('--' + m.replace('_', '-') for m in missing)} "
                         "(or set them in --config)")


_progress = opts.progress_flag
_print = opts.print_summary


@pgmc_app.command("train")
def train_cmd(
    config: ConfigOpt = None, input: InputOpt = None, model: ModelOpt = None, n: NOpt = None,
    density: DensOpt = None, T: TOpt = None, seed: SeedOpt = None, n_chains: ChainsOpt = None,
    iterations: Annotated[int | None, typer.Option("--iterations", help="Learning steps (default 200).")] = None,
    trials: Annotated[int | None, typer.Option("--trials", help="Trial proposals per chain and step.")] = None,
    optimizer: Annotated[str | None, typer.Option("--optimizer", help="plain, baseline or natural.")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Learning rate.")] = None,
    local_fraction: Annotated[float | None, typer.Option(
        "--local-fraction", help="Fraction of environment-aware displacements (default: 1.0 in 3D, 0.8 for "
                                 "2D systems of <= 100 particles, else 0.3: the best measured; at most 1 - "
                                 "swaps).")] = None,
    swap_fraction: Annotated[float | None, typer.Option("--swap-fraction",
                                                        help="Fraction of swaps (default 0.2 for ka2d/ka2).")] = None,
    biased: Annotated[bool | None, typer.Option("--biased/--uniform",
                                                     help="Biased or uniform (default) swap selection.")]
    = None,
    flip: Annotated[float | None, typer.Option("--flip", help="With --biased: start the single-flip selection "
                                               "coefficients at -FLIP/T (0.5: weights exp(-dE/2T) of the "
                                               "single-flip energy changes dE).")]
    = None,
    equilibrate: Annotated[int | None, typer.Option("--equilibrate", min=0, help="Sweeps before learning.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Policy file (JSON), written atomically.")] = None,
    progress: ProgOpt = None,
) -> None:
    """Learn a PGMC policy during burn-in (on-policy gradient of E[reward x acceptance]) and save it.

    Examples:
      glassgen pgmc train --model ka2d --N 43 --T 0.5 --out ka2d_n43.policy.json
      glassgen pgmc train --config configs/pgmc/ka2d_n43.toml --seed 3
      glassgen pgmc train --model ka3d --N 600 --T 0.6 --local-fraction 0.5 --optimizer baseline --out ka3d.json
      glassgen pgmc train --model ka2d --N 43 --T 0.3 --local-fraction 0.8 --biased --out biased.policy.json
      glassgen pgmc train --model ka2d --N 43 --T 0.3 --local-fraction 0.8 --biased --flip 0.5 --out flip.json
    """
    from glassgen.api_pgmc import pgmc_train

    o = _merge(config, "train", pgmc_train, input=input, model=model, n=n, density=density, T=T, seed=seed,
               n_chains=n_chains, iterations=iterations, trials_per_chain=trials, optimizer=optimizer, lr=lr,
               local_fraction=local_fraction, swap_fraction=swap_fraction, biased=biased, flip=flip,
               equilibrate_sweeps=equilibrate, out=out)
    _require(o, "T", "out")
    opts.RUN_OUT[0] = str(o["out"])
    _print(pgmc_train(progress=_progress(progress), **o))


@pgmc_app.command("run")
def run_cmd(
    config: ConfigOpt = None,
    policy: Annotated[Path | None, typer.Option("--policy", "-p", help="Policy file from glassgen pgmc train.")]
    = None,
    input: InputOpt = None, model: ModelOpt = None, n: NOpt = None, density: DensOpt = None, T: TOpt = None,
    sweeps: Annotated[int | None, typer.Option("--sweeps", help="Sweeps (N trial moves per chain each).")] = None,
    n_chains: ChainsOpt = None,
    equilibrate: Annotated[int | None, typer.Option("--equilibrate", min=0, help="Sweeps before recording (default 0: "
                                                    "from a random state, equilibrate, e.g. 5000 at N = 43, T = 0.5; "
                                                    "the U/N estimate also drops the first 20%).")] = None,
    sample_every: Annotated[int | None, typer.Option("--sample-every", min=1, help="Sweeps between energy samples.")]
    = None,
    traj: Annotated[str | None, typer.Option("--traj", help="Frames: log (default), linear or none.")] = None,
    q: Annotated[float | None, typer.Option("--q", help="Wavenumber of F_s for tau_alpha.")] = None,
    checkpoint_every: Annotated[int | None, typer.Option("--checkpoint-every", min=1,
                                                         help="Sweeps between checkpoints.")] = None,
    seed: SeedOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output HDF5, written atomically.")] = None,
    progress: ProgOpt = None,
) -> None:
    """Production PGMC with a frozen policy (exact Markov chains); resumes from <out>.ckpt.h5 if interrupted.

    Defaults (model, N, T) come from the policy file.

    Examples:
      glassgen pgmc run --policy ka2d_n43.policy.json --sweeps 20000 --chains 8 --out pgmc.h5
      glassgen pgmc run --policy ka2d_n43.policy.json --T 0.4 --sweeps 100000 --checkpoint-every 5000 --out cold.h5
      glassgen pgmc run --config configs/pgmc/ka2d_n43.toml --policy p.json --out run.h5
    """
    from glassgen.api_pgmc import pgmc_run

    o = _merge(config, "run", pgmc_run, policy=policy, input=input, model=model, n=n, density=density, T=T,
               sweeps=sweeps, n_chains=n_chains, equilibrate_sweeps=equilibrate, sample_every=sample_every,
               traj=traj, q=q, checkpoint_every=checkpoint_every, seed=seed, out=out)
    _require(o, "policy", "sweeps", "out")
    opts.RUN_OUT[0] = str(o["out"])
    _print(pgmc_run(progress=_progress(progress), **o))


def register(app: typer.Typer) -> None:
    """Add this area's command group(s) to the root glassgen app."""
    app.add_typer(pgmc_app, name="pgmc")
