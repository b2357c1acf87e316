"""GlassBench report: Pearson vs t/tau_alpha, chi_4(t), transferability and distributions, beside the
published curves (the roadmap's Figs. 4-6 style), as a Markdown file and PNG figures.

Inputs: a dataset directory (ours or GlassBench), optional model predictions (JSON written by the
predictors, ``{model: {T_train: {T_test: {t: pearson}}}}``), and the published curves
(``shared/reference/glassbench-results``). Plain descriptors computed here for every sample: the
per-particle potential energy of the inherent state (``EPOT``, as in GlassBench) and of the thermal
configuration (``EPOT_thermal``); published prediction keys stored in test files are scored as well, under
``published_<key>`` (a file's ``EPOT`` column is GlassBench's, not ours).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from glassgen.bench import metrics
from glassgen.bench.reference import inherent_positions, per_particle_energy
from glassgen.errors import InputError
from glassgen.provenance import atomic_path, png_metadata
from glassgen.provenance import provenance as provenance_record
from glassgen.systems.glassbench import (
    PREDICTION_KEYS,
    PUBLISHED_TAU_ALPHA,
    GlassBenchDataset,
    published_tau_alpha,
)

__all__ = ["read_published", "score_dataset", "write_report", "tau_alpha_index"]


def read_published(ref_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    """Published GlassBench curves: {file stem: {column: values}} from ``*_results_*.dat`` (header '# a b c')."""
    out: dict[str, dict[str, np.ndarray]] = {}
    d = Path(ref_dir)
    if not d.is_dir():
        return out
    for f in sorted(d.glob("*.dat")):
        lines = f.read_text().splitlines()
        if not lines:
            continue
        header = lines[0].lstrip("#").split()
        rows = [list(map(float, ln.split())) for ln in lines[1:] if ln.strip() and not ln.startswith("#")]
        if not rows:
            continue
        width = max(len(r) for r in rows)  # some published tables have ragged rows: pad with NaN
        arr = np.array([r + [float("nan")] * (width - len(r)) for r in rows])
        if header == ["none"] or len(header) != arr.shape[1]:
            header = [f"c{i}" for i in range(arr.shape[1])]
        out[f.stem] = {h: arr[:, i] for i, h in enumerate(header)}
    return out


def tau_alpha_index(times: np.ndarray, provenance: dict[str, Any] | None, system: str | None = None,
                    T: float | None = None) -> int:
    """Row of tau_alpha in ``times``: the row ``glassgen dataset make`` recorded; else the grid point nearest
    (in log t) to the published tau_alpha of (system, T) (KA 3D: 6 of the 10-point grid; KA2D T = 0.30:
    t = 1781.79 for 2200); else the middle row."""
    if provenance and "tau_alpha_index" in provenance:
        return int(provenance["tau_alpha_index"])
    tau = published_tau_alpha(system, T) if system is not None and T is not None else None
    t = np.asarray(times, dtype=np.float64)
    if tau is not None and np.all(t > 0):
        return int(np.argmin(np.abs(np.log(t / tau))))
    return 6 if t.size == 10 else int(t.size // 2)


def _name(sample: Any) -> str:
    return Path(sample.path).name if sample.path else f"configuration {sample.index}"


def _replica_time(samples: list[Any], system: str, T: float) -> float:
    """The one lag time at which every sample without md_prop has its isoconfigurational replicas."""
    lags: dict[float, str] = {}
    for s in samples:
        if s.md_prop is not None:
            continue
        if s.replicas is None:
            raise InputError(f"{system} T={T:g}: {_name(s)} has neither md_prop nor isoconfigurational replicas: "
                             "no propensity to score against")
        if s.replica_time is None:
            raise InputError(f"{system} T={T:g}: {_name(s)}: the replicas' lag time is not recorded (no _tcXX code "
                             "or replica_time entry)")
        if not any(abs(s.replica_time - t) <= 1e-3 * t for t in lags):
            lags[s.replica_time] = _name(s)
    if len(lags) > 1:
        raise InputError(f"{system} T={T:g}: the replicas are at different lag times ("
                         + ", ".join(f"t = {t:g} in {n}" for t, n in lags.items()) + "): score one lag at a time")
    return next(iter(lags))


def _prediction_rows(key: str, values: list[np.ndarray], samples: list[Any], times: np.ndarray,
                     replica_rows: list[int | None] | None) -> list[list[np.ndarray]]:
    """Per lag time, the (N,) predictions of every sample, checked (named by sample, not by position).

    A prediction is (N,) (the same at every lag) or (n_times, N) on the sample's lag grid; with replica
    propensities (one lag) ``replica_rows[k]`` is the row of that lag in sample k's grid."""
    rows: list[list[np.ndarray]] = [[] for _ in range(times.size)]
    for k, (a, s) in enumerate(zip(values, samples, strict=True)):
        a = np.asarray(a, dtype=np.float64)
        if replica_rows is None:
            n_rows = times.size
        else:  # a per-lag prediction needs the replicas' lag in the sample's grid
            n_rows = s.times.size if s.times is not None and replica_rows[k] is not None else -1
        if a.shape == (s.n,):
            per_t = [a] * times.size
        elif a.ndim == 2 and a.shape == (n_rows, s.n):
            per_t = list(a) if replica_rows is None else [a[replica_rows[k]]]
        else:
            want = f"({s.n},)" + (f" or ({n_rows}, {s.n}) (one row per lag time)" if n_rows > 0 else "")
            raise InputError(f"{key}: {_name(s)}: predictions of shape {a.shape}, expected {want}")
        if not all(np.all(np.isfinite(r[s.mask(0)])) for r in per_t):
            raise InputError(f"{key}: {_name(s)}: NaN or infinite predictions")
        for j, r in enumerate(per_t):
            rows[j].append(r)
    return rows


def score_dataset(ds: GlassBenchDataset, system: str, T: float, split: str | None = "test",
                  cache_dir: Path | None = None, extra: dict[str, list[np.ndarray]] | None = None) -> dict[str, Any]:
    """Score the plain descriptors (and published keys) against the propensity of one (system, T).

    The propensity is ``md_prop`` at every lag time of the files' grid; samples without ``md_prop`` (the
    shipped isoconfigurational files) give it from their replicas at the one lag time ``replica_time``
    (every sample must agree on it), so the scores then have a single row and ``source`` says so.

    Returns:
        dict with ``times``, ``tau_alpha``, ``tau_index``, ``tau_alpha_known`` (False: replicas at a lag
        of unknown tau_alpha, which is then that lag), ``source`` ('md_prop' or 'replicas'), ``note`` (a
        line saying that replica propensities have one lag time, else None), ``scores`` {key: [score_all per
        time]}, ``chi4_true`` per time, ``n_configs``, ``samples`` (file names), and the pooled type-A
        propensity at tau_alpha (``R_tau``, for distributions).
    """
    from glassgen.systems.glassbench import read_sample

    samples = list(ds.samples(system, T, split, load_replicas=False))
    if not samples:
        raise InputError(f"no samples for {system} T={T:g} split={split}")
    replica_rows: list[int | None] | None = None
    tau_known = True
    if all(s.md_prop is not None for s in samples):
        source, note = "md_prop", None
        if samples[0].times is None:
            raise InputError(f"{system} T={T:g}: {_name(samples[0])} has md_prop but no lag times ('times')")
        times = np.asarray(samples[0].times, dtype=np.float64)
        for s in samples[1:]:
            if s.times is None or s.times.shape != times.shape or not np.allclose(s.times, times, rtol=1e-6):
                raise InputError(f"{system} T={T:g}: {_name(s)} has other lag times than {_name(samples[0])}")
        k_tau = tau_alpha_index(times, samples[0].metadata.get("provenance"), system, T)
        tau = float(times[k_tau])
        truth = [[s.md_prop[k] for s in samples] for k in range(times.size)]  # type: ignore[index]
    else:
        from glassgen.observables.isoconfig import propensity

        samples = [s if s.md_prop is not None else read_sample(s.path) for s in samples]  # now with replicas
        lag = _replica_time(samples, system, T)
        truth_t = []
        replica_rows = []
        for s in samples:
            row = None
            if s.times is not None and s.times.size and np.all(s.times > 0):
                k = int(np.argmin(np.abs(np.log(s.times / lag))))
                row = k if abs(s.times[k] - lag) <= 1e-3 * lag else None
            if s.md_prop is not None:
                if row is None:
                    raise InputError(f"{system} T={T:g}: {_name(s)} has md_prop but not at the replicas' lag time "
                                     f"t = {lag:g} of the other samples")
                truth_t.append(s.md_prop[row])
            else:
                truth_t.append(propensity(s.positions, s.replicas, s.box))  # as glassgen bench reference does
            replica_rows.append(row)
        samples = [dataclasses.replace(s, replicas=None) for s in samples]  # the propensity is all we keep
        times, k_tau, truth = np.array([lag]), 0, [truth_t]
        prov = samples[0].metadata.get("provenance")
        ours = prov.get("tau_alpha") if isinstance(prov, dict) else None  # glassgen dataset make records it
        known = float(ours) if isinstance(ours, (int, float)) and ours > 0 else published_tau_alpha(system, T)
        tau = float(known) if known is not None else lag  # the unit of t/tau_alpha in the figures
        if known is None:
            tau_known = False
            at = "tau_alpha unknown"
        else:
            at = "tau_alpha" if abs(lag - tau) <= 1e-3 * tau else f"{lag / tau:.3g} tau_alpha"
        source = "replicas"
        note = (f"propensity from the isoconfigurational replicas at one lag time, t = {lag:g} ({at}): no md_prop "
                "time series in these files, so every score has that single row")
    for k, s in enumerate(samples):
        if not all(np.all(np.isfinite(row[k])) for row in truth):
            raise InputError(f"{system} T={T:g}: {_name(s)}: NaN or infinite propensities")
    masks = [s.mask(0) for s in samples]
    preds: dict[str, list[np.ndarray]] = {
        "EPOT": [per_particle_energy(s, inherent_positions(s, cache_dir)) for s in samples],
        "EPOT_thermal": [per_particle_energy(s, s.positions) for s in samples],
    }
    for key in PREDICTION_KEYS:  # the published predictions stored in the files, named apart from ours
        if all(key in s.predictions for s in samples):
            preds[f"published_{key}"] = [s.predictions[key] for s in samples]
    preds.update(extra or {})
    scores: dict[str, list[dict[str, float]]] = {}
    for key, p in preds.items():
        if len(p) != len(samples):
            raise InputError(f"{key}: {len(p)} predictions for {len(samples)} samples")
        rows = _prediction_rows(key, p, samples, times, replica_rows)
        scores[key] = [metrics.score_all(truth[k], rows[k], masks) for k in range(times.size)]
    chi4 = [metrics.chi4_thresholded(truth[k], masks) for k in range(times.size)]
    if len(samples) == 1:
        warnings.warn(f"{system} T={T:g}: one {split or ''} configuration: chi_4 (a variance over configurations) "
                      "and the per-configuration Pearson error are NaN; score two or more".replace("  ", " "),
                      stacklevel=2)
    r_tau = np.concatenate([r[m] for r, m in zip(truth[k_tau], masks, strict=True)])
    return {"system": system, "T": T, "split": split, "times": times, "tau_alpha": tau, "tau_index": k_tau,
            "tau_alpha_known": tau_known,
            "source": source, "note": note, "scores": scores, "chi4_true": chi4, "n_configs": len(samples),
            "samples": [_name(s) for s in samples], "R_tau": r_tau}


def _fig(path: Path, draw: Any, record: dict[str, Any] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    draw(ax)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png", metadata=png_metadata(record or provenance_record()))
    plt.close(fig)




def write_report(results: list[dict[str, Any]], out_dir: Path, published: dict[str, dict[str, np.ndarray]],
                 models: dict[str, Any] | None = None, provenance: dict[str, Any] | None = None,
                 reference: dict[str, Any] | None = None) -> list[Path]:
    """Markdown report + PNG figures (Pearson vs t/tau_alpha, chi_4 vs t/tau_alpha, transferability,
    propensity distributions). Returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    colors = ["C0", "C1", "C2", "C3", "C4", "C5", "C6"]

    def pearson_fig(ax: Any) -> None:
        for c, res in enumerate(results):
            x = res["times"] / res["tau_alpha"]
            for key, ls in (("EPOT", "-o"), ("EPOT_thermal", ":s")):
                ax.plot(x, [r["pearson_pooled"] for r in res["scores"][key]], ls, color=colors[c % 7], ms=3,
                        label=f"ours {key} T={res['T']:g} (N from data)")
        fig1 = published.get("KA_results_FIG1")
        if fig1:
            x = fig1["t"] / 4120.0
            for key, c in (("EPOT", "k"), ("GlassMLP", "grey"), ("SE3", "tab:brown")):
                if key in fig1:
                    ax.plot(x, fig1[key], "--", color=c, label=f"published {key} T=0.44")
        ax.set_xscale("log")
        ax.set_xlabel("t / tau_alpha")
        ax.set_ylabel("Pearson (pooled, species A)")
        ax.axvline(1.0, color="0.8", lw=0.8)
        ax.legend(fontsize=6)

    p = out / "pearson_vs_t.png"
    _fig(p, pearson_fig, provenance)
    written.append(p)

    def chi4_fig(ax: Any) -> None:
        for c, res in enumerate(results):
            ax.plot(res["times"] / res["tau_alpha"], res["chi4_true"], "-o", color=colors[c % 7], ms=3,
                    label=f"ours MD T={res['T']:g}")
        fig7 = published.get("KA_results_FIG7")
        if fig7:
            for (sys_, T), tau in PUBLISHED_TAU_ALPHA.items():
                if sys_ != "KA":
                    continue
                if f"MD{T}" in fig7:
                    ax.plot(fig7[f"t{T}"] / tau, fig7[f"MD{T}"], "--", lw=1, label=f"published MD T={T} (N=4096)")
        ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=0.1)
        ax.set_xlabel("t / tau_alpha")
        ax.set_ylabel("chi_4 of Theta(R - 0.3)")
        ax.legend(fontsize=6)

    p = out / "chi4_vs_t.png"
    _fig(p, chi4_fig, provenance)
    written.append(p)

    def dist_fig(ax: Any) -> None:
        for c, res in enumerate(results):
            h, e = np.histogram(res["R_tau"], bins=50, density=True)
            ax.plot(0.5 * (e[1:] + e[:-1]), h, color=colors[c % 7], label=f"true R(tau_alpha) T={res['T']:g}")
        ax.set_xlabel("propensity R_i(tau_alpha) (species A)")
        ax.set_ylabel("density")
        ax.legend(fontsize=7)

    p = out / "propensity_distributions.png"
    _fig(p, dist_fig, provenance)
    written.append(p)

    transfer = (models or {}).get("transferability")
    fig5 = published.get("KA_results_FIG5")
    if transfer or fig5:
        def tr_fig(ax: Any) -> None:
            if fig5:
                inv = fig5["1/T"]
                for name, c in (("GlassMLP", "grey"), ("SE3", "tab:brown")):
                    for T in ("0.44", "0.64"):
                        key = f"{name}{T}"
                        if key in fig5:
                            ax.plot(inv, fig5[key], "--", color=c, alpha=1.0 if T == "0.44" else 0.5,
                                    label=f"published {name} trained T={T}")
            if transfer:
                curves = [(name, by_train) for name, by_train in transfer.items()
                          if any(len(v) > 1 for v in by_train.values())]  # models tested across temperatures
                for c, (name, by_train) in enumerate(curves):
                    for k, (t_train, by_test) in enumerate(by_train.items()):
                        xs = sorted(by_test, key=float)
                        ax.plot([1 / float(x) for x in xs], [by_test[x] for x in xs], ["-o", ":s", "-.^"][k % 3],
                                color=f"C{c % 10}", ms=3, label=f"ours {name} trained T={t_train}")
            ax.set_xlabel("1 / T_test")
            ax.set_ylabel("Pearson at tau_alpha")
            ax.legend(fontsize=6)

        p = out / "transferability.png"
        _fig(p, tr_fig, provenance)
        written.append(p)

    lines = ["# GlassBench report", ""]
    if provenance:
        lines += [f"Generated by `{provenance.get('command', '')}` (glassgen {provenance.get('glassgen_version')}, "
                  f"{provenance.get('time')}).", ""]
    if reference:
        lines += ["## Shipped KA 3D T = 0.44 samples (published data, replicas at tau_alpha = 4120)", "",
                  "| quantity | all samples | test 401-405 | published |", "|---|---|---|---|"]
        pub = reference["published"]
        lines.append(f"| rho_max (split-half, pooled A) | {reference['rho_max_all']:.3f} | "
                     f"{reference['rho_max_test']:.3f} | {pub['rho_max']} |")
        lines.append(f"| chi_4 (Theta(R-0.3)) | {reference['chi4_all']:.1f} | {reference['chi4_test']:.1f} | "
                     f"{pub['chi4_true']} (100 configs) |")
        for kind in ("inherent", "thermal"):
            a, t = reference[f"pearson_EPOT_{kind}_all"], reference[f"pearson_EPOT_{kind}_test"]
            ref_val = pub["pearson_EPOT"] if kind == "inherent" else "-"
            lines.append(f"| Pearson EPOT ({kind}), pooled / per-config | {a['pooled']:.3f} / "
                         f"{a['per_config']:.3f} | {t['pooled']:.3f} / {t['per_config']:.3f} | {ref_val} |")
        cg = reference.get("pearson_EPOT_cg_inherent")
        if cg:
            best = f"{cg['L_selected_on_train']:g}"
            lines.append(f"| Pearson coarse-grained EPOT (inherent), L = {best} chosen on train 1-10 | "
                         f"{cg['by_L'][best]['train']:.3f} (train) | {cg['test_at_selected_L']:.3f} | "
                         f"{pub['pearson_EPOT']} |")
        lines.append("")
    for res in results:
        heads = " | ".join(f"{k} pooled / per-config" for k in res["scores"])
        lines += [f"## {res['system']} T = {res['T']:g} ({res['split'] or 'all'} split, {res['n_configs']} "
                  f"configurations, tau_alpha = {res['tau_alpha']:.4g})", "",
                  *([f"Note: {res['note']}.", ""] if res.get("note") else []),
                  f"| t | t/tau_alpha | chi_4 true | {heads} |", "|---|---|---|" + "---|" * len(res["scores"])]
        for k, t in enumerate(res["times"]):
            cells = " | ".join(f"{res['scores'][key][k]['pearson_pooled']:.3f} / "
                               f"{res['scores'][key][k]['pearson_per_config']:.3f}" for key in res["scores"])
            lines.append(f"| {t:.4g} | {t / res['tau_alpha']:.3g} | {res['chi4_true'][k]:.2f} | {cells} |")
        lines.append("")
    if transfer:
        lines += ["## Transferability (Pearson at tau_alpha of the test temperature)", ""]
        for name, by_train in transfer.items():
            tests = sorted({x for v in by_train.values() for x in v}, key=float)
            lines += [f"**{name}**", "", "| train T \\ test T | " + " | ".join(tests) + " |",
                      "|---|" + "---|" * len(tests)]
            for t_train, by_test in by_train.items():
                cells = " | ".join(f"{by_test[x]:.3f}" if x in by_test else "-" for x in tests)
                lines.append(f"| {t_train} | {cells} |")
            lines.append("")
    lines += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in written]
    md = out / "report.md"
    with atomic_path(md) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    jpath = out / "report.json"
    with atomic_path(jpath) as tmp:
        tmp.write_text(json.dumps({"results": [{k: v for k, v in r.items() if k != "R_tau"} for r in results],
                                   "reference": reference, "models": models, "provenance": provenance},
                                  default=lambda o: o.tolist() if isinstance(o, np.ndarray) else float(o), indent=1))
    return [md, jpath, *written]
