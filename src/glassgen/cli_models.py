"""Command line for phenomenological models (glassgen trap-model, glassgen step-model).

Registered by :mod:`glassgen.cli` through :func:`register`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from glassgen.cli_options import ConfigOpt, ProgOpt, SeedOpt, print_summary, progress_flag
from glassgen.errors import InputError

OutOpt = Annotated[Path | None, typer.Option("--out", "-o",
                                             help="Output file (HDF5, PNG next to it), written atomically.")]


def _interruptible(out: str | Path, job: Callable[[], None]) -> None:
    """Run ``job``; on Ctrl-C print one line on stderr (how to resume, if a checkpoint was kept) and exit 130.

    The job keeps a checkpoint ``<out>.ckpt.h5`` after every finished temperature / softness (trap models also
    within a temperature: every minute and at the Ctrl-C); an interruption before the first leaves nothing.
    """
    from glassgen.api_models import _ckpt

    try:
        job()
    except KeyboardInterrupt:
        ck = _ckpt(out)
        typer.echo(f"interrupted: rerun the same command to resume from {ck}" if ck.is_file() else "interrupted",
                   err=True)
        raise typer.Exit(130) from None


# top-level keys of the configs and their TOML types (temperatures and mean softnesses: one or a list)
_JOB_KEYS_TRAP = {"model": str, "T": float | list, "N": int, "n": int, "replicas": int, "seed": int, "q": float,
                  "p_stop": float, "t_max": float, "max_events": int, "n_per_decade": int, "n_blocks": int,
                  "out": str, "softness_law": str, "input": str}
_JOB_KEYS_STEP = {"s_mean": float | list, "gamma_max": float, "seed": int, "out": str}


def _check_job(job: dict[str, Any], keys: dict[str, Any], config: Path | None) -> dict[str, Any]:
    """Unknown top-level keys and values of the wrong type are one-line errors."""
    from glassgen.config_values import check_types

    unknown = sorted(set(job) - set(keys))
    if unknown:
        raise InputError(f"unknown key(s) in {config}: {', '.join(unknown)} (allowed: {', '.join(sorted(keys))})")
    hints = {k: (float if t == float | list else t) for k, t in keys.items()}
    scalars = {k: v for k, v in job.items() if not isinstance(v, list)}
    for k, v in job.items():
        if isinstance(v, list):
            if keys[k] != float | list:
                raise InputError(f"{config}: {k} must be one value, got a list")
            check_types({f"{k}[{i}]": x for i, x in enumerate(v)}, {f"{k}[{i}]": float for i in range(len(v))},
                        str(config))
    return {**job, **check_types(scalars, hints, str(config))}


def trap_run_cmd(
    model: Annotated[str | None, typer.Option("--model", "-m", help="bouchaud, bouchaud-gaussian, softness, "
                                              "softness-facilitated or facilitated.")] = None,
    T: Annotated[list[float] | None, typer.Option("--T", "-T", help="Temperature; repeat for a sweep.")] = None,
    config: ConfigOpt = None,
    n: Annotated[int | None, typer.Option("--N", "--n", help="Number of traps (non-lattice models).")] = None,
    L: Annotated[int | None, typer.Option("--L", help="Lattice side (facilitated models).")] = None,
    dim: Annotated[int | None, typer.Option("--dim", help="Dimension of lattice and displacements.")] = None,
    replicas: Annotated[int | None, typer.Option("--replicas", min=1, help="Independent runs per temperature.")] = None,
    softness_law: Annotated[str | None, typer.Option("--softness-law", help="Softness-law TOML/JSON, the export of "
                                                     "`predict softness-law`, or a name (default "
                                                     "softness_systemIII).")] = None,
    input: Annotated[Path | None, typer.Option("--input", "-i", help="Configuration for off-lattice "
                                               "facilitation (.xyz, .data, .h5).")] = None,
    T0: Annotated[float | None, typer.Option("--T0", help="Bouchaud barrier scale T0.")] = None,
    E0: Annotated[float | None, typer.Option("--E0", help="Mean Gaussian barrier.")] = None,
    sigma_E: Annotated[float | None, typer.Option("--sigma-E", help="Std of Gaussian barriers.")] = None,
    eta0: Annotated[float | None, typer.Option("--eta0", help="Facilitation kick strength at r = 1.")] = None,
    r_c: Annotated[float | None, typer.Option("--r-c", help="Facilitation range.")] = None,
    redraw: Annotated[str | None, typer.Option("--redraw", help="stationary (default) or naive (control).")] = None,
    p_stop: Annotated[float | None, typer.Option("--p-stop", help="Stop when this fraction never moved "
                                                 "(default 0.05).")] = None,
    max_events: Annotated[int | None, typer.Option("--max-events", min=1, help="Event budget per run.")] = None,
    q: Annotated[float | None, typer.Option("--q", help="Wave number of F_s (default pi/b).")] = None,
    seed: SeedOpt = None, out: OutOpt = None, progress: ProgOpt = None,
) -> None:
    """Trap models by rejection-free kinetic Monte Carlo: one temperature or a sweep in one command.

    Writes persistence, F_s, MSD, chi_4, chi''(omega), tau_alpha(T), D*tau_alpha and the steepness of tau_alpha
    at the lowest T (d log10 tau / d(T_low/T); not Angell's m, whose Tg has tau = 100 s) to an
    HDF5 file with a PNG summary. Ctrl-C saves the run in progress (<out>.ckpt.h5, also written every minute);
    the same command resumes it where it stopped, with the uninterrupted run's result.

    Examples:
      glassgen trap-model run --model bouchaud --T0 1 --T 1.5 --T 2 --T 3 --N 10000 --out mb.h5
      glassgen trap-model run --model softness --T 0.40 --T 0.38 --T 0.36 --N 1000 --out softness.h5
      glassgen trap-model run -c configs/models/phenomenological/softness_facilitated_2d.toml --T 0.4 --T 0.36 -o fac.h5
      glassgen trap-model run --model facilitated --L 48 --dim 2 --eta0 0.1 --T 0.4 --p-stop 0.02 --out wing.h5
      glassgen trap-model run --model softness-facilitated --r-c 1.5 --T 0.38 --out offlattice.h5 \
        --input ../shared/data/configurations/ka2d_N1290_T0.231.xyz

    An option the chosen model does not use (--N of a lattice model, --T0 of a softness model, ...) is an error.
    """
    from glassgen.api_models import load_model_config, trap_model_run
    from glassgen.models.trap import unused_options

    job, params = load_model_config(config)
    job = _check_job(job, _JOB_KEYS_TRAP, config)
    cli_params = {"L": L, "dim": dim, "T0": T0, "E0": E0, "sigma_E": sigma_E, "eta0": eta0, "r_c": r_c,
                  "redraw": redraw}
    mdl = model or job.get("model")
    Ts = T or job.get("T")
    o = out or job.get("out")
    missing = [f for f, v in (("--model", mdl), ("--T", Ts), ("--out", o)) if v is None]
    if missing:
        raise InputError(f"missing option(s): {', '.join(missing)} (or set them in --config)")
    # an option the chosen model does not use is an error, not silently ignored (defaults are fine)
    flags = {"sigma_E": "--sigma-E", "r_c": "--r-c", "softness_law": "--softness-law", "N": "--N",
             "input": "--input"}
    given = {k: f"{k} (--config)" for k in (*params, *job) if k != "n"}
    if "n" in job:
        given["N"] = "n (--config)"
    cli = {**cli_params, "N": n, "softness_law": softness_law, "input": input}
    given |= {k: flags.get(k, f"--{k}") for k, v in cli.items() if v is not None}
    msg = unused_options(str(mdl), given, off_lattice=(input or job.get("input") or params.get("input")) is not None)
    if msg:
        raise InputError(msg)
    for k, v in cli_params.items():
        if v is not None:
            params[k] = v
    law = softness_law or params.pop("softness_law", None) or job.get("softness_law")
    params.pop("softness_law", None)
    nn = n if n is not None else job.get("N", job.get("n"))
    _interruptible(o, lambda: print_summary(trap_model_run(
        mdl, Ts, o, n=nn, replicas=replicas if replicas is not None else int(job.get("replicas", 1)),
        seed=seed if seed is not None else int(job.get("seed", 0)),
        q=q if q is not None else job.get("q"), p_stop=p_stop if p_stop is not None else float(job.get("p_stop", 0.05)),
        t_max=job.get("t_max"),
        max_events=max_events if max_events is not None else int(job.get("max_events", 500_000_000)),
        n_per_decade=int(job.get("n_per_decade", 8)), n_blocks=int(job.get("n_blocks", 4)), params=params,
        softness_law=law, input=input or job.get("input"), progress=progress_flag(progress))))


def step_run_cmd(
    config: ConfigOpt = None,
    L: Annotated[int | None, typer.Option("--L", help="Lattice side (even).")] = None,
    dim: Annotated[int | None, typer.Option("--dim", help="2 (PRR model) or 3.")] = None,
    s_mean: Annotated[list[float] | None, typer.Option("--s-mean", help="Initial mean softness; repeat to "
                                                       "compare (default PRR -1.66).")] = None,
    gamma_max: Annotated[float | None, typer.Option("--gamma-max", help="Final applied strain (default 0.2).")] = None,
    restore_shift: Annotated[float | None, typer.Option("--restore-shift", help="Shift c of the softness "
                                                        "restoring target (default 0).")] = None,
    seed: SeedOpt = None, out: OutOpt = None, progress: ProgOpt = None,
) -> None:
    """StEP lattice model (structuro-elasto-plasticity) under athermal quasistatic shear.

    Writes stress-strain curves, avalanche sizes, softness statistics, plastic-strain maps and
    ductility measures (HDF5 + PNG); parameters default to the PRR model
    (configs/models/phenomenological/step_prr.toml).

    Examples:
      glassgen step-model run --L 64 --gamma-max 0.2 --out step.h5
      glassgen step-model run -c configs/models/phenomenological/step_prr.toml --s-mean -1.66 --s-mean -5 -o step.h5
      glassgen step-model run -c configs/models/phenomenological/step_3d.toml --out step3d.h5

    The interaction ranges (co_range 10, r_soft 30, restore_range 10) must fit in half the lattice: a lattice
    smaller than L = 60 needs smaller ranges in \\[params] of a --config (step_3d.toml does so).
    """
    from glassgen.api_models import load_model_config, step_model_run

    job, params = load_model_config(config)
    job = _check_job(job, _JOB_KEYS_STEP, config)
    for k, v in {"L": L, "dim": dim, "restore_shift": restore_shift}.items():
        if v is not None:
            params[k] = v
    o = out or job.get("out")
    if o is None:
        raise InputError("missing option: --out (or set out in --config)")
    _interruptible(o, lambda: print_summary(step_model_run(
        o, s_mean=s_mean or job.get("s_mean"),
        gamma_max=gamma_max if gamma_max is not None else float(job.get("gamma_max", 0.2)),
        seed=seed if seed is not None else int(job.get("seed", 0)), params=params, progress=progress_flag(progress))))


def register(app: typer.Typer) -> None:
    """Add this area's command group(s) to the root glassgen app."""
    trap_app = typer.Typer(no_args_is_help=True, help="Trap models (Monthus-Bouchaud, softness, facilitated) by KMC.",
                           epilog=("Examples:\n\n"
                                   "glassgen trap-model run --model bouchaud --T0 1 --T 1.5 --T 2 --out trap.h5\n\n"
                                   "glassgen trap-model run --config configs/models/phenomenological/softness.toml "
                                   "--T 0.4 --T 0.38 --N 1000 --out softness.h5"))
    step_app = typer.Typer(no_args_is_help=True,
                           help="StEP lattice model (structuro-elasto-plasticity) under AQS shear.",
                           epilog=("Examples:\n\n"
                                   "glassgen step-model run --L 64 --gamma-max 0.2 --out step.h5"))
    trap_app.command("run")(trap_run_cmd)
    step_app.command("run")(step_run_cmd)
    app.add_typer(trap_app, name="trap-model")
    app.add_typer(step_app, name="step-model")
