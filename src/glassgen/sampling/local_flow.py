r"""Local generative proposals: a small equivariant flow regenerates a region, exact MH acceptance.

A move (issue 8, "predictors choose where, generators propose how"):

1. choose a centre particle c with P(c | x) (uniform, or exp(s_c(x)) / Z(x) from a
   :class:`~glassgen.sampling.predict_propose.FeatureScorer`-type linear score of the pair energy and
   coordination);
2. the region is the cube of half-width R (sigma_AA units) centred on x_c; the mobile set S is every
   particle j != c with max_a |x_j - x_c|_a < R (minimum image). The centre itself never moves and every
   particle outside S is frozen, so the region, S and the environment (frozen particles within
   ``env_radius`` of x_c, the centre included) are the same before and after the move: the reverse move
   exists and regenerates the same set;
3. new scaled positions y = f(z) in (-1, 1)^{m d}, z ~ U(-1, 1)^{m d}, where f is a coupling flow
   conditioned on the environment (:class:`LocalFlow`); x'_j = x_c + R y_j. The flow maps the cube onto
   itself, so membership cannot change. Its density q(y | env) is evaluated for the new positions and,
   with the inverse pass, for the old ones (an independence proposal inside the region):

       log alpha = -beta dU + log q(u_old | env) - log q(y | env) + log P(c | x') - log P(c | x).

   Regions with more than ``max_mobile`` mobile (or ``max_env`` environment) particles are left unchanged
   (the counts are invariant under the move, so this keeps detailed balance); an empty region is a
   trivial move.

:class:`LocalFlow`: K coupling layers, layer l transforms axis a = l mod d of every mobile particle with a
monotone rational-quadratic spline on [-1, 1] (linear tails never reached, normflows primitive), whose
parameters come from a permutation-equivariant conditioner (DeepSets messages): particle i sees its own
other-axis coordinates and species one-hot, a sum over the other mobile particles of an MLP of their
other-axis coordinates (absolute and relative to i) and species, and a sum over the environment particles
of an MLP of their full coordinates, their other-axis offsets from i and species. Axis a of the mobile
particles never enters its own conditioner, so the Jacobian is triangular; the output layer starts at
zero (identity flow = uniform proposal) unless ``init_scale`` > 0 (tests use a random non-trivial flow).
Trained by maximum likelihood on regions cut out of equilibrium configurations (:func:`train_local_flow`).

Units: lengths sigma_AA, energies epsilon, beta = 1/T; float64 throughout.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from normflows.utils.splines import unconstrained_rational_quadratic_spline
from torch import nn

from glassgen._kernels.mc import total_energy_mc
from glassgen._kernels.neighbors import mc_image_shifts
from glassgen._kernels.pgmc import ext_energy, subset_energy
from glassgen.errors import InputError, PhysicsError
from glassgen.progress import progress_bar
from glassgen.sampling.pgmc import PGMCTarget
from glassgen.sampling.predict_propose import features_of, log_selection

__all__ = ["LocalRegion", "LocalFlow", "LocalFlowMC", "LocalFlowResult", "extract_regions", "train_local_flow",
           "MH_MODES"]

#: "exact"; negative controls (wrong on purpose, for the tests): "stale_selection" (selection probability
#: only in the old state), "no_density_ratio" (log q dropped from the ratio; the base density is uniform, so
#: this is also "log-det dropped"), "no_reverse_density" (only the forward density -log q(y | env) kept),
#: "flipped_logdet" (log-det with the wrong sign: q(old) / q(new) replaced by q(new) / q(old))
MH_MODES = ("exact", "stale_selection", "no_density_ratio", "no_reverse_density", "flipped_logdet")
_LOG2 = math.log(2.0)
_D0 = math.log(math.expm1(1.0 - 1e-3))  # softplus^-1(1 - min_derivative) of normflows' splines


@dataclass(frozen=True)
class LocalRegion:
    """Cube of half-width ``half_width`` around the centre; environment within ``env_radius``; caps."""

    half_width: float = 0.8
    env_radius: float = 2.2
    max_mobile: int = 8
    max_env: int = 32

    def check(self, box: np.ndarray) -> None:
        if not (0 < self.half_width and self.env_radius >= self.half_width * math.sqrt(len(box))):
            raise InputError("region needs half_width > 0 and env_radius >= the cube's half-diagonal")
        if 2 * self.env_radius >= float(np.min(box)):
            raise InputError(f"env_radius {self.env_radius} too large for the box {np.asarray(box).tolist()}")


def _region(pos: np.ndarray, box: np.ndarray, c: int, reg: LocalRegion) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mobile indices (m,), scaled mobile offsets (m, d), environment indices (k,)) of the region around c."""
    dx = pos - pos[c]
    dx -= box * np.round(dx / box)
    inside = np.all(np.abs(dx) < reg.half_width, axis=1)
    inside[c] = False
    mob = np.flatnonzero(inside)
    env = np.flatnonzero(~inside & (np.einsum("ij,ij->i", dx, dx) < reg.env_radius**2))
    return mob, dx[mob] / reg.half_width, env


def extract_regions(frames: np.ndarray, species: np.ndarray, box: np.ndarray, reg: LocalRegion,
                    centres_per_frame: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Training regions from equilibrium frames (F, N, d) (species (N,) or (F, N)): padded arrays.

    Returns:
        dict u (R, M, d) scaled mobile offsets, mask (R, M) bool, sp (R, M) int, env (R, K, d) scaled
        environment offsets, emask (R, K), esp (R, K); regions over the caps are dropped.
    """
    rng = np.random.default_rng(seed)
    frames = np.asarray(frames, dtype=np.float64)
    sps = np.broadcast_to(np.asarray(species), frames.shape[:2])
    rows = []
    for f in range(frames.shape[0]):
        pos = frames[f] % box
        cs = np.arange(pos.shape[0]) if centres_per_frame is None else \
            rng.choice(pos.shape[0], size=min(centres_per_frame, pos.shape[0]), replace=False)
        for c in cs:
            mob, u, env = _region(pos, box, int(c), reg)
            if 0 < mob.size <= reg.max_mobile and env.size <= reg.max_env:
                e = pos[env] - pos[c]
                e -= box * np.round(e / box)
                rows.append((u, sps[f, mob], e / reg.half_width, sps[f, env]))
    return _pad(rows, reg, box.shape[0])


def _pad(rows: list[tuple[np.ndarray, ...]], reg: LocalRegion, d: int) -> dict[str, np.ndarray]:
    r, m, k = len(rows), reg.max_mobile, reg.max_env
    out = {"u": np.zeros((r, m, d)), "mask": np.zeros((r, m), bool), "sp": np.zeros((r, m), np.int64),
           "env": np.zeros((r, k, d)), "emask": np.zeros((r, k), bool), "esp": np.zeros((r, k), np.int64)}
    for q, (u, sp, e, esp) in enumerate(rows):
        out["u"][q, :len(u)] = u
        out["mask"][q, :len(u)] = True
        out["sp"][q, :len(u)] = sp
        out["env"][q, :len(e)] = e
        out["emask"][q, :len(e)] = True
        out["esp"][q, :len(e)] = esp
    return out


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, n_out))


class _Coupling(nn.Module):
    """Transforms axis ``axis`` of every mobile particle; conditioner equivariant over mobile particles."""

    def __init__(self, axis: int, dim: int, nsp: int, hidden: int, bins: int, init_scale: float) -> None:
        super().__init__()
        self.axis, self.bins = axis, bins
        self.other = [a for a in range(dim) if a != axis]
        o = len(self.other)
        self.phi_m = _mlp(2 * o + nsp, hidden, hidden)
        self.phi_e = _mlp(dim + o + 1 + nsp, hidden, hidden)
        self.head = nn.Sequential(nn.Linear(o + nsp + 2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, 3 * bins - 1))
        last = self.head[-1]
        with torch.no_grad():
            last.weight.mul_(init_scale)
            last.bias.mul_(init_scale)

    def params(self, y: torch.Tensor, mask: torch.Tensor, sp1h: torch.Tensor, env: torch.Tensor,
               emask: torch.Tensor, esp1h: torch.Tensor) -> torch.Tensor:
        b, m, _ = y.shape
        k = env.shape[1]
        yo = y[..., self.other]
        rel = yo[:, None, :, :] - yo[:, :, None, :]  # [b, i, j] = y_j - y_i (other axes)
        fm = torch.cat([rel, yo[:, None].expand(b, m, m, -1), sp1h[:, None].expand(b, m, m, -1)], dim=-1)
        pair = mask[:, None, :] & mask[:, :, None] & ~torch.eye(m, dtype=torch.bool, device=y.device)[None]
        msg_m = (self.phi_m(fm) * pair[..., None]).sum(2)
        reo = env[..., self.other][:, None, :, :] - yo[:, :, None, :]  # (b, m, k, o)
        fe = torch.cat([env[:, None].expand(b, m, k, -1), reo, (reo * reo).sum(-1, keepdim=True),
                        esp1h[:, None].expand(b, m, k, -1)], dim=-1)
        msg_e = (self.phi_e(fe) * emask[:, None, :, None]).sum(2)
        return self.head(torch.cat([yo, sp1h, 0.25 * msg_m, 0.1 * msg_e], dim=-1))

    def forward(self, y: torch.Tensor, ctx: tuple[torch.Tensor, ...], inverse: bool) -> tuple[torch.Tensor,
                                                                                              torch.Tensor]:
        mask = ctx[0]
        p = self.params(y, *ctx)
        nb = self.bins
        xa = y[..., self.axis]
        # raw derivatives offset so that zero conditioner output is the identity map (knot slopes 1)
        out, lad = unconstrained_rational_quadratic_spline(xa, p[..., :nb], p[..., nb:2 * nb], p[..., 2 * nb:] + _D0,
                                                           inverse=inverse, tails="linear", tail_bound=1.0)
        y = y.clone()
        y[..., self.axis] = torch.where(mask, out, xa)
        return y, (lad * mask).sum(-1)


class LocalFlow(nn.Module):
    """Conditional flow on (-1, 1)^{m d} for the m mobile particles of a region (see module docstring).

    Args:
        dim, nsp: dimension and number of species; n_layers: couplings (cycling over axes); hidden: width;
        bins: spline bins; init_scale: scale of the output layer at init (0: identity); seed: init seed.
    """

    def __init__(self, dim: int, nsp: int, n_layers: int = 4, hidden: int = 32, bins: int = 8,
                 init_scale: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        if dim < 2:
            raise InputError("LocalFlow needs dim >= 2 (a coupling conditions on the other axes)")
        g = torch.random.get_rng_state()
        torch.manual_seed(seed)
        self.layers = nn.ModuleList(_Coupling(q % dim, dim, nsp, hidden, bins, init_scale) for q in range(n_layers))
        torch.random.set_rng_state(g)
        self.dim, self.nsp = dim, nsp
        self.config = {"dim": dim, "nsp": nsp, "n_layers": n_layers, "hidden": hidden, "bins": bins}
        self.double()

    def _ctx(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        dt = batch["u"].dtype
        oh = nn.functional.one_hot(batch["sp"], self.nsp).to(dt)
        eoh = nn.functional.one_hot(batch["esp"], self.nsp).to(dt)
        return batch["mask"], oh, batch["env"], batch["emask"], eoh

    def forward_map(self, z: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """y = f(z), log|det df/dz| (B,) over the masked entries."""
        ctx = self._ctx(batch)
        ld = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        for layer in self.layers:
            z, l_ = layer(z, ctx, False)
            ld = ld + l_
        return z, ld

    def log_prob(self, u: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """log q(u | env) (B,) of scaled mobile offsets u (B, M, d); base U(-1, 1)^{m d}."""
        ctx = self._ctx(batch)
        ld = torch.zeros(u.shape[0], dtype=u.dtype, device=u.device)
        for layer in reversed(self.layers):
            u, l_ = layer(u, ctx, True)
            ld = ld + l_
        m = batch["mask"].sum(-1).to(u.dtype)
        return ld - m * self.dim * _LOG2

    def sample(self, batch: dict[str, torch.Tensor], gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(y (B, M, d), log q(y | env) (B,)); padded entries are 0."""
        shape = batch["mask"].shape + (self.dim,)
        z = (2.0 * torch.rand(shape, generator=gen, dtype=torch.float64) - 1.0) * batch["mask"][..., None]
        y, ld = self.forward_map(z, batch)
        m = batch["mask"].sum(-1).to(y.dtype)
        return y, -ld - m * self.dim * _LOG2

    def state(self) -> dict[str, Any]:
        return {"config": self.config, "state_dict": self.state_dict()}

    @classmethod
    def from_state(cls, st: dict[str, Any]) -> LocalFlow:
        f = cls(**st["config"])
        f.load_state_dict(st["state_dict"])
        return f


def _tensors(arrs: dict[str, np.ndarray], sl: Any = slice(None)) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(v[sl]) for k, v in arrs.items()}


def train_local_flow(flow: LocalFlow, data: dict[str, np.ndarray], steps: int = 300, batch: int = 256,
                     lr: float = 3e-3, seed: int = 0, progress: bool = False) -> list[float]:
    """Maximum likelihood (forward KL) on equilibrium regions; returns the loss per step (nats per region)."""
    n = data["u"].shape[0]
    if n < 2:
        raise InputError("no training regions (region empty or over the caps in every frame)")
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(flow.parameters(), lr=lr)
    losses = []
    with progress_bar(steps, "local flow training", progress) as advance:
        for _ in range(int(steps)):
            sel = rng.choice(n, size=min(batch, n), replace=False)
            bt = _tensors(data, sel)
            loss = -flow.log_prob(bt["u"], bt).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(flow.parameters(), 10.0)
            opt.step()
            losses.append(float(loss.detach()))
            advance(1)
    return losses


@dataclass
class LocalFlowResult:
    """Output of :meth:`LocalFlowMC.run` (times in steps = one move per chain).

    energies (S, chains) total U at ``sample_steps``; frames (F, chains, N, d) unwrapped; cpu_s: process
    time of the run; info: acceptance (empty regions count as accepted), acceptance_nonempty, mean mobile
    count, moved_per_move (particles displaced per attempted move), skipped (over-cap) and empty fractions,
    e_centre_selected / e_centre_accepted / e_particle_mean: mean pair energy of the chosen centre (all
    attempts / accepted non-empty moves, before the move) and of all particles (where the moves land).
    """

    sample_steps: np.ndarray
    energies: np.ndarray
    frame_steps: np.ndarray
    frames: np.ndarray | None
    final_positions: np.ndarray
    cpu_s: float
    info: dict[str, float] = field(default_factory=dict)


class LocalFlowMC:
    """Chains of local-flow moves (batched over chains: one flow pass per step for all of them).

    Args:
        target: the distribution (:class:`~glassgen.sampling.pgmc.PGMCTarget`; image-mode energies, so
            meant for small systems); flow: a :class:`LocalFlow`; region: :class:`LocalRegion`.
        starts: list of (positions (N, d), species (N,)) or Configurations (species are fixed).
        seed: seed of the numpy and torch generators.
        theta_select: selection coefficients (nsp, 2) / (2,) / scalar on (pair energy, coordination);
            0 = uniform centre selection.
        mh_mode: "exact", or a negative control of :data:`MH_MODES`.
    """

    def __init__(self, target: PGMCTarget, flow: LocalFlow, region: LocalRegion, starts: list[Any], seed: int = 0,
                 theta_select: float | np.ndarray = 0.0, mh_mode: str = "exact") -> None:
        from glassgen.sampling.predict_propose import FeatureScorer

        if mh_mode not in MH_MODES:
            raise InputError(f"unknown mh_mode {mh_mode!r} (choose from {', '.join(MH_MODES)})")
        region.check(target.box)
        if flow.dim != target.dim or flow.nsp != target.nsp:
            raise InputError("flow and target differ in dimension or species")
        self.target, self.flow, self.region, self.mh_mode = target, flow, region, mh_mode
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator().manual_seed(int(seed))
        ps, ss = [], []
        for st in starts:
            p, s = (st.positions, st.species) if hasattr(st, "positions") else st
            ps.append(np.asarray(p, dtype=np.float64) % target.box)
            ss.append(np.asarray(s, dtype=np.int32))
        self.pos = np.ascontiguousarray(np.stack(ps))
        self.species = np.ascontiguousarray(np.stack(ss))
        self.unwrapped = self.pos.copy()
        self.scorer = FeatureScorer(target, theta_select)
        self.biased = bool(np.any(self.scorer.theta != 0))
        self.shifts = mc_image_shifts(target.box, target.rc_max)
        self.pp = tuple(np.ascontiguousarray(a) for a in target.pp)
        self.energy = np.array([self._total(b) for b in range(self.n_chains)])
        if not np.all(np.isfinite(self.energy)):
            raise PhysicsError("non-finite initial energy (overlap)")
        self.feat = np.stack([features_of(target, self.pos[b], self.species[b]) for b in range(self.n_chains)])
        self.stats = {"tried": 0, "accepted": 0, "mobile": 0, "skipped": 0, "empty": 0, "accepted_nonempty": 0,
                      "moved": 0, "e_centre": 0.0, "e_mean": 0.0, "e_centre_accepted": 0.0}

    @property
    def n_chains(self) -> int:
        return self.pos.shape[0]

    def _total(self, b: int) -> float:
        t = self.target
        d = t.dim
        e = float(total_energy_mc(self.pos[b], self.species[b], t.box, t.nsp, *self.pp, False,
                                  np.ones(d, dtype=np.int64), np.zeros((1, 1), dtype=np.int64),
                                  np.zeros(1, dtype=np.int64), self.shifts))
        for i in range(self.pos.shape[1]):
            e += float(ext_energy(self.pos[b, i], self.species[b, i], t.ext_k, t.ext_c, t.box))
        return e

    def _scores(self, b: int, feat: np.ndarray) -> np.ndarray:
        return np.einsum("ka,ka->k", self.scorer.theta[self.species[b]], feat)

    def step(self) -> None:
        """One local-flow move of every chain."""
        t, reg = self.target, self.region
        nb, n = self.pos.shape[:2]
        rows, info = [], []
        for b in range(nb):
            if self.biased:
                s = self._scores(b, self.feat[b])
                p = np.exp(s - s.max())
                c = int(self.rng.choice(n, p=p / p.sum()))
                lp_f = log_selection(s, c)
            else:
                c, lp_f = int(self.rng.integers(n)), -math.log(n)
            mob, u, env = _region(self.pos[b], t.box, c, reg)
            self.stats["tried"] += 1
            self.stats["e_centre"] += float(self.feat[b, c, 0])  # where the moves land (pair energy of c)
            self.stats["e_mean"] += float(self.feat[b, :, 0].mean())
            self.stats["mobile"] += mob.size
            if mob.size == 0:
                self.stats["empty"] += 1
                self.stats["accepted"] += 1
                continue
            if mob.size > reg.max_mobile or env.size > reg.max_env:
                self.stats["skipped"] += 1
                continue
            e = self.pos[b, env] - self.pos[b, c]
            e -= t.box * np.round(e / t.box)
            rows.append((u, self.species[b, mob], e / reg.half_width, self.species[b, env]))
            info.append((b, c, mob, lp_f))
        if not rows:
            return
        bt = _tensors(_pad(rows, reg, t.dim))
        with torch.no_grad():
            y, lq_new = self.flow.sample(bt, self.gen)
            lq_old = self.flow.log_prob(bt["u"], bt)
        y, lq_new, lq_old = y.numpy(), lq_new.numpy(), lq_old.numpy()
        logu = np.log(self.rng.random(len(rows)))
        for q, (b, c, mob, lp_f) in enumerate(info):
            m = mob.size
            xold = self.pos[b, mob].copy()
            xnew = np.ascontiguousarray((self.pos[b, c] + reg.half_width * y[q, :m]) % t.box)
            sp = self.species[b]
            self.pos[b, mob] = xnew
            same = np.array_equal(_region(self.pos[b], t.box, c, reg)[0], mob)
            self.pos[b, mob] = xold
            if not same:  # |y| rounded onto the cube's face: the reverse move does not exist, q(x' -> x) = 0
                continue
            du = float(subset_energy(mob, xnew, self.pos[b], sp, t.box, t.nsp, self.pp, self.shifts, t.ext_k,
                                     t.ext_c) - subset_energy(mob, xold, self.pos[b], sp, t.box, t.nsp, self.pp,
                                                              self.shifts, t.ext_k, t.ext_c))
            log_alpha = -t.beta * du
            if self.mh_mode == "no_reverse_density":
                log_alpha -= float(lq_new[q])
            elif self.mh_mode == "flipped_logdet":
                log_alpha += float(lq_new[q] - lq_old[q])
            elif self.mh_mode != "no_density_ratio":
                log_alpha += float(lq_old[q] - lq_new[q])
            feat_new = None
            if self.biased:
                self.pos[b, mob] = xnew
                feat_new = features_of(t, self.pos[b], sp)
                self.pos[b, mob] = xold
                lp_r = lp_f if self.mh_mode == "stale_selection" else log_selection(self._scores(b, feat_new), c)
                log_alpha += lp_r - lp_f
            if logu[q] < log_alpha:
                self.pos[b, mob] = xnew
                self.unwrapped[b, mob] += reg.half_width * (y[q, :m] - bt["u"][q, :m].numpy())
                self.energy[b] += du
                self.stats["e_centre_accepted"] += float(self.feat[b, c, 0])
                self.feat[b] = feat_new if feat_new is not None else features_of(t, self.pos[b], sp)
                self.stats["accepted"] += 1
                self.stats["accepted_nonempty"] += 1
                self.stats["moved"] += m

    def run(self, n_steps: int, sample_every: int = 10, frame_steps: list[int] | np.ndarray | None = None,
            progress: bool = False) -> LocalFlowResult:
        """``n_steps`` moves per chain; energies every ``sample_every`` steps, unwrapped frames at ``frame_steps``."""
        wanted = set() if frame_steps is None else {int(s) for s in frame_steps}
        st, en, fs, fr = [], [], [], []
        t0 = time.process_time()
        with progress_bar(n_steps, "local flow MC", progress) as advance:
            for k in range(int(n_steps) + 1):
                if k % sample_every == 0:
                    st.append(k)
                    en.append(self.energy.copy())
                if k in wanted:
                    fs.append(k)
                    fr.append(self.unwrapped.copy())
                if k < n_steps:
                    self.step()
                    advance(1)
        cpu = time.process_time() - t0
        tr = max(self.stats["tried"], 1)
        info = {"acceptance": self.stats["accepted"] / tr, "mean_mobile": self.stats["mobile"] / tr,
                "skipped_fraction": self.stats["skipped"] / tr, "empty_fraction": self.stats["empty"] / tr,
                "acceptance_nonempty": self.stats["accepted_nonempty"] / max(tr - self.stats["empty"], 1),
                "moved_per_move": self.stats["moved"] / tr,
                "e_centre_selected": self.stats["e_centre"] / tr, "e_particle_mean": self.stats["e_mean"] / tr,
                "e_centre_accepted": self.stats["e_centre_accepted"] / max(self.stats["accepted_nonempty"], 1),
                "steps": float(n_steps), "chains": float(self.n_chains)}
        return LocalFlowResult(np.array(st), np.array(en), np.array(fs, dtype=np.int64),
                               np.stack(fr) if fr else None, self.pos.copy(), cpu, info)

    def energy_drift(self) -> float:
        """max |U tracked - U from scratch| over chains (bookkeeping check)."""
        return float(max(abs(self.energy[b] - self._total(b)) for b in range(self.n_chains)))
