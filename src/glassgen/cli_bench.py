"""Command line for GlassBench datasets and metrics (``glassgen dataset``, ``glassgen bench``).

Registered by :mod:`glassgen.cli`; each command parses options and calls one :mod:`glassgen.api_bench` job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from glassgen.cli_options import Split, split_value

dataset_app = typer.Typer(no_args_is_help=True, help="Isoconfigurational datasets in the GlassBench format.",
                          epilog=("Examples:\n\n"
                                  "glassgen dataset make --config configs/datasets/ka3d_n500.toml"))
bench_app = typer.Typer(no_args_is_help=True, help="GlassBench metrics: Pearson, chi_4, rho_max, transferability.",
                        epilog=("Examples:\n\n"
                                "glassgen bench reference\n\n"
                                "glassgen bench score --data datasets/ka3d_n500 --T 0.8 --key EPOT\n\n"
                                "glassgen bench report --data datasets/ka3d_n500 --out reports/ka3d_n500"))


@dataset_app.command("make")
def dataset_make_cmd(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML with a \\[dataset] table.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Dataset directory.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Interaction model (ka3d, ka2d, ...).")] = None,
    n: Annotated[int | None, typer.Option("--N", "--n", help="Particles.")] = None,
    T: Annotated[list[float] | None, typer.Option("--T", "-T", help="Temperature (repeat for several).")] = None,
    n_configs: Annotated[int | None, typer.Option("--configs", help="Configurations per temperature.")] = None,
    n_replicas: Annotated[int | None, typer.Option("--replicas", help="Isoconfigurational replicas.")] = None,
    n_test: Annotated[int | None, typer.Option("--test", help="Last configurations put in the test split.")] = None,
    engine: Annotated[str | None, typer.Option("--engine", help="numba (default) or lammps.")] = None,
    keep_replicas: Annotated[bool | None, typer.Option("--keep-replicas/--no-keep-replicas",
                                                       help="Store replica positions at tau_alpha.")] = None,
    tau_alpha: Annotated[float | None, typer.Option("--tau-alpha", help="Skip the measurement, use this.")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Local processes for the replicas.")] = None,
    shard: Annotated[str | None, typer.Option("--shard", help="k/K: do configurations (i-1) mod K == k; "
                                                              "'mpi': rank/size from mpirun.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, help="Master seed >= 0 (in every file).")] = None,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress", help="Progress bar.")] = None,
) -> None:
    """Equilibrate, measure tau_alpha, draw configurations, run isoconfigurational replicas.

    Each configuration is written as N{N}T{T}_{i}.npz (GlassBench layout: types, initial_positions,
    initial_positions_inherent, md_prop, bb_prop, times, provenance). Interrupt any time: the same command
    continues where it stopped and never redoes a finished configuration.

    Examples:
      glassgen dataset make --config configs/datasets/ka3d_n500.toml
      glassgen dataset make --model ka3d --N 256 --T 0.8 --configs 4 --test 1 --replicas 8 --out runs/tiny
      mpirun -n 4 glassgen dataset make --config configs/datasets/ka3d_n500.toml --shard mpi
    """
    from glassgen.api_bench import dataset_make, dataset_spec_from_config
    from glassgen.cli import _print, _progress

    specs, other = dataset_spec_from_config(
        config, model=model, n=n, temperatures=T, n_configs=n_configs, n_replicas=n_replicas, n_test=n_test,
        engine=engine, keep_replicas=keep_replicas, tau_alpha=tau_alpha, seed=seed, out=out, workers=workers)
    if other.get("out") is None:
        from glassgen.errors import InputError

        raise InputError("missing option --out (or out = ... in the config)")
    _print(dataset_make(specs=specs, out=other["out"], workers=int(other.get("workers", 1)), shard=shard,
                        progress=_progress(progress)))


DataOpt = Annotated[Path | None, typer.Option("--data", help="Data directory (default GLASSGEN_DATA).")]
CacheOpt = Annotated[Path | None, typer.Option("--cache", help="Inherent-state cache (default runs/cache).")]


@bench_app.command("reference")
def bench_reference_cmd(data: DataOpt = None, cache: CacheOpt = None,
                        out: Annotated[Path | None, typer.Option("--out", "-o", help="JSON output.")] = None,
                        progress: Annotated[bool | None, typer.Option("--progress/--no-progress")] = None) -> None:
    """rho_max, chi_4 and Pearson(EPOT, propensity) at tau_alpha on the shipped KA 3D T=0.44 samples.

    Propensities come from the 32 replicas; inherent states from our FIRE (cached). Published values
    (GlassBench, 100 test configurations): rho_max 0.943, chi_4 17.05, Pearson EPOT 0.51.

    Examples:
      glassgen bench reference
      glassgen bench reference --data ../shared/data --out runs/reference.json
    """
    from glassgen.api_bench import bench_reference
    from glassgen.cli import _print, _progress

    _print(bench_reference(data=data, cache=cache, out=out, progress=_progress(progress)))


@bench_app.command("score")
def bench_score_cmd(
    data: Annotated[Path, typer.Option("--data", help="Dataset directory (GlassBench archive or ours).")],
    T: Annotated[float, typer.Option("--T", "-T", help="Temperature.")],
    system: Annotated[str | None, typer.Option("--system", help="KA, KA2D or a model name.")] = None,
    split: Annotated[Split, typer.Option("--split", help="test, train or all.")] = Split.test,
    key: Annotated[list[str] | None, typer.Option("--key", help="Prediction key to report (repeatable): EPOT, "
                                                               "EPOT_thermal, BOTAN, GlassMLP, ...")] = None,
    predictions: Annotated[list[Path] | None, typer.Option(
        "--predictions", help="npz with one array per sample stem, or glassgen predict score outputs "
                              "(repeat: one per sample).")] = None,
    cache: CacheOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="JSON output.")] = None,
) -> None:
    """Score any prediction against the propensity at every lag time (Pearson pooled and per-config, R^2, chi_4).

    Files without an md_prop time series (the shipped isoconfigurational samples) are scored at the one lag
    time of their replicas, computed from the replica positions; the output says so.

    Examples:
      glassgen bench score --data datasets/ka3d_n500 --T 0.8 --key EPOT
      glassgen bench score --data ~/GlassBench --T 0.44 --key GlassMLP --key SE3
      glassgen bench score --data datasets/ka3d_n500 --T 0.8 --predictions runs/my_model_T0.8.npz
      glassgen bench score --data ../shared/data --T 0.44 --key EPOT
    """
    from glassgen.api_bench import bench_score
    from glassgen.cli import _print

    _print(bench_score(data=data, T=T, system=system, split=split_value(split), key=key,
                       predictions=predictions, cache=cache, out=out))


@bench_app.command("report")
def bench_report_cmd(
    data: Annotated[Path, typer.Option("--data", help="Dataset directory (GlassBench archive or ours).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report directory.")],
    split: Annotated[Split, typer.Option("--split", help="test, train or all.")] = Split.test,
    reference: Annotated[bool, typer.Option("--reference/--no-reference",
                                            help="Add the shipped KA T=0.44 reference numbers "
                                                 "(read from GLASSGEN_DATA, whatever --data is).")] = False,
    models: Annotated[Path | None, typer.Option("--models", help="Model results JSON with a 'pearson' table per "
                                                                 "model and temperature (benchmarks/predictors.py).")]
    = None,
    published: Annotated[Path | None, typer.Option("--published", help="Published curves folder.")] = None,
    cache: CacheOpt = None,
) -> None:
    """Markdown table + PNG figures: Pearson vs t/tau_alpha, chi_4 vs t, transferability, distributions.

    Published GlassBench curves (shared/reference/glassbench-results) are drawn beside ours.

    Examples:
      glassgen bench report --data datasets/ka3d_n500 --out reports/ka3d_n500 --reference
      glassgen bench report --data datasets/ka3d_n500 --out reports/x \\
          --models benchmarks/results/predictors_our_dataset.json
    """
    from glassgen.api_bench import bench_report
    from glassgen.cli import _print

    _print(bench_report(data=data, out=out, split=split_value(split), reference=reference,
                        models=models, published=published, cache=cache))


def register(app: typer.Typer) -> None:
    """Add ``glassgen dataset`` and ``glassgen bench`` to the root app."""
    app.add_typer(dataset_app, name="dataset")
    app.add_typer(bench_app, name="bench")
