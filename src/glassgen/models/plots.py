"""PNG summaries of trap-model sweeps and StEP shear runs (matplotlib on an explicit Agg canvas).

As :mod:`glassgen.observables.plots`: no pyplot global state, files written atomically, the provenance
record in the PNG text metadata (key ``Description``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from glassgen import __version__
from glassgen.provenance import atomic_path, provenance_json

__all__ = ["plot_trap_sweep", "plot_step_runs"]


def _figure(nrows: int, ncols: int, size: tuple[float, float]) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _save(fig: Any, path: str | os.PathLike[str], **meta: Any) -> Path:
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=110,
                    metadata={"Software": f"glassgen {__version__}", "Description": provenance_json(**meta)})
    return target


def plot_trap_sweep(results: Mapping[float, Mapping[str, Any]], path: str | os.PathLike[str],
                    title: str = "", fragility: Mapping[str, float] | None = None, **meta: Any) -> Path:
    """Six panels: F_s and persistence, MSD, chi_4, chi''(omega), local relaxation times, tau_alpha(T_low / T).

    Args:
        results: {T: :func:`glassgen.models.observables.analyze_runs` output}.
        path: PNG path.
        title: figure title.
        fragility: output of :func:`glassgen.models.observables.fragility` (annotated on the last panel).
        **meta: provenance entries.

    Returns:
        the path written.
    """
    fig, ax = _figure(2, 3, (13.5, 7.5))
    Ts = sorted(results, reverse=True)
    cmap = __import__("matplotlib").colormaps["coolwarm"]
    for k, T in enumerate(Ts):
        r = results[T]
        c = cmap(1.0 - k / max(1, len(Ts) - 1))
        lab = f"T={T:g}"
        ax[0, 0].semilogx(r["times"], r["fs"], color=c, label=lab)
        ax[0, 0].semilogx(r["times"], r["persistence"], color=c, ls="--", lw=2.2, alpha=0.45)
        ax[0, 1].loglog(r["times"], np.maximum(r["msd"], 1e-300), color=c, label=lab)
        ax[0, 2].semilogx(r["times"], r["chi4"], color=c, label=lab)
        ok = r["chi_loss"] > 0
        ax[1, 0].loglog(r["omega"][ok], r["chi_loss"][ok], color=c,
                        label=f"{lab} beta={r['beta_high']:.2f}")
        lt = r["local_times"][np.isfinite(r["local_times"])]
        if lt.size:
            ax[1, 1].hist(np.log10(lt), bins=40, histtype="step", density=True, color=c, label=lab)
    ax[0, 0].set(xlabel="t", ylabel="F_s(q,t) (thin), persistence (wide, dashed)")
    ax[0, 1].set(xlabel="t", ylabel="MSD")
    ax[0, 2].set(xlabel="t", ylabel="chi_4(t)")
    ax[1, 0].set(xlabel="omega", ylabel="chi''(omega)")
    ax[1, 1].set(xlabel="log10 local relaxation time", ylabel="density")
    T_arr = np.array(Ts)
    tau = np.array([results[T]["tau_alpha"] for T in Ts])
    dtau = np.array([results[T]["D_tau_alpha"] for T in Ts])
    a = ax[1, 2]
    # T_low: the lowest T whose tau_alpha is finite (the steepness is taken there), else the lowest T run
    t_low = float(fragility["Tg"]) if fragility and np.isfinite(fragility.get("Tg", np.nan)) else float(T_arr.min())
    a.semilogy(t_low / T_arr, tau, "o-", label="tau_alpha")
    a.semilogy(t_low / T_arr, np.where(dtau > 0, dtau, np.nan), "s--", label="D tau_alpha")
    txt = ""
    if fragility and np.isfinite(fragility.get("m", np.nan)):
        txt = f": d log10 tau / d(T_low/T) = {fragility['m']:.2g} at T_low"
    a.set(xlabel=f"T_low / T (T_low = {t_low:g}, the lowest T with a finite tau_alpha)",
          ylabel="tau_alpha, D tau_alpha", title="Arrhenius plot" + txt)
    for axx in ax.ravel():
        if axx.get_legend_handles_labels()[0]:
            axx.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return _save(fig, path, **meta)


def plot_step_runs(runs: Mapping[str, Any], path: str | os.PathLike[str], title: str = "", **meta: Any) -> Path:
    """Stress-strain curves, avalanche-size distributions, softness statistics and plastic-strain maps.

    Args:
        runs: {label: :class:`glassgen.models.step.StepResult`}.
        path: PNG path.
        title: figure title.

    Returns:
        the path written.
    """
    labels = list(runs)
    ncol = max(3, len(labels))
    fig, ax = _figure(2, ncol, (4.2 * ncol, 7.5))
    for lab in labels:
        r = runs[lab]
        ax[0, 0].plot(r.gamma, r.stress_after, lw=0.8, label=lab)
        sz = r.aval_sites[r.aval_sites > 0]
        if sz.size:
            bins = np.unique(np.logspace(0, np.log10(sz.max() + 1), 25).astype(int))
            h, e = np.histogram(sz, bins=bins, density=True)
            ax[0, 1].loglog(0.5 * (e[1:] + e[:-1]), np.where(h > 0, h, np.nan), "o-", ms=3, label=lab)
        ax[0, 2].plot(r.gamma, r.softness_mean, label=f"{lab} mean")
    ax[0, 0].set(xlabel="applied strain gamma", ylabel="stress / mu")
    ax[0, 1].set(xlabel="avalanche size (sites)", ylabel="P(size)")
    ax[0, 2].set(xlabel="gamma", ylabel="mean softness")
    for k, lab in enumerate(labels):
        pm = runs[lab].plastic_map
        img = pm if pm.ndim == 2 else pm[:, :, pm.shape[2] // 2]
        im = ax[1, k].imshow(np.abs(img).T, origin="lower", cmap="magma")
        ax[1, k].set(title=f"|plastic e_xy| {lab}")
        fig.colorbar(im, ax=ax[1, k], shrink=0.8)
    for k in range(len(labels), ncol):
        ax[1, k].axis("off")
    for axx in ax[0]:
        if axx.get_legend_handles_labels()[0]:
            axx.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return _save(fig, path, **meta)
