"""Training a temperature-conditioned Boltzmann generator down a temperature ladder.

Objectives (per step, on a batch of B samples whose temperatures are drawn from the rungs reached so
far, half of them at the newest rung):

* reverse KL: E_q[beta U_s(x) + log q(x)] with U_s the soft-cored energy (linear below
  ``soft_core`` * sigma_ab, so overlapping samples have finite energies and gradients);
* forward KL: -E_p[log q(x)] on reference configurations from our Metropolis MC or NVT MD at each
  rung (generated once, stored next to the checkpoint chain segment by chain segment, reused on resume;
  :mod:`glassgen.flows.reference_data`);
* mixture: (1 - w) reverse + w forward.

Steps with a non-finite loss or gradient are skipped (and counted); gradients are clipped by norm.
The run checkpoints every ``checkpoint_every`` steps (model, optimizer, step, RNG states, history)
and resumes from the checkpoint bitwise-deterministically on the CPU.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from glassgen.config_values import check_types, type_hints
from glassgen.errors import InputError
from glassgen.flows.base import BoltzmannPriorBase
from glassgen.flows.energy import Energy
from glassgen.flows.generator import BoltzmannGenerator
from glassgen.flows.model import FlowArchitecture, beta_context, to_full, to_relative
from glassgen.flows.reference_data import SOURCES, Segment, per_temperature, reference_data
from glassgen.flows.weights import kish_ess_fraction
from glassgen.progress import progress_bar
from glassgen.provenance import atomic_path, provenance

__all__ = ["TrainingConfig", "train_flow", "reference_data"]

OBJECTIVES = ("reverse", "forward", "mixture")


@dataclass(frozen=True)
class TrainingConfig:
    """Everything ``glassgen flow train`` needs (the ``[system]``, ``[architecture]``, ``[training]``
    and ``[data]`` tables of a TOML file under ``configs/flows/``).

    Attributes:
        model, N, density: the system (density None = the model's default).
        T_ladder: temperatures from high (easy) to low; the flow serves [min, max].
        steps_per_rung: optimisation steps before the next (lower) temperature is added.
        batch: samples per step; lr: Adam learning rate (cosine-decayed to lr/10 over the run).
        objective: reverse | forward | mixture; forward_weight: w of the mixture.
        soft_core: soft-core factor of the training energy (r_s = soft_core * sigma_ab).
        clip: gradient-norm clip. seed: seed of torch and of the MC data.
        newest_fraction: share of each batch at the newest rung (the rest uniform over the rungs reached;
            0, the default since 2026-12-05 and the shipped configs' value, trains all rungs reached equally:
            0.5 let the newest rung spoil the others).
        validate_every: every this many steps (and before the first), draw ``validate_samples`` flow
            samples at every ladder temperature and record their Kish ESS/n on the exact energy; the
            run ends with the flow of the best validation score (geometric mean of ESS/n over the
            ladder), the step 0 identity flow included: early stopping. 0: off (the last flow is kept).
        checkpoint_every: steps between checkpoints.
        init_from: checkpoint whose flow weights start this run (a second training stage, e.g. reverse
            KL after maximum likelihood); same system and architecture required; relative paths are
            relative to the current directory.
        data_per_T, data_chains, data_equilibration, data_every: reference data per rung
            (configurations, independent chains, equilibration, interval between samples; in MC sweeps
            or MD steps). Equilibration and interval: one number, or one per data temperature (high to
            low), since the relaxation time grows by orders of magnitude down a ladder.
        data_source: ``mc`` (Metropolis), ``md`` (NVT MD, Nose-Hoover chain, time step ``data_dt``,
            started from 200 MC sweeps) or ``lammps`` (the same MD run by LAMMPS). Below T ~ 0.5 local MC
            of small KA systems stays in one basin for a long time (README); MD is the source for
            Boltzmann-prior pools of cold states (:mod:`glassgen.flows.reference_data`).
        data_anneal: each chain goes down the data temperatures, starting at each one from its own last
            configuration at the temperature above (otherwise from a relaxed random state).
        data_swap_fraction: ``mc`` source only: the share of trial moves that are species swaps (uniform
            swap MC, for mixtures such as KA2D where swaps relax the system; configurations are stored in
            the canonical species order).
        pool_holdout_chains: Boltzmann-prior base only: the last K of the ``data_chains`` chains of every
            prior pool are kept out of training. Validation draws from them, and the checkpoint keeps only
            them as its pools, so the flow is independent of the configurations it later maps and its
            importance weights are exact. With 0 the flow is trained on the pool it samples from and is
            judged on its training data: a flow that fits the pool's own configurations looks better than it
            is (``benchmarks/flows_capacity.py``; docs/flows.md). 0 in the shipped configs (their flows are the
            identity or 100 small steps from it).
        architecture: :class:`FlowArchitecture`.
    """

    model: str = "ka3d"
    N: int = 32
    density: float | None = None
    T_ladder: tuple[float, ...] = (2.0, 1.0, 0.7, 0.6, 0.5, 0.45, 0.4)
    steps_per_rung: int = 300
    batch: int = 128
    lr: float = 5e-4
    objective: str = "mixture"
    forward_weight: float = 0.5
    soft_core: float = 0.8
    clip: float = 100.0
    newest_fraction: float = 0.0
    validate_every: int = 0
    validate_samples: int = 512
    seed: int = 0
    checkpoint_every: int = 100
    init_from: str | None = None
    data_per_T: int = 512
    data_chains: int = 8
    data_equilibration: int | tuple[int, ...] = 2000
    data_every: int | tuple[int, ...] = 20
    data_source: str = "mc"
    data_dt: float = 0.005
    data_anneal: bool = False
    data_swap_fraction: float = 0.0
    pool_holdout_chains: int = 0
    architecture: FlowArchitecture = field(default_factory=FlowArchitecture)

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise InputError(f"unknown objective {self.objective!r} (use one of {', '.join(OBJECTIVES)})")
        if len(self.T_ladder) < 1 or any(not (t > 0) for t in self.T_ladder):
            raise InputError("T_ladder must be a non-empty list of positive temperatures")
        if list(self.T_ladder) != sorted(self.T_ladder, reverse=True):
            raise InputError("T_ladder must go from high to low temperature")
        if self.validate_every < 0 or self.validate_samples < 2:
            raise InputError("validate_every must be >= 0 and validate_samples >= 2")
        for name in ("steps_per_rung", "batch", "checkpoint_every", "data_per_T", "data_chains"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1")
        if not (math.isfinite(self.lr) and self.lr > 0 and self.clip > 0):
            raise InputError(f"lr and clip must be positive, got lr={self.lr}, clip={self.clip}")
        if not 0.0 <= self.forward_weight <= 1.0:
            raise InputError("forward_weight must be in [0, 1]")
        if not 0.0 <= self.newest_fraction <= 1.0:
            raise InputError("newest_fraction must be in [0, 1]")
        if self.data_source not in SOURCES:
            raise InputError(f"unknown data source {self.data_source!r} (use one of {', '.join(SOURCES)})")
        if not self.data_dt > 0:
            raise InputError("data dt must be positive")
        if not 0.0 <= self.data_swap_fraction <= 1.0:
            raise InputError("data swap_fraction must be in [0, 1]")
        if self.data_swap_fraction > 0 and self.data_source != "mc":
            raise InputError(f"data swap_fraction needs source = \"mc\" (swaps are MC moves), not {self.data_source!r}")
        if self.pool_holdout_chains:
            if self.architecture.base != "boltzmann":
                raise InputError("pool_holdout_chains needs a Boltzmann-prior base (architecture base = \"boltzmann\")")
            if not 0 < self.pool_holdout_chains < self.data_chains:
                raise InputError(f"pool_holdout_chains must be in [1, data chains - 1] = [1, {self.data_chains - 1}], "
                                 f"got {self.pool_holdout_chains}")
        per_t = [k for k in ("equilibration", "every") if isinstance(getattr(self, f"data_{k}"), (list, tuple))]
        written = list(self.architecture.T_priors) if self.architecture.base == "boltzmann" else []
        if per_t and written != sorted(written, reverse=True):  # the lists pair with the temperatures high to low
            raise InputError(f"data {' and '.join(per_t)}: one value per data temperature pairs with them from high "
                             f"to low ({', '.join(f'{t:g}' for t in self.data_temperatures)}); write T_priors = "
                             f"{[float(t) for t in sorted(written, reverse=True)]} in that order too, so that the "
                             "pairing is the one you read")
        if self.needs_data:
            equil = per_temperature(self.data_equilibration, self.data_temperatures, "equilibration")
            every = per_temperature(self.data_every, self.data_temperatures, "every")
            if min(equil.values()) < 0 or min(every.values()) < 1:
                raise InputError("data equilibration must be >= 0 and data every >= 1")

    @property
    def total_steps(self) -> int:
        return self.steps_per_rung * len(self.T_ladder)

    @property
    def needs_data(self) -> bool:
        return bool(self.data_temperatures)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainingConfig:
        """Build from the nested TOML tables (unknown keys are a one-line error)."""
        allowed = {"system", "architecture", "training", "data"}
        unknown = set(d) - allowed
        if unknown:
            raise InputError(f"unknown table(s) in flow config: {', '.join(sorted(unknown))}")
        flat: dict[str, Any] = {}
        sysd = dict(d.get("system", {}))
        if "model" not in sysd or "N" not in sysd:  # an empty file must not start a default training run
            raise InputError("a flow config needs a [system] table with model and N")
        for k in ("model", "N", "density"):
            if k in sysd:
                flat[k] = sysd.pop(k)
        if sysd:
            raise InputError(f"unknown key(s) in [system]: {', '.join(sorted(sysd))}")
        names = {f.name for f in fields(cls)}
        for table in ("training", "data"):
            for k, v in d.get(table, {}).items():
                key = k if table == "training" else f"data_{k}"
                if key not in names or key == "architecture":
                    raise InputError(f"unknown key in [{table}]: {k}")
                flat[key] = tuple(v) if isinstance(v, list) else v
        arch_names = {f.name for f in fields(FlowArchitecture)}
        archd = d.get("architecture", {})
        bad = set(archd) - arch_names
        if bad:
            raise InputError(f"unknown key(s) in [architecture]: {', '.join(sorted(bad))}")
        archd = check_types(archd, type_hints(FlowArchitecture), "[architecture]")
        flat = check_types(flat, type_hints(cls), "flow config")
        flat["architecture"] = FlowArchitecture(**archd)
        try:
            cfg = cls(**flat)
        except TypeError as exc:
            raise InputError(f"bad flow config: {exc}") from None
        if "data" not in d and cfg.needs_data:  # the defaults are a start, not converged pools at low T
            temps = ", ".join(f"{t:g}" for t in cfg.data_temperatures)
            warnings.warn(f"no [data] table: reference data at T = {temps} from the defaults ({cfg.data_source}, "
                          f"{cfg.data_chains} chains, {cfg.data_equilibration} equilibration sweeps or steps "
                          "each); below T ~ 0.6 such pools are not equilibrated: set [data] as "
                          "configs/flows/*.toml do", stacklevel=2)
        return cfg

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["T_ladder"] = list(self.T_ladder)
        return out

    @property
    def data_temperatures(self) -> tuple[float, ...]:
        """Temperatures that need reference data: the ladder (forward KL) and the prior pools, descending."""
        temps = set(self.T_ladder) if self.objective != "reverse" else set()
        if self.architecture.base == "boltzmann":
            temps |= set(self.architecture.prior_temperatures)
        return tuple(sorted((float(t) for t in temps), reverse=True))


# ----------------------------------------------------------------------------- reference data
def _data_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.stem + ".data.npz")


def _data_settings(cfg: TrainingConfig) -> str:
    """The settings that determine the reference data (stored with it, checked on reuse)."""
    keys = ("model", "N", "density", "seed", "data_source", "data_dt", "data_per_T", "data_chains",
            "data_equilibration", "data_every")
    settings = {k: getattr(cfg, k) for k in keys}
    newer = ("data_anneal", "data_swap_fraction")  # keys added later: stored only when set
    settings.update({k: getattr(cfg, k) for k in newer if getattr(cfg, k)})
    return json.dumps(settings, sort_keys=True)


def _load_or_make_data(cfg: TrainingConfig, checkpoint: Path, progress: bool,
                       workers: int = 1) -> dict[float, np.ndarray]:
    """Reference data for ``cfg.data_temperatures``, kept next to the checkpoint chain segment by chain
    segment (``seg:<T>:<chain>`` and its last state ``last:<T>:<chain>``; the file is rewritten atomically
    after each segment), so an interrupted generation resumes where it stopped. A data file made with other
    data settings (system, source, sizes, seed) is refused with a one-line error, not reused."""
    path = _data_path(checkpoint)
    temps = cfg.data_temperatures
    settings = _data_settings(cfg)
    segs: dict[tuple[float, int], Segment] = {}
    if path.is_file():
        with np.load(path) as f:
            saved = str(f["settings"]) if "settings" in f.files else None
            if saved is not None and saved != settings:
                raise InputError(f"{path} holds reference data made with other data settings; "
                                 "remove it or use a new --out")
            arrays = {k: f[k] for k in f.files if k not in ("settings", "provenance")}
        for k, v in arrays.items():
            kind, _, rest = k.partition(":")
            if kind == "seg":
                t, c = rest.rsplit(":", 1)
                segs[(float(t), int(c))] = Segment(v, arrays[f"last:{rest}"])
        if not segs and all(repr(float(t)) in arrays for t in temps):  # finished, pre-segment format
            return {float(t): arrays[repr(float(t))] for t in temps}

    record = json.dumps(provenance(model=cfg.model, N=cfg.N, seed=cfg.seed, data_temperatures=list(temps)),
                        default=str)

    def save(T: float, c: int, seg: Segment) -> None:
        segs[(T, c)] = seg
        out = {}
        for (t, ch), s in segs.items():
            out[f"seg:{t!r}:{ch}"], out[f"last:{t!r}:{ch}"] = s.configurations, s.last
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, settings=np.array(settings), provenance=np.array(record), **out)

    return reference_data(cfg, temps, progress=progress, done=segs, on_segment=save, workers=workers)


# ----------------------------------------------------------------------------- training loop
def split_pools(pools: dict[float, np.ndarray], chains: int, held_chains: int
                ) -> tuple[dict[float, np.ndarray], dict[float, np.ndarray]]:
    """Split every prior pool (P, N, d), stored chain after chain with ceil(P / chains) configurations per
    chain (:func:`glassgen.flows.reference_data.reference_data`), into the first ``chains - held_chains``
    chains (training) and the last ``held_chains`` (held out)."""
    train, held = {}, {}
    for t, p in pools.items():
        cut = (chains - held_chains) * math.ceil(p.shape[0] / chains)
        if not 0 < cut < p.shape[0]:
            raise InputError(f"the prior pool at T={t} ({p.shape[0]} configurations, {chains} chains) cannot hold "
                             f"out {held_chains} chains")
        train[t], held[t] = p[:cut], p[cut:]
    return train, held


@contextmanager
def _base_swapped(flow: torch.nn.Module, base: torch.nn.Module | None) -> Iterator[None]:
    """Temporarily give ``flow`` another base distribution (no-op for None)."""
    if base is None:
        yield
        return
    saved = flow.q0
    flow.q0 = base
    try:
        yield
    finally:
        flow.q0 = saved


def _config_differences(saved: dict[str, Any] | None, cfg: TrainingConfig) -> list[str]:
    """Keys of ``cfg`` whose values differ from a checkpoint's config (options added to glassgen since then must be
    at their defaults); ["config"] if the checkpoint has none."""
    if saved is None:
        return ["config"]
    current, defaults = cfg.as_dict(), TrainingConfig().as_dict()
    return [k for k, v in current.items() if (saved[k] != v if k in saved else v != defaults[k])]


def _sample_temperatures(rng: np.random.Generator, ladder: tuple[float, ...], rung: int, n: int,
                         newest_fraction: float = 0.0) -> np.ndarray:
    """``newest_fraction`` of the batch at the newest rung, the rest uniform over all rungs reached."""
    reached = np.asarray(ladder[: rung + 1])
    t = reached[rng.integers(0, rung + 1, n)]
    t[: int(round(n * newest_fraction))] = ladder[rung]
    return t


def draw_from_flow(flow: torch.nn.Module, context: torch.Tensor, box: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw B = len(context) configurations x = f(z), z ~ q0, with the pinned particle at the origin.

    Works with the flow on the CPU or on a CUDA device (the base draws on the CPU, the map where the flow is).

    Args:
        flow: the :class:`~glassgen.flows.model.ParticleFlow`.
        context: (B, c) the flow's temperature context, on the flow's device.
        box: (d,) box lengths, on the device where ``x`` is wanted (the energy's).

    Returns:
        x: (B, N, d) float64 positions in [0, L) on ``box``'s device.
        log_q: (B,) float64 log q_r of the relative coordinates, on the flow's device (differentiable; add
            ``flow.log_pinned`` for the density of full configurations with a uniformly placed particle 0).
    """
    dev = context.device
    n = context.shape[0]
    z, lq0 = flow.q0(n, context=context.cpu())
    r, ld = flow.forward_and_log_det(z.to(dev), context)
    x = to_full(r.to(box.device), torch.zeros(n, box.shape[0], dtype=torch.float64, device=box.device), box)
    return x, lq0.to(dev) - ld


def reverse_kl_loss(flow: torch.nn.Module, energy: Energy, beta: torch.Tensor, context: torch.Tensor,
                    box: torch.Tensor) -> torch.Tensor:
    """Reverse-KL training loss on one batch drawn from the flow, up to the constant log Z:

        L = mean_b [ beta_b U(x_b) + log q(x_b) ],  x_b = f(z_b), z_b ~ q0,  log q = log q0(z) - log|det J|.

    Args:
        flow: the :class:`~glassgen.flows.model.ParticleFlow` (on its training device).
        energy: differentiable U (epsilon) of full configurations, evaluated on ``box``'s device (the CPU for
            the Numba engine, the flow's CUDA device for the torch one).
        beta: (B,) float64 inverse temperatures 1/T, on the flow's device.
        context: (B, c) the flow's temperature context, on the flow's device.
        box: (d,) box lengths on the energy's device.

    Returns:
        the scalar float64 loss on the flow's device (differentiable in the flow's parameters).
    """
    x, log_q = draw_from_flow(flow, context, box)
    return torch.mean(beta * energy.energy(x).to(beta.device) + log_q)


def train_flow(cfg: TrainingConfig, checkpoint: str | os.PathLike[str], *, resume: bool = True,
               device: str = "cpu", progress: bool = True, log_every: int = 25,
               max_steps: int | None = None, workers: int = 1) -> BoltzmannGenerator:
    """Train (or resume training) a Boltzmann generator; the final checkpoint is written to ``checkpoint``.

    Args:
        cfg: the :class:`TrainingConfig`.
        checkpoint: output path (``.pt``); intermediate checkpoints overwrite it atomically.
        resume: continue from an existing checkpoint at that path (same config required).
        device: torch device (``cpu`` or ``cuda``); on CUDA the training energy is evaluated there too
            (:meth:`BoltzmannGenerator.training_energy`), exact energies and validation on the CPU.
        progress: draw a progress bar.
        log_every: steps between history records.
        max_steps: stop (with a checkpoint) after this many steps of this call, e.g. to split a long
            run into sessions; the next call resumes.
        workers: processes generating the reference data's chains at the same time.

    Returns:
        the trained :class:`BoltzmannGenerator` (on the CPU).
    """
    ck_path = Path(checkpoint)
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(f"unknown device {device!r} (cpu, cuda or cuda:K)") from None
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"unsupported device {device!r} (cpu, cuda or cuda:K)")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda requested but no CUDA device is available")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    ck = None
    if resume and ck_path.is_file():  # read (and judge) the checkpoint before the reference data are made
        try:
            ck = torch.load(ck_path, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 - an empty or foreign file (EOFError, UnpicklingError, ...)
            raise InputError(f"cannot resume from {ck_path}: not a glassgen flow checkpoint ({type(exc).__name__}); "
                             "use a new --out or --no-resume") from None
        if not isinstance(ck, dict) or ck.get("format") != "glassgen-flow":
            raise InputError(f"cannot resume from {ck_path}: not a glassgen flow checkpoint; use a new --out or "
                             "--no-resume")
        changed = _config_differences(ck.get("training", {}).get("config"), cfg)
        if changed:
            raise InputError(f"{ck_path} was written by a different configuration ({', '.join(changed)} differ); "
                             "use a new --out or --no-resume")
    data = _load_or_make_data(cfg, ck_path, progress, workers) if cfg.needs_data else {}
    prior_pool = ({t: data[t] for t in cfg.architecture.prior_temperatures}
                  if cfg.architecture.base == "boltzmann" else None)
    held_pool = None
    if prior_pool is not None and cfg.pool_holdout_chains:
        prior_pool, held_pool = split_pools(prior_pool, cfg.data_chains, cfg.pool_holdout_chains)
    gen = BoltzmannGenerator.create(cfg.model, cfg.N, cfg.architecture, cfg.density, prior_pool=prior_pool)
    # the held-out chains: a base of their own, used for validation and stored as the checkpoint's pools
    held_base = (None if held_pool is None else
                 BoltzmannGenerator.create(cfg.model, cfg.N, cfg.architecture, cfg.density,
                                           prior_pool=held_pool).flow.q0)
    if cfg.init_from and ck is None:
        init = BoltzmannGenerator.load(cfg.init_from)
        if init.system != gen.system or init.flow.arch != gen.flow.arch:
            raise InputError(f"init_from {cfg.init_from}: different system or architecture")
        gen.flow.load_state_dict(init.flow.state_dict())
    flow = gen.flow.to(dev)
    opt = torch.optim.Adam(flow.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.total_steps, eta_min=cfg.lr / 10)
    history: list[dict[str, float]] = []
    step, skipped = 0, 0
    best: dict[str, Any] | None = None  # validation: {"step", "score", "ess", "state_dict"}
    selected: dict[str, Any] | None = None  # the validation-best flow kept at the end
    acc = {"reverse": 0.0, "forward": 0.0, "n": 0}  # losses since the last history record
    if ck is not None:
        try:
            flow.load_state_dict(ck["state_dict"])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            step, skipped = int(ck["step"]), int(ck["training"]["skipped"])
            history = list(ck["training"]["history"])
            acc = dict(ck["training"].get("log_accumulator", acc))  # (a record after a resume averaged too few)
            best = ck.get("best")
            if ck.get("prior_draws") is not None and isinstance(flow.q0, BoltzmannPriorBase):
                flow.q0.set_draw_state(ck["prior_draws"])
            if ck.get("held_out_draws") is not None and held_base is not None:
                held_base.set_draw_state(ck["held_out_draws"])
            torch.set_rng_state(ck["torch_rng"])
            rng.bit_generator.state = ck["numpy_rng"]
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise InputError(f"cannot resume from {ck_path}: malformed checkpoint ({type(exc).__name__}); "
                             "use a new --out or --no-resume") from None
    energy = gen.training_energy(cfg.soft_core, dev)
    box_e = gen.box.to(dev if dev.type == "cuda" else "cpu")  # on the training energy's device
    data_rel = {T: to_relative(torch.as_tensor(x), gen.box).to(dev) for T, x in data.items()}
    w_fwd = {"reverse": 0.0, "forward": 1.0, "mixture": cfg.forward_weight}[cfg.objective]

    def save() -> None:
        reached = cfg.T_ladder[: min(max(step - 1, 0) // cfg.steps_per_rung, len(cfg.T_ladder) - 1) + 1]
        gen.T_range = (min(reached), max(reached))  # temperatures trained on so far
        gen.training = {"config": cfg.as_dict(), "history": history, "skipped": skipped, "step": step,
                        "selected": selected, "log_accumulator": dict(acc)}
        gen.provenance = provenance(model=cfg.model, N=cfg.N, seed=cfg.seed, T_ladder=list(cfg.T_ladder))
        flow.to("cpu")
        draws = flow.q0.draw_state() if isinstance(flow.q0, BoltzmannPriorBase) else None
        with _base_swapped(flow, held_base):  # the checkpoint keeps the held-out pools (if any) to sample from
            gen.save(ck_path, optimizer=opt.state_dict(), scheduler=sched.state_dict(), step=step, best=best,
                     prior_draws=draws, held_out_draws=None if held_base is None else held_base.draw_state(),
                     torch_rng=torch.get_rng_state(), numpy_rng=rng.bit_generator.state)
        flow.to(dev)

    def validate() -> None:
        nonlocal best
        flow.to("cpu")
        extrapolate, gen.allow_extrapolation = gen.allow_extrapolation, True
        with torch.no_grad(), _base_swapped(flow, held_base):
            ess = {}
            for T in cfg.T_ladder:
                x, lq = gen.sample(cfg.validate_samples, float(T))
                lw = gen.log_weights(gen.energies(x), lq, float(T))
                ess[float(T)] = kish_ess_fraction(lw) if np.isfinite(lw).any() else 0.0
        gen.allow_extrapolation = extrapolate
        flow.to(dev)
        score = float(np.exp(np.mean(np.log(np.maximum(list(ess.values()), 1e-12)))))
        history.append({"step": step, "validation_ess": {repr(k): v for k, v in ess.items()}, "score": score})
        if best is None or score > best["score"]:
            best = {"step": step, "score": score, "ess": ess,
                    "state_dict": {k: v.detach().cpu().clone() for k, v in flow.state_dict().items()}}

    if cfg.validate_every and step == 0:
        validate()
    with progress_bar(cfg.total_steps, "training flow (steps)", progress) as advance:
        advance(step)
        stop_at = cfg.total_steps if max_steps is None else min(cfg.total_steps, step + int(max_steps))
        while step < stop_at:
            rung = min(step // cfg.steps_per_rung, len(cfg.T_ladder) - 1)
            temps = _sample_temperatures(rng, cfg.T_ladder, rung, cfg.batch, cfg.newest_fraction)
            beta = torch.as_tensor(1.0 / temps, dtype=torch.float64, device=dev)
            ctx = beta_context(torch.as_tensor(temps))
            ctx = ctx.to(dev)
            loss = torch.zeros((), dtype=torch.float64, device=dev)
            lr_val = lf_val = float("nan")
            if w_fwd < 1.0:
                lr_t = reverse_kl_loss(flow, energy, beta, ctx, box_e)
                loss = loss + (1.0 - w_fwd) * lr_t
                lr_val = float(lr_t.detach())
            if w_fwd > 0.0:
                xs = [data_rel[float(t)][rng.integers(0, data_rel[float(t)].shape[0])] for t in temps]
                lf_t = -torch.mean(flow.log_prob(torch.stack(xs), ctx))
                loss = loss + w_fwd * lf_t
                lf_val = float(lf_t.detach())
            opt.zero_grad(set_to_none=True)
            ok = bool(torch.isfinite(loss))
            if ok:
                loss.backward()
                gnorm = torch.nn.utils.clip_grad_norm_(flow.parameters(), cfg.clip)
                ok = bool(torch.isfinite(gnorm))
            if ok:
                opt.step()
            else:
                skipped += 1
                opt.zero_grad(set_to_none=True)
            sched.step()
            step += 1
            acc["reverse"] += lr_val if math.isfinite(lr_val) else 0.0
            acc["forward"] += lf_val if math.isfinite(lf_val) else 0.0
            acc["n"] += 1
            if step % log_every == 0 or step == cfg.total_steps:
                history.append({"step": step, "T": float(cfg.T_ladder[rung]),
                                "reverse_kl": acc["reverse"] / acc["n"] if w_fwd < 1 else float("nan"),
                                "forward_kl": acc["forward"] / acc["n"] if w_fwd > 0 else float("nan"),
                                "skipped": skipped})
                acc = {"reverse": 0.0, "forward": 0.0, "n": 0}
            if cfg.validate_every and step % cfg.validate_every == 0:
                validate()
            if step % cfg.checkpoint_every == 0 and step < stop_at:
                save()
            advance(1)
    if cfg.validate_every and best is not None and step >= cfg.total_steps:  # early stopping: keep the best
        flow.load_state_dict(best["state_dict"])
        selected = {"step": best["step"], "score": best["score"], "ess": best["ess"]}
    save()  # final state (also when resuming a finished run: fills T_range, history, provenance)
    flow.to("cpu")
    gen.training = {**gen.training, "resumed_from_step": None if ck is None else int(ck["step"])}  # not in the file
    return gen

