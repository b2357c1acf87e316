"""Diagnostic PNG plots of g(r), MSD, F_s and thermodynamic series.

Matplotlib is imported inside each function and drawn on an explicit Agg canvas
(``matplotlib.figure.Figure`` + ``FigureCanvasAgg``): importing glassgen never selects a backend and
never touches pyplot's global state, so plotting works headless and inside other applications.
Each PNG is written atomically (temporary file in the same directory, then rename) and carries
the provenance record in its PNG text metadata (key ``Description``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from glassgen.errors import InputError
from glassgen.observables.structure_factor import PEAK_WINDOW
from glassgen.provenance import atomic_path, png_metadata, provenance

__all__ = ["plot_rdf", "plot_structure_factor", "plot_msd", "plot_fs", "plot_chi4", "plot_thermo",
           "plot_sample_summary"]


def _figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (5.0, 3.8)) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _save(fig: Any, path: str | os.PathLike[str], **meta: Any) -> Path:
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=120, metadata=png_metadata(provenance(**meta)))
    return target


def _label(s: int, names: Sequence[str] | None) -> str:
    return names[s] if names is not None and s < len(names) else f"species {s}"


def _series(obj: Any, attr: str, by_attr: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(times, all-particle values, per-species values or None) from a compute object or a tuple."""
    if hasattr(obj, "lag_times"):
        return obj.lag_times, getattr(obj, attr), getattr(obj, by_attr)
    try:
        t, y = obj
    except (TypeError, ValueError) as exc:
        raise InputError("expected a compute object with lag_times or a (times, values) pair, "
                         f"got {obj!r}") from exc
    t = np.asarray(t, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        return t, y, None
    return t, np.full(t.shape, np.nan), y


def plot_rdf(rdf: Any, path: str | os.PathLike[str], *, pairs: Sequence[tuple[int, int]] | None = None,
             species_names: Sequence[str] | None = None, total: bool = True,
             title: str | None = None, **meta: Any) -> Path:
    """Plot the partial g_ab(r) (and the total g(r)) of a computed :class:`~glassgen.observables.rdf.RDF`.

    Args:
        rdf: a computed RDF.
        path: output PNG.
        pairs: species pairs to draw (default ``rdf.pairs``).
        species_names: names for the species indices (default "0", "1", ...).
        total: also draw the total g(r).
        title: optional title.

    Returns:
        the path written.
    """
    r = rdf.bin_centers
    g = rdf.g
    fig, ax = _figure()
    ax = ax[0, 0]
    for a, b in (rdf.pairs if pairs is None else pairs):
        na = species_names[a] if species_names else str(a)
        nb = species_names[b] if species_names else str(b)
        ax.plot(r, g[a, b], lw=1.2, label=f"g_{na}{nb}")
    if total:
        ax.plot(r, rdf.g_total, "k--", lw=1.0, label="total")
    ax.axhline(1.0, color="0.6", lw=0.6)
    ax.set_xlabel("r")
    ax.set_ylabel("g(r)")
    ax.set_xlim(rdf.r_min, rdf.r_max)
    ax.legend(frameon=False, fontsize=8)
    if title:
        ax.set_title(title)
    return _save(fig, path, analysis="rdf", n_frames=rdf.n_frames, **meta)


def plot_structure_factor(sq: Any, path: str | os.PathLike[str], *, species_names: Sequence[str] | None = None,
                          title: str | None = None, **meta: Any) -> Path:
    """S(q) of all particles and the like-species partials S_aa(q), main peaks marked.

    Args:
        sq: a computed :class:`~glassgen.observables.structure_factor.StaticStructureFactor`.
        path: output PNG.
        species_names: names of the species.
        title: optional title.

    Returns:
        the path written.
    """
    ok = sq.n_vectors > 0
    q = sq.q[ok]
    fig, ax = _figure()
    ax = ax[0, 0]
    curves = [("all", sq.S, "k", None)]
    curves += [(f"{_label(a, species_names)}-{_label(a, species_names)}", sq.S_partial[a, a], f"C{a}", (a, a))
               for a in range(sq.n_species) if np.any(np.isfinite(sq.S_partial[a, a]))]
    for label, y, color, pair in curves:
        qp, sp = sq.peak(pair, window=PEAK_WINDOW)
        ax.plot(q, y[ok], color=color, lw=1.0, label=f"{label}: peak {sp:.3g} at q = {qp:.3g} "
                f"(mean over {PEAK_WINDOW:g} in q)")
        ax.plot([qp], [sp], "o", color=color, ms=3)
    ax.axhline(1.0, color="0.6", lw=0.6)
    ax.set_xlabel("q")
    ax.set_ylabel("S(q)")
    ax.legend(frameon=False, fontsize=7)
    ax.set_title(title or f"{sq.n_frames} frame(s), box wave vectors, bins of {sq.q_max / sq.bins:.3g}", fontsize=9)
    return _save(fig, path, analysis="structure_factor", n_frames=sq.n_frames, **meta)


def plot_msd(msd: Any, path: str | os.PathLike[str], *, species_names: Sequence[str] | None = None,
             by_species: bool = True, title: str | None = None, time_label: str = "t", **meta: Any) -> Path:
    """Log-log MSD(t), all particles and per species (``time_label``: the x-axis label).

    Args:
        msd: a computed :class:`~glassgen.observables.dynamics.MSD` (or NonGaussian), or a
            ``(times (T,), values (T,) or (nsp, T))`` pair.
        path: output PNG.
        species_names: names of the species.
        by_species: draw the per-species curves.
        title: optional title.

    Returns:
        the path written. Lag 0 is not drawn (log axes).
    """
    t, y, by = _series(msd, "msd", "msd_by_species")
    keep = t > 0
    fig, ax = _figure()
    ax = ax[0, 0]
    if np.any(np.isfinite(y)):
        ax.loglog(t[keep], y[keep], "k-", lw=1.5, label="all")
    if by_species and by is not None:
        for s in range(by.shape[0]):
            if np.any(np.isfinite(by[s])):
                ax.loglog(t[keep], by[s][keep], lw=1.0, label=_label(s, species_names))
    ax.set_xlabel(time_label)
    ax.set_ylabel("MSD(t)")
    ax.legend(frameon=False, fontsize=8)
    if title:
        ax.set_title(title)
    return _save(fig, path, analysis="msd", **meta)


def plot_fs(fs: Any, path: str | os.PathLike[str], *, species_names: Sequence[str] | None = None,
            by_species: bool = True, threshold: float = float(np.exp(-1.0)),
            title: str | None = None, time_label: str = "t", **meta: Any) -> Path:
    """F_s(q, t) on a log time axis with the threshold line and tau_alpha marked for each curve
    (``time_label``: the x-axis label).

    Args:
        fs: a computed :class:`~glassgen.observables.dynamics.SelfIntermediateScattering`, or a
            ``(times (T,), values (T,) or (nsp, T))`` pair.
        path: output PNG.
        species_names: names of the species.
        by_species: draw the per-species curves.
        threshold: the level defining tau_alpha (default 1/e).
        title: optional title (default ``q = ...`` when known).

    Returns:
        the path written.
    """
    from glassgen.observables.dynamics import tau_alpha

    t, y, by = _series(fs, "fs", "fs_by_species")
    keep = t > 0
    fig, ax = _figure()
    ax = ax[0, 0]
    curves = []
    if np.any(np.isfinite(y)):
        curves.append(("all", y, "k"))
    if by_species and by is not None:
        for s in range(by.shape[0]):
            if np.any(np.isfinite(by[s])):
                curves.append((_label(s, species_names), by[s], f"C{s}"))
    for label, yy, color in curves:
        tau = tau_alpha(t, yy, threshold)
        lab = f"{label}: tau = {tau:.4g}" if np.isfinite(tau) else f"{label}: tau not reached"
        ax.semilogx(t[keep], yy[keep], color=color, lw=1.2, label=lab)
        if np.isfinite(tau):
            ax.plot([tau], [threshold], "o", color=color, ms=4)
            ax.axvline(tau, color=color, lw=0.5, ls=":")
    ax.axhline(threshold, color="0.5", lw=0.8, ls="--")
    ax.set_xlabel(time_label)
    ax.set_ylabel("F_s(q, t)")
    finite = [float(np.nanmin(c[1])) for c in curves if np.any(np.isfinite(c[1]))]
    ax.set_ylim(min([-0.05, *finite]), 1.05)
    ax.legend(frameon=False, fontsize=8)
    q = getattr(fs, "q", None)
    if title or q is not None:
        ax.set_title(title or f"q = {q:g}")
    return _save(fig, path, analysis="fs", q=q, threshold=threshold, **meta)


def plot_chi4(chi: Any, path: str | os.PathLike[str], *, species_names: Sequence[str] | None = None,
              title: str | None = None, time_label: str = "t", **meta: Any) -> Path:
    """Self overlap Q(t) (left) and chi_4(t) (right, peak marked) on log time axes, all particles and per species.

    Args:
        chi: a computed :class:`~glassgen.observables.dynamics.FourPointSusceptibility`.
        path: output PNG.
        species_names: names of the species.
        title: optional title (default ``a = ...``, samples per lag).

    Returns:
        the path written.
    """
    t = chi.lag_times
    keep = t > 0
    fig, ax = _figure(1, 2, size=(9.0, 3.8))
    curves = [("all", chi.overlap, chi.chi4, "k", None)]
    for s in range(chi.n_species):
        if np.any(np.isfinite(chi.overlap_by_species[s])):
            curves.append((_label(s, species_names), chi.overlap_by_species[s], chi.chi4_by_species[s], f"C{s}", s))
    for label, q, c, color, s in curves:
        ax[0, 0].semilogx(t[keep], q[keep], color=color, lw=1.2, label=label)
        tp, cp = chi.peak(s)
        lab = f"{label}: chi4* = {cp:.3g} at t* = {tp:.3g}" if np.isfinite(cp) else f"{label}: too few samples"
        ax[0, 1].semilogx(t[keep], c[keep], color=color, lw=1.2, label=lab)
        if np.isfinite(cp):
            ax[0, 1].plot([tp], [cp], "o", color=color, ms=4)
    ax[0, 0].set(xlabel=time_label, ylabel=f"Q(t), a = {chi.a:g}", ylim=(-0.05, 1.05))
    ax[0, 1].set(xlabel=time_label, ylabel="chi_4(t) = N var Q")
    ax[0, 0].legend(frameon=False, fontsize=8)
    ax[0, 1].legend(frameon=False, fontsize=7)
    n = chi.n_overlap_samples
    fig.suptitle(title or f"self overlap and four-point susceptibility ({int(n[keep].min()) if keep.any() else 0}"
                 f"-{int(n.max())} samples per lag)", fontsize=9)
    return _save(fig, path, analysis="chi4", a=chi.a, **meta)


def plot_thermo(thermo: Mapping[str, np.ndarray] | Any, path: str | os.PathLike[str], *, x: str = "time",
                keys: Sequence[str] | None = None, title: str | None = None, **meta: Any) -> Path:
    """One panel per thermodynamic series against time (or step).

    Args:
        thermo: dict of equal-length 1D arrays (or an object with ``as_dict()``, e.g.
            :class:`~glassgen.dynamics.results.Thermo`).
        path: output PNG.
        x: key of the abscissa (``"time"`` or ``"step"``; falls back to the sample index if absent).
        keys: series to draw (default every key except the abscissa and ``step``/``time``,
            skipping all-NaN series).
        title: optional title.

    Returns:
        the path written.
    """
    data = thermo.as_dict() if hasattr(thermo, "as_dict") else dict(thermo)
    if not data:
        raise InputError("plot_thermo needs at least one series")
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in data.items()}
    n = next(iter(arrays.values())).shape[0]
    xs = arrays.get(x, np.arange(n, dtype=np.float64))
    if keys is None:
        keys = [k for k, v in arrays.items() if k not in (x, "step", "time") and np.any(np.isfinite(v))]
    if not keys:
        raise InputError("plot_thermo: no series to draw")
    fig, axes = _figure(len(keys), 1, size=(6.0, 1.6 * len(keys) + 0.8))
    for ax, k in zip(axes[:, 0], keys, strict=True):
        v = arrays[k]
        if v.shape != xs.shape:
            raise InputError(f"series {k!r} has shape {v.shape}, expected {xs.shape}")
        ax.plot(xs, v, lw=0.8)
        ax.set_ylabel(k)
    axes[-1, 0].set_xlabel(x if x in arrays else "sample")
    if title:
        axes[0, 0].set_title(title)
    return _save(fig, path, analysis="thermo", **meta)


def plot_sample_summary(path: str | os.PathLike[str], *, energies: Mapping[str, tuple[np.ndarray, np.ndarray | None]],
                        r: np.ndarray, g: Mapping[str, tuple[np.ndarray, np.ndarray | None]],
                        title: str = "", **meta: Any) -> Path:
    """Two panels: energy-per-particle histograms and g(r), each with several labelled curves.

    Args:
        path: PNG path (written atomically, provenance ``meta`` in the PNG text).
        energies: label -> (U/N values (n,), log-weights (n,) or None for unweighted).
        r: (bins,) g(r) bin centres.
        g: label -> (g(r) (bins,), error (bins,) or None).
        title: figure title.
    """
    fig, axes = _figure(1, 2, size=(10.0, 3.8))
    ax = axes[0, 0]
    finite = [v[np.isfinite(v)] for v, _ in energies.values()]
    lo = min((np.percentile(v, 0.5) for v in finite if v.size), default=0.0)
    hi = max((np.percentile(v, 99.5) for v in finite if v.size), default=1.0)
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, 60)
    for label, (u, lw) in energies.items():
        ok = np.isfinite(u) & (np.isfinite(lw) if lw is not None else True)
        if not ok.any():
            continue
        w = None
        if lw is not None and ok.any():
            w = np.exp(lw[ok] - lw[ok].max())
        with np.errstate(invalid="ignore", divide="ignore"):  # a histogram of a handful of samples may be empty
            ax.hist(u[ok], bins=edges, weights=w, density=True, histtype="step", label=label)
    ax.set_xlabel("U/N")
    ax.set_ylabel("P(U/N)")
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    for label, (gv, err) in g.items():
        ax.plot(r, gv, label=label)
        if err is not None:
            ax.fill_between(r, gv - err, gv + err, alpha=0.3)
    ax.set_xlabel("r")
    ax.set_ylabel("g(r)")
    ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path, **meta)
