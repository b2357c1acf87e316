"""The ``glassgen`` command line (typer). Each command parses options and calls one api function.

Bad input prints one line ``error: ...`` on stderr and exits with code 2 (never a traceback).
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from glassgen import __version__
from glassgen.cli_options import (
    RUN_OUT,
    ConfigOpt,
    DensOpt,
    InputOpt,
    ModelOpt,
    NOpt,
    ProgOpt,
    SeedOpt,
    TOpt,
    print_summary,
    progress_flag,
)
from glassgen.errors import GlassgenError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="glassgen: simulation and machine learning of glassy dynamics (Kob-Andersen and friends).",
                  epilog=("Examples:\n\n"
                          "glassgen sample --T 0.4\n\n"
                          "glassgen md run --model ka3d --N 500 --T 0.8 --steps 20000 --out md.h5\n\n"
                          "glassgen trap-model run --model bouchaud --T 1.5 --out trap.h5\n\n"
                          "glassgen <command> --help"))
md_app = typer.Typer(no_args_is_help=True, help="Molecular dynamics (Numba engine or LAMMPS).",
                     epilog=("Examples:\n\n"
                             "glassgen md run --model ka3d --N 500 --T 0.8 --steps 20000 --out md.h5\n\n"
                             "glassgen md export-lammps --model ka3d_sf --N 4096 --T 0.44 --steps 1000000 "
                             "--out-dir lmp/"))
mc_app = typer.Typer(no_args_is_help=True, help="Metropolis Monte Carlo (displacements and species swaps).",
                     epilog=("Examples:\n\n"
                             "glassgen mc run --model ka2d --N 200 --T 0.5 --sweeps 5000 --swap-fraction 0.1 "
                             "--out mc.h5"))
app.add_typer(md_app, name="md")
app.add_typer(mc_app, name="mc")
flow_app = typer.Typer(no_args_is_help=True,
                       help="Normalizing-flow Boltzmann generators (training; sampling is glassgen sample).",
                       epilog=("Examples:\n\n"
                               "glassgen flow train --config configs/flows/ka3d_n64.toml --out runs/ka3d_n64.pt\n\n"
                               "glassgen sample --T 0.45 --checkpoint runs/ka3d_n64.pt"))
app.add_typer(flow_app, name="flow")

# ------------------------------------------------------------------ shared options
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Output file (HDF5), written atomically.")]
ConfOutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Output configuration (.h5, .xyz or .data, by "
                                                  "its suffix), written atomically.")]


def _merge(config: Path | None, section: str, **cli: Any) -> dict[str, Any]:
    """Config-file keys (top level + ``[section]``) overridden by the options given on the command line."""
    from glassgen import api

    target = {"md": api.md_run, "mc": api.mc_run, "minimize": api.minimize, "init": api.init_state}[section]
    return api.config_options(config, section, target, **cli)


_progress = progress_flag  # short names used by every command module
_print = print_summary


def _require(opts: dict[str, Any], *keys: str) -> None:
    missing = [k for k in keys if opts.get(k) is None]
    if missing:
        flags = ", ".join("--N" if m == "n" else "--" + m.replace("_", "-") for m in missing)
        raise GlassgenError(f"missing option(s): {flags} (or set them in --config)")


# ------------------------------------------------------------------ commands
@app.command("models")
def models_cmd() -> None:
    """List the interaction models (configs/models/*.toml).

    Example: [bold]glassgen models[/bold]
    """
    from glassgen.systems.model import available_models, load_model

    for name in available_models():
        m = load_model(name)
        typer.echo(f"{name:10s} {m.dim}D {len(m.species)} species, rho={m.density}, {m.cutoff_scheme}: {m.description}")


@app.command("init")
def init_cmd(model: ModelOpt = None, n: NOpt = None, T: TOpt = None, density: DensOpt = None,
             seed: SeedOpt = None, out: ConfOutOpt = None, config: ConfigOpt = None) -> None:
    """Random initial configuration without overlaps (soft-core FIRE), velocities at T.

    Examples:
      glassgen init --model ka3d --N 1000 --T 1.0 --out init.h5
      glassgen init --model ka2d --N 1290 --out ka2d.xyz
    """
    from glassgen.api import init_state

    o = _merge(config, "init", model=model, n=n, T=T, density=density, seed=seed, out=out)
    _require(o, "model", "n", "out")
    _print(init_state(**{k: o[k] for k in ("model", "n", "out", "T", "density", "seed") if k in o}))


@md_app.command("run")
def md_run_cmd(
    config: ConfigOpt = None, input: InputOpt = None, model: ModelOpt = None, n: NOpt = None,
    density: DensOpt = None, T: TOpt = None,
    steps: Annotated[int | None, typer.Option("--steps", help="MD steps.")] = None,
    equilibrate: Annotated[int | None, typer.Option("--equilibrate", min=0, help="NVT steps at T before the "
                                                    "recorded run (default 0; a random start wants some).")] = None,
    dt: Annotated[float | None, typer.Option("--dt", help="Time step (default 0.005).")] = None,
    ensemble: Annotated[str | None, typer.Option("--ensemble", help="nve or nvt (default nvt).")] = None,
    thermostat: Annotated[str | None, typer.Option("--thermostat", help="nhc (default), langevin or bussi.")] = None,
    tau: Annotated[float | None, typer.Option("--tau", help="Thermostat time constant (default 0.5).")] = None,
    engine: Annotated[str | None, typer.Option("--engine", help="numba (default) or lammps.")] = None,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="Threads for the force loop.")] = None,
    traj: Annotated[str | None, typer.Option("--traj", help="Frames: log (default), linear or none.")] = None,
    traj_every: Annotated[int | None, typer.Option(
        "--traj-every", min=1, help="Steps between frames of --traj linear (default: 100 frames).")] = None,
    traj_blocks: Annotated[int | None, typer.Option("--traj-blocks", min=1, help="Log-frame time origins.")] = None,
    thermo_every: Annotated[int | None, typer.Option("--thermo-every", min=1, help="Steps per thermo sample.")] = None,
    seed: SeedOpt = None, out: OutOpt = None, progress: ProgOpt = None,
) -> None:
    """Molecular dynamics (NVE or NVT) from a file or a random state; resumes if interrupted (numba engine;
    a LAMMPS run starts over).

    Examples:
      glassgen md run --model ka3d --N 500 --T 0.8 --steps 20000 --out md.h5
      glassgen md run --model ka3d --N 500 --T 0.6 --equilibrate 20000 --steps 40000 --out md06.h5
      glassgen md run --input conf.xyz --model ka3d_sf --T 0.44 --steps 100000 --thermostat bussi --out run.h5
      glassgen md run --config configs/md/demo.toml
      glassgen md run --config configs/md/demo.toml --engine lammps --threads 2
    """
    from glassgen.api import md_run

    o = _merge(config, "md", input=input, model=model, n=n, density=density, T=T, steps=steps,
               equilibrate_steps=equilibrate, dt=dt,
               ensemble=ensemble, thermostat=thermostat, tau=tau, engine=engine, threads=threads, traj=traj,
               traj_every=traj_every, traj_blocks=traj_blocks, thermo_every=thermo_every, seed=seed, out=out)
    _require(o, "steps", "out")
    RUN_OUT[0] = str(o["out"])
    o.setdefault("T", None)
    _warn_nve_thermostat(o)
    _print(md_run(progress=_progress(progress), **o))


def _warn_nve_thermostat(o: dict) -> None:
    """A warning for each thermostat option given to an NVE run (they would be ignored silently)."""
    if o.get("ensemble") == "nve":
        for key in ("thermostat", "tau"):
            if o.get(key) is not None:
                warnings.warn(f"--{key} {o[key]} ignored: an NVE run has no thermostat", stacklevel=2)


@md_app.command("export-lammps")
def md_export_cmd(
    input: InputOpt = None, model: ModelOpt = None, n: NOpt = None, density: DensOpt = None, T: TOpt = None,
    steps: Annotated[int | None, typer.Option("--steps", help="MD steps.")] = None,
    dt: Annotated[float, typer.Option("--dt", help="Time step.")] = 0.005,
    ensemble: Annotated[str, typer.Option("--ensemble", help="nve or nvt.")] = "nvt",
    thermostat: Annotated[str | None, typer.Option("--thermostat", help="nhc (default), langevin or bussi.")] = None,
    tau: Annotated[float | None, typer.Option("--tau", help="Thermostat time constant (default 0.5).")] = None,
    dump_every: Annotated[int, typer.Option("--dump-every", help="Steps between dumped frames (0: none).")] = 0,
    seed: SeedOpt = None,
    out_dir: Annotated[Path | None, typer.Option("--out-dir", help="Directory for in.glassgen + data.")] = None,
) -> None:
    """Write a stand-alone LAMMPS run (same model, thermostat, state) for MPI production runs.

    Examples:
      glassgen md export-lammps --model ka3d_sf --N 4096 --T 0.44 --steps 1000000 --out-dir lmp/
      cd lmp && mpirun -np 4 lmp -in in.glassgen
    """
    from glassgen.api import load_input
    from glassgen.dynamics.lammps_engine import export_lammps_input

    missing = [f for f, v in (("--steps", steps), ("--out-dir", out_dir)) if v is None]
    if missing:
        raise GlassgenError(f"missing option(s): {' and '.join(missing)}")
    _warn_nve_thermostat({"ensemble": ensemble, "thermostat": thermostat, "tau": tau})
    conf = load_input(input, model, n, T, density, seed or 0, check_overlap=True)
    paths = export_lammps_input(conf, out_dir, T=T, dt=dt, nsteps=steps, ensemble=ensemble,
                                thermostat=thermostat or "nhc", tau=0.5 if tau is None else tau, seed=seed or 0,
                                dump_every=dump_every)
    _print({**paths, "run": f"cd {out_dir} && mpirun -np K lmp -in in.glassgen"})


@mc_app.command("run")
def mc_run_cmd(
    config: ConfigOpt = None, input: InputOpt = None, model: ModelOpt = None, n: NOpt = None,
    density: DensOpt = None, T: TOpt = None,
    sweeps: Annotated[int | None, typer.Option("--sweeps", help="MC sweeps (N trial moves each).")] = None,
    delta: Annotated[float | None, typer.Option(
        "--delta", help="Maximal displacement (sigma_AA), used as is; without it 0.1, tuned first.")] = None,
    swap_fraction: Annotated[float | None, typer.Option("--swap-fraction", help="Fraction of swap trials.")] = None,
    tune_sweeps: Annotated[int | None, typer.Option(
        "--tune-sweeps", min=0, help="Sweeps tuning delta towards acceptance 0.4 before the run (default 200 "
        "without --delta, 0 with it).")] = None,
    traj: Annotated[str | None, typer.Option("--traj", help="Frames: log (default), linear or none.")] = None,
    traj_every: Annotated[int | None, typer.Option(
        "--traj-every", min=1, help="Sweeps between frames of --traj linear (default: 100 frames).")] = None,
    equilibrate: Annotated[int | None, typer.Option("--equilibrate", min=0, help="Sweeps at T before the recorded "
                                                    "run, after the delta tuning (default 0).")] = None,
    traj_blocks: Annotated[int | None, typer.Option("--traj-blocks", min=1, help="Time origins of --traj log "
                                                    "frames (chi_4 needs 2 or more).")] = None,
    seed: SeedOpt = None, out: OutOpt = None, progress: ProgOpt = None,
) -> None:
    """Metropolis Monte Carlo with displacement moves and (for KA2D/KA2) species swaps.

    Examples:
      glassgen mc run --model ka2d --N 200 --T 0.5 --equilibrate 2000 --sweeps 5000 --swap-fraction 0.1 --out mc.h5
      glassgen mc run --input ../shared/data/configurations/ka2d_N1290_T0.231.xyz --T 0.231 --sweeps 100 --out mc.h5
    """
    from glassgen.api import mc_run

    o = _merge(config, "mc", input=input, model=model, n=n, density=density, T=T, sweeps=sweeps, delta=delta,
               swap_fraction=swap_fraction, tune_sweeps=tune_sweeps, equilibrate_sweeps=equilibrate, traj=traj,
               traj_every=traj_every, traj_blocks=traj_blocks, seed=seed, out=out)
    _require(o, "T", "sweeps", "out")
    RUN_OUT[0] = str(o["out"])
    _print(mc_run(progress=_progress(progress), **o))


@app.command("minimize")
def minimize_cmd(
    input: InputOpt = None, model: ModelOpt = None, out: ConfOutOpt = None,
    ftol: Annotated[float | None, typer.Option("--ftol", help="Force tolerance (default 1e-10).")] = None,
    soft: Annotated[bool, typer.Option("--soft", help="Remove overlaps with a soft core first.")] = False,
    config: ConfigOpt = None, progress: ProgOpt = None,
) -> None:
    """FIRE minimisation to the inherent state.

    Examples:
      glassgen minimize --input ../shared/data/configurations/ka3d_N150_rho1.2.xyz --model ka3d --out is.xyz
      glassgen minimize --input random.h5 --soft --out clean.h5
    """
    from glassgen.api import minimize

    o = _merge(config, "minimize", input=input, model=model, out=out, ftol=ftol)
    _require(o, "input", "out")
    _print(minimize(soft=soft, progress=_progress(progress), **o))


@app.command("analyze")
def analyze_cmd(
    input: Annotated[Path, typer.Argument(help="A run file written by md run, mc run or pgmc run.")],
    out_dir: Annotated[Path | None, typer.Option("--out-dir", help="Directory for PNGs and tables.")] = None,
    q: Annotated[float | None, typer.Option("--q", help="Wave number of F_s (default 7.25 in 3D, 2 pi in 2D).")] = None,
    r_max: Annotated[float | None, typer.Option("--r-max", help="g(r) range (default L/2).")] = None,
    bins: Annotated[int, typer.Option("--bins", help="g(r) bins.")] = 200,
    overlap_a: Annotated[float, typer.Option("--overlap-a", help="Overlap radius a of Q(t) and chi_4(t).")] = 0.3,
    q_max: Annotated[float, typer.Option("--q-max", help="Largest wave number of S(q).")] = 12.0,
) -> None:
    """g_ab(r), S(q), MSD, F_s(q,t), tau_alpha (F_s = 1/e), alpha_2, self overlap Q(t) and chi_4(t), with PNGs.

    The main peak of S_AA(q) (in the summary) is the usual q for F_s: 7.25 for KA 3D at rho = 1.2.

    chi_4(t) = N var Q(t) is taken over the time origins of an MD run (needs a run many tau_alpha long and a
    trajectory with several origins, e.g. md run --traj-blocks) or over the chains of a PGMC run.

    Examples:
      glassgen analyze md.h5
      glassgen analyze md.h5 --q 6.0 --out-dir analysis/
      glassgen analyze pgmc.h5   # time in MC sweeps, pooled over the chains
    """
    from glassgen.api import analyze

    _print(analyze(input=input, out_dir=out_dir, q=q, r_max=r_max, bins=bins, overlap_a=overlap_a, q_max=q_max))


@flow_app.command("train")
def flow_train_cmd(
    config: Annotated[Path, typer.Option("--config", "-c", help="Flow TOML (configs/flows/*.toml).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint (.pt), written atomically.")],
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from --out if it exists.")] = True,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    ship: Annotated[bool, typer.Option("--ship", help="Also install a slim copy as the package's shipped flow.")]
    = False,
    workers: Annotated[int, typer.Option("--workers", help="Processes generating the reference data's chains.")]
    = 1,
    seed: Annotated[int | None, typer.Option("--seed", help="Replaces the config's [training] seed (torch and the "
                                             "reference data's chains; recorded in the checkpoint).")] = None,
    progress: ProgOpt = None,
) -> None:
    """Train a temperature-conditioned Boltzmann generator down a temperature ladder.

    Interrupt at any time: the same command resumes from the last checkpoint (the reference data resume
    chain by chain).

    Examples:
      glassgen flow train --config configs/flows/ka3d_n64.toml --out runs/ka3d_n64.pt --workers 2
      glassgen flow train --config configs/flows/ka3d_n32.toml --out runs/ka3d_n32.pt --device cuda --ship
      glassgen flow train --config configs/flows/ka2d_n43.toml --out runs/ka2d_seed7.pt --seed 7
    """
    from glassgen.api import flow_train

    _print(flow_train(config=config, out=out, resume=resume, device=device, progress=_progress(progress), ship=ship,
                      workers=workers, seed=seed))


@app.command("sample")
def sample_cmd(
    T: Annotated[float, typer.Option("--T", "-T", help="Temperature (LJ units).")],
    model: ModelOpt = None,
    n: Annotated[int | None, typer.Option("--N", "--n", help="Particles (default 64 for KA 3D; shipped: KA 3D 32 and "
                                          "64, KA2D 43; with --checkpoint: the checkpoint's).")] = None,
    n_samples: Annotated[int | None, typer.Option(
        "--n-samples", min=1, help="Flow samples (is; at most one pass over a prior pool), chain states (imh, pgmc; "
        "default 2000) or annealed proposals (ais, aimh); is, ais, aimh default to the size of the pool serving T "
        "(1024 for the shipped generators), or 2000 for a flow without pools.")] = None,
    method: Annotated[str, typer.Option("--method", help="imh (flow-MCMC, default), is (reweighting only), "
                                    "ais (anneal the prior pool), aimh (flow-MCMC on annealed "
                                    "pool proposals) or pgmc.")]
    = "imh",
    checkpoint: Annotated[Path | None, typer.Option("--checkpoint", help="Flow checkpoint (default: shipped); "
                                                    "with --method pgmc the policy file (default: trained now).")]
    = None,
    train: Annotated[bool, typer.Option("--train", help="Train a flow from configs/flows/<model>_n<N>.toml first "
                                        "(saved as <out>.flow.pt; long) instead of the shipped one.")]
    = False,
    n_chains: Annotated[int | None, typer.Option("--chains", min=1, help="Flow-MCMC (imh, aimh) or PGMC chains "
                                                 "(default 16).")] = None,
    anneal_steps: Annotated[int | None, typer.Option("--anneal-steps", help="AIS steps (one sweep each) for --method "
                                                                          "ais or aimh (default 10).")]
    = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Random seed >= 0 (recorded in the output).")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output HDF5 (a PNG is written next to it).")]
    = Path("sample.h5"),
    progress: ProgOpt = None,
) -> None:
    """Sample KA configurations at temperature T with the Boltzmann generator, exactly unbiased.

    Default system: KA 3D (cut and shifted), N = 64, rho = 1.2, with the generator shipped in the package
    (configs/flows/ka3d_n64.toml): equilibrium MD pools at T_h = 0.6, 0.5, 0.45 as a ladder of Boltzmann
    priors and one flow for 0.4 <= T <= 0.5; target T starts from the coldest pool hotter than T.
    Also shipped: KA 3D N = 32 (pools at 0.7 ... 0.45, 0.4 <= T <= 0.6) and KA2D N = 43 (0.3 <= T <= 0.5).

    Examples:
      glassgen sample --T 0.4
      glassgen sample --T 0.45 --method is --n-samples 1024 --out is.h5
      glassgen sample --T 0.4 --method ais --anneal-steps 20 --n-samples 512 --out ais.h5
      glassgen sample --T 0.4 --model ka2d --N 43 --method aimh --anneal-steps 50 --n-samples 512 --chains 8
      glassgen sample --T 0.5 --N 32 --method imh --n-samples 4000 --out imh.h5
      glassgen sample --T 0.3 --model ka2d --N 43 --method is --n-samples 1024
      glassgen sample --T 0.6 --checkpoint runs/ka3d_n32.pt --N 32 --seed 3
      glassgen sample --T 0.5 --model ka2d --N 43 --method pgmc --out pgmc.h5
    """
    from glassgen.api import sample

    if anneal_steps is not None and method not in ("ais", "aimh"):
        warnings.warn(f"--anneal-steps ignored: only --method ais and aimh anneal (this is {method})", stacklevel=1)
    if n_chains is not None and method in ("is", "ais"):
        warnings.warn(f"--chains ignored: --method {method} runs no chains (imh, aimh and pgmc do)", stacklevel=1)
    if train and method == "pgmc":
        raise GlassgenError("--train trains a flow; --method pgmc learns its policy when no --checkpoint is given")
    _print(sample(T=T, model=model, n=n, n_samples=n_samples, method=method, seed=seed, out=out,
                  checkpoint=checkpoint, train=train,
                  n_chains=16 if n_chains is None else n_chains,
                  anneal_steps=10 if anneal_steps is None else anneal_steps,
                  progress=_progress(progress)))


# ------------------------------------------------------------------ command groups in their own modules
# Each area (GlassBench, predictors, PGMC, phenomenological models) keeps its commands in ``cli_<area>.py``
# with a ``register(app)`` function, so the areas can grow independently.
def _register_groups() -> None:
    from glassgen import cli_bench, cli_experiment, cli_models, cli_pgmc, cli_predict

    for module in (cli_bench, cli_predict, cli_pgmc, cli_models, cli_experiment):
        module.register(app)


_register_groups()


@app.callback(invoke_without_command=True)
def _root(version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False) -> None:
    if version:
        typer.echo(f"glassgen {__version__}")
        raise typer.Exit()


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      line: str | None = None) -> str:
    """Warnings on the command line read as one line, ``warning: ...`` (no source file and line)."""
    return f"warning: {' '.join(str(message).split())}\n"


def main(argv: list[str] | None = None) -> int:
    """Console entry point: one-line errors, exit code 2 on bad input, 130 on interruption."""
    import warnings

    _STARTED[0] = time.time()
    RUN_OUT[0] = None
    saved_argv, saved_format = sys.argv, warnings.formatwarning
    if argv is not None:  # called in-process: the provenance records this glassgen command, not the caller's
        sys.argv = ["glassgen", *argv]
    warnings.formatwarning = _one_line_warning  # type: ignore[assignment]
    try:
        return _run(argv)
    finally:
        sys.argv = saved_argv
        warnings.formatwarning = saved_format


_OUT_FLAGS = ("--out", "-o", "--out-dir", "--svm-out")


def _check_outputs_writable(argv: list[str]) -> None:
    """Before any work: every output named on the command line (``--out``, ``-o``, ``--out-dir``) must lie
    under a writable folder (found after an hour of MD, a read-only target would lose the run), must not be
    one of the command's input files, and must not be a .png (the plots are written next to the data file,
    so a .png data file would be overwritten by its own plot)."""
    outs: list[tuple[str, str, int]] = []  # (flag, value, index of the argument holding the value)
    values: list[tuple[int, str]] = []  # every argument value that could name a file
    for i, a in enumerate(argv):
        flag, eq, val = a.partition("=")
        if a.startswith("-") and eq:
            values.append((i, val))
        elif not a.startswith("-"):
            values.append((i, a))
        if flag not in _OUT_FLAGS or a.startswith("-o="):
            continue
        if eq:
            outs.append((flag, val, i))
        elif i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            outs.append((flag, argv[i + 1], i + 1))
    for flag, val, j in outs:
        target = Path(val)
        if flag != "--out-dir" and target.is_dir() and target.suffix:  # `dataset make --out DIR` names a folder
            raise GlassgenError(f"{flag} {val} is a folder: name the output file")
        if ".ckpt." in target.name.lower():  # <out>.ckpt.h5, <out>.eq.ckpt.h5: an interrupted run's work
            raise GlassgenError(f"{flag} {val}: names with '.ckpt.' are glassgen's checkpoints (an interrupted run's "
                                "work may be kept there); choose another name")
        if flag != "--out-dir" and target.suffix.lower() == ".png":
            raise GlassgenError(f"--out {val}: name the data file (e.g. .h5); its PNG is written next to it")
        if target.is_file() and any(k != j and Path(v).is_file() and Path(v).resolve() == target.resolve()
                                    for k, v in values):
            raise GlassgenError(f"{flag} {val} is also an input of this command: choose another output name")
        anc = target if flag == "--out-dir" else target.parent
        while not anc.exists() and anc != anc.parent:
            anc = anc.parent
        if not anc.is_dir():
            raise GlassgenError(f"cannot write {val}: a folder on its path is a file")
        if not os.access(anc, os.W_OK | os.X_OK):
            raise GlassgenError(f"cannot write {val}: the folder {anc} is not writable")


#: Commands whose interrupted work is kept (checkpoints, finished cases, caches) for the same command to resume.
_RESUMABLE = {("md", "run"), ("mc", "run"), ("pgmc", "train"), ("pgmc", "run"), ("flow", "train"),
              ("predict", "train"), ("predict", "softness-law"), ("dataset", "make"), ("experiment", "predict-propose"),
              ("bench", "reference")}


#: Commands that print their own line on Ctrl-C (naming the checkpoint they kept).
_REPORT_OWN_INTERRUPT = {("trap-model", "run"), ("step-model", "run")}


#: Commands whose checkpoint is ``<out>.ckpt.h5`` and whose ``--out`` is written only when the run is complete
#: (``flow train`` checkpoints into ``--out`` itself, so a fresh ``--out`` says nothing there).
_CHECKPOINT_BESIDE_OUT = {("md", "run"), ("mc", "run"), ("pgmc", "train"), ("pgmc", "run")}
_STARTED = [0.0]  # when main() began (file modification times after it are this command's writes)


def _out_of(argv: list[str]) -> str | None:
    """The output of the run command in progress: resolved from options and config, else ``--out`` of argv."""
    out = RUN_OUT[0]
    for k, a in enumerate(argv if out is None else []):
        if a in ("--out", "-o") and k + 1 < len(argv):
            out = argv[k + 1]
        elif a.startswith("--out="):
            out = a.split("=", 1)[1]
    return out


def _nothing_saved(words: tuple[str, ...], argv: list[str]) -> bool:
    """True when a command that keeps its work beside ``--out`` had saved none of it yet (no checkpoint)."""
    out = _out_of(argv)
    if out is None:
        return False
    if words in _CHECKPOINT_BESIDE_OUT:
        return not any(Path(out + suffix).exists() for suffix in (".ckpt.h5", ".eq.ckpt.h5"))
    if words == ("predict", "train"):  # a GNN's checkpoint; the other kinds keep none
        return not Path(out + ".ckpt.npz").exists()
    if words == ("predict", "softness-law"):  # finished temperatures' trajectories
        return not Path(out + ".trajectories.npz").exists()
    if words == ("dataset", "make"):  # the folder appears once the preparation (equilibration, tau_alpha) is done
        return not Path(out).exists()
    return False


def _written_during_this_command(argv: list[str]) -> str | None:
    """The output file of the run command in progress if this command wrote it (modified after the command
    started) and left no checkpoint beside it: the run was complete when the Ctrl-C came."""
    out = _out_of(argv)
    if out is None:
        return None
    p = Path(out)
    try:
        fresh = p.is_file() and p.stat().st_mtime >= _STARTED[0]
    except OSError:
        return None
    return out if fresh and not Path(out + ".ckpt.h5").exists() else None


def _report_interrupt(argv: list[str]) -> None:
    """Print the one line of a Ctrl-C on stderr: whether running the same command again resumes."""
    words = tuple(a for a in argv if not a.startswith("-"))[:2]
    if words in _REPORT_OWN_INTERRUPT:
        return
    done = _written_during_this_command(argv) if words in _CHECKPOINT_BESIDE_OUT else None
    if done is not None:
        typer.echo(f"interrupted after {done} was written: that run is complete", err=True)
    elif words in _RESUMABLE and _nothing_saved(words, argv):
        typer.echo("interrupted before any work was saved: the same command starts over", err=True)
    elif words in _RESUMABLE:
        typer.echo("interrupted: run the same command again to resume (the work already saved is kept)", err=True)
    else:
        typer.echo("interrupted", err=True)


def _run(argv: list[str] | None) -> int:
    from typer.exceptions import Abort, Exit, TyperException

    try:
        _check_outputs_writable(list(sys.argv[1:] if argv is None else argv))
        rv = app(args=argv, prog_name="glassgen", standalone_mode=False)
        if rv == 130:  # Ctrl-C: typer turns KeyboardInterrupt into exit code 130 (silently, without this)
            _report_interrupt(list(sys.argv[1:] if argv is None else argv))
        if isinstance(rv, int) and rv != 0:
            return rv
    except GlassgenError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 2
    except Exit as exc:
        if exc.exit_code == 130:
            _report_interrupt(list(sys.argv[1:] if argv is None else argv))
        return int(exc.exit_code or 0)
    except TyperException as exc:  # usage errors (unknown option, bad value): one line, pointing to --help
        ctx = getattr(exc, "ctx", None)
        where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        typer.echo(f"error: {' '.join(exc.format_message().split())}{where}", err=True)
        return 2
    except Abort:
        typer.echo("interrupted", err=True)
        return 130
    except KeyboardInterrupt:
        _report_interrupt(list(sys.argv[1:] if argv is None else argv))
        return 130
    except MemoryError:  # a size the machine cannot hold (--bins 1e9, --N 1e11, ...)
        typer.echo("error: out of memory: a requested size (particles, lattice, bins, frames) is too large for "
                   "this machine", err=True)
        return 2
    except OverflowError as exc:  # a number beyond 64 bits (--steps 1e20 typed as an integer, ...)
        typer.echo(f"error: a number is too large: {' '.join(str(exc).split())}", err=True)
        return 2
    except OSError as exc:  # a missing input, an output path under a file, a read-only folder, ...
        if isinstance(exc, (FileExistsError, NotADirectoryError)) and exc.filename:
            msg = f"cannot use {exc.filename}: a folder on its path is a file"
        else:
            msg = f"{exc.strerror}: {exc.filename}" if exc.strerror and exc.filename else " ".join(str(exc).split())
            if msg.startswith("Unable to synchronously open file"):  # h5py names no file: say what it means
                why = msg[msg.find("(") + 1:msg.rfind(")")] if "(" in msg else msg
                msg = f"a file given is not a readable HDF5 file (damaged, truncated or another format; h5py: {why})"
        typer.echo(f"error: {msg}", err=True)
        return 2
    except Exception as exc:  # noqa: BLE001 - last resort: one line, not a traceback (GLASSGEN_DEBUG=1 shows it)
        if os.environ.get("GLASSGEN_DEBUG"):
            raise
        msg = " ".join(str(exc).split()) or "(no message)"
        typer.echo(f"error: {type(exc).__name__}: {msg} (unexpected; GLASSGEN_DEBUG=1 shows the traceback)",
                   err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
