"""Flow-MCMC: exactness of the IMH step against exact distributions, IMH + local MC on small KA systems."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp

from glassgen.dynamics.initial import random_state
from glassgen.errors import InputError, PhysicsError
from glassgen.flows.weights import gaussian_log_weight_theory
from glassgen.sampling import FlowMCMC, FlowMCMCResult, Proposal, model_energy, pooled_autocorrelation_time
from glassgen.systems.configuration import Configuration
from glassgen.systems.model import load_model


def _wrapped_normal_logpdf(d: np.ndarray, sigma: float, L: float, images: int = 3) -> np.ndarray:
    """log of sum_k N(d + k L; 0, sigma^2): the density of a normal displacement on a circle of length L."""
    y = d[..., None] + np.arange(-images, images + 1) * L
    return logsumexp(-0.5 * (y / sigma) ** 2, axis=-1) - math.log(sigma * math.sqrt(2 * math.pi))


def _chi2_pvalue(counts: np.ndarray, probs: np.ndarray) -> float:
    expected = probs / probs.sum() * counts.sum()
    keep = expected > 5
    chi2 = float((((counts - expected) ** 2 / expected)[keep]).sum())
    return float(stats.chi2.sf(chi2, keep.sum() - 1))


class GaussianParticle:
    """One particle in a periodic box: x = centre + sigma z (wrapped normal, exact density on the torus)."""

    def __init__(self, centre: np.ndarray, sigma: float, box: np.ndarray, seed: int) -> None:
        self.centre, self.sigma, self.box = np.asarray(centre, float), sigma, np.asarray(box, float)
        self.rng = np.random.default_rng(seed)
        self.calls = {"sample": 0, "log_prob": 0}

    def _lq(self, x: np.ndarray) -> np.ndarray:
        d = x[:, 0, :] - self.centre
        return np.sum([_wrapped_normal_logpdf(d[:, k], self.sigma, self.box[k]) for k in range(d.shape[1])], axis=0)

    def sample(self, n: int, T: float) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls["sample"] += 1
        x = self.centre + self.sigma * self.rng.normal(size=(n, 1, self.box.size))  # unwrapped
        return torch.from_numpy(x), torch.from_numpy(self._lq(x))

    def log_prob(self, x: torch.Tensor, T: float) -> torch.Tensor:
        self.calls["log_prob"] += 1
        return torch.from_numpy(self._lq(x.numpy()))


class Uniform:
    """Uniform positions in the box: log q = -N log V (a constant)."""

    def __init__(self, n: int, box: np.ndarray, seed: int) -> None:
        self.n, self.box = n, np.asarray(box, float)
        self.rng = np.random.default_rng(seed)
        self.lq = -n * float(np.log(self.box).sum())

    def sample(self, n: int, T: float) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.rng.random((n, self.n, self.box.size)) * self.box
        return torch.from_numpy(x), torch.full((n,), self.lq, dtype=torch.float64)

    def log_prob(self, x: torch.Tensor, T: float) -> torch.Tensor:
        return torch.full((x.shape[0],), self.lq, dtype=torch.float64)


class PairProposal:
    """Two particles in a cube: x0 uniform, x1 = x0 + sigma z (wrapped); exact torus density."""

    def __init__(self, L: float, sigma: float, seed: int) -> None:
        self.L, self.sigma = L, sigma
        self.rng = np.random.default_rng(seed)

    def _lq(self, x: np.ndarray) -> np.ndarray:
        d = x[:, 1] - x[:, 0]
        d -= self.L * np.round(d / self.L)
        return _wrapped_normal_logpdf(d, self.sigma, self.L).sum(-1) - 3 * math.log(self.L)

    def sample(self, n: int, T: float) -> tuple[torch.Tensor, torch.Tensor]:
        x0 = self.rng.random((n, 3)) * self.L
        x = np.stack([x0, x0 + self.sigma * self.rng.normal(size=(n, 3))], 1)
        return torch.from_numpy(x), torch.from_numpy(self._lq(x))

    def log_prob(self, x: torch.Tensor, T: float) -> torch.Tensor:
        return torch.from_numpy(self._lq(x.numpy()))


# ---------------------------------------------------------------- toy: one particle in a harmonic well
L_TOY, CENTRE = 10.0, np.array([5.0, 5.0])


def _harmonic(x: np.ndarray) -> np.ndarray:
    """U = |x - c|^2 / 2 with the minimum image (B, 1, 2) -> (B,)."""
    d = x[:, 0, :] - CENTRE
    d -= L_TOY * np.round(d / L_TOY)
    return 0.5 * np.sum(d * d, axis=-1)


def _toy_conf() -> Configuration:
    return Configuration(np.array([[1.0, 9.0]]), np.array([0]), np.full(2, L_TOY))


def _marginal_probs(edges: np.ndarray, log_dens) -> np.ndarray:
    xx = np.linspace(0.0, L_TOY, 200001)
    dens = np.exp(log_dens(xx))
    cum = np.concatenate([[0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(xx))])
    p = np.diff(np.interp(edges, xx, cum))
    return p / p.sum()


def test_imh_samples_the_exact_distribution_with_a_wrong_proposal():
    """IMH alone (local_sweeps=0) with a shifted, too wide Gaussian proposal: the 2D histogram of the
    chains matches exp(-U/T) exactly, and is rejected against the two laws a wrong acceptance rule gives."""
    T, shift, sig_q = 1.0, 0.8, 1.5
    prop = GaussianParticle(CENTRE + shift, sig_q, np.full(2, L_TOY), seed=3)
    fm = FlowMCMC(prop, _toy_conf(), T, 2000, local_sweeps=0, seed=4, energy=_harmonic)
    res = fm.run(300, progress=False, store_every=25, overlap_every=0)
    x = res.frames[2:].reshape(-1, 2)  # iterations 75 .. 300, far apart compared with the IMH decorrelation
    edges = np.linspace(0.0, L_TOY, 21)
    counts, _, _ = np.histogram2d(x[:, 0], x[:, 1], [edges, edges])

    def law(log_1d):
        p = _marginal_probs(edges, log_1d)
        return np.outer(p, p).ravel()

    def target(xx):
        return -0.5 * (xx - 5.0) ** 2 / T

    def proposal(xx):
        return _wrapped_normal_logpdf(xx - 5.0 - shift, sig_q, L_TOY)

    assert _chi2_pvalue(counts.ravel(), law(target)) > 1e-3
    # power: "accept everything" samples q; "forget log q in the ratio" samples p q
    assert _chi2_pvalue(counts.ravel(), law(proposal)) < 1e-10
    assert _chi2_pvalue(counts.ravel(), law(lambda xx: target(xx) + proposal(xx))) < 1e-10
    assert res.energies.shape == (300, 2000) and res.energies.dtype == np.float64
    assert np.isnan(res.local_acceptance)
    assert 0.3 < res.imh_acceptance < 0.9


def test_imh_acceptance_matches_gaussian_log_weight_theory():
    """Target N(c, T) per axis, proposal N(c + mu, T): log w is exactly Gaussian with s2 = d mu^2 / T and
    the stationary IMH acceptance is 2 Phi(-sqrt(s2 / 2))."""
    T, mu = 1.0, 1.0
    prop = GaussianParticle(CENTRE + mu, math.sqrt(T), np.full(2, L_TOY), seed=5)
    fm = FlowMCMC(prop, _toy_conf(), T, 1000, local_sweeps=0, seed=6, energy=_harmonic)
    fm.run(50, progress=False)  # burn-in
    res = fm.run(200, progress=False, overlap_every=0)
    theory = gaussian_log_weight_theory(2 * mu**2 / T)["imh_acceptance"]
    se = res.imh_acceptance_per_chain.std(ddof=1) / math.sqrt(1000)  # chains are independent
    assert se < 0.003
    assert abs(res.imh_acceptance - theory) < 4 * se
    assert abs(res.imh_acceptance - gaussian_log_weight_theory(2 * 0.9**2 / T)["imh_acceptance"]) > 10 * se
    assert res.imh_acceptance == pytest.approx(res.imh_acceptance_per_chain.mean(), rel=1e-12)
    # pure IMH: log q of the current state is carried from the accepted proposal, never recomputed
    assert prop.calls["log_prob"] == 1


def _ka_aa_pair(x: np.ndarray) -> np.ndarray:
    """Vectorised KA A-A energy of two particles in a cube of side 6 > 2 r_c (one image), (B, 2, 3) -> (B,)."""
    d = x[:, 1] - x[:, 0]
    d -= 6.0 * np.round(d / 6.0)
    r2 = np.sum(d * d, axis=-1)
    with np.errstate(divide="ignore"):
        s6 = r2**-3.0
    return np.where(r2 < 6.25, 4.0 * (s6 * s6 - s6) - 4.0 * (2.5**-12 - 2.5**-6), 0.0)


class _StaleLogQ(FlowMCMC):
    """A deliberately wrong sampler: keeps log q of the state before the local moves."""

    def local_step(self) -> None:
        stale = None if self.log_q is None else self.log_q.copy()
        super().local_step()
        self.log_q = stale


def _pair_pvalues(cls: type[FlowMCMC]) -> tuple[float, FlowMCMC, FlowMCMCResult]:
    model = load_model("ka3d")
    L, T = 6.0, 1.5
    conf = Configuration(np.array([[1.0, 1.0, 1.0], [2.5, 1.0, 1.0]]), np.array([0, 0]), np.full(3, L), model)
    fm = cls(PairProposal(L, 1.0, seed=1), conf, T, 200, local_sweeps=1, delta=0.6, seed=1, energy=_ka_aa_pair)
    res = fm.run(160, progress=False, store_every=8, overlap_every=0)
    f = res.frames[3:]  # iterations 32 .. 160 every 8
    d = f[:, :, 1] - f[:, :, 0]
    d -= L * np.round(d / L)
    rs = np.linalg.norm(d, axis=-1).ravel()
    rs = rs[rs < L / 2]
    edges = np.linspace(0.8, L / 2, 30)
    counts, _ = np.histogram(rs, edges)
    rr = np.linspace(0.8, L / 2, 20001)
    pair = np.stack([np.zeros((rr.size, 3)), np.outer(rr, [1.0, 0.0, 0.0])], axis=1)
    u = _ka_aa_pair(pair)
    exact = model_energy(model, np.array([0, 0]), np.full(3, L))(pair[::20])
    assert np.allclose(exact, u[::20], rtol=1e-12, atol=1e-12)

    def probs(dens: np.ndarray) -> np.ndarray:
        cum = np.concatenate([[0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(rr))])
        return np.diff(np.interp(edges, rr, cum))

    return _chi2_pvalue(counts, probs(rr**2 * np.exp(-u / T))), fm, res


def test_imh_plus_local_moves_two_ka_particles_radial_distribution():
    """Two A particles (KA 3D, L = 6, T = 1.5), a Gaussian pair proposal and local moves: p(r) ~ r^2
    exp(-v(r)/T) for r < L/2. The same check rejects a sampler that does not recompute log q of the
    current states after the local moves. (A vectorised pair energy keeps the test fast; every accepted
    proposal is checked against the MC kernel's energy.)"""
    p_ok, fm, res = _pair_pvalues(FlowMCMC)
    assert p_ok > 1e-3
    assert 0.1 < res.imh_acceptance < 0.6 and res.local_acceptance > 0.5
    for mc in fm.chains:
        assert mc.energy == pytest.approx(mc.recompute_energy(), rel=1e-9, abs=1e-9)
    p_stale, _, _ = _pair_pvalues(_StaleLogQ)
    assert p_stale < 1e-6


# ---------------------------------------------------------------- KA N=8: IMH + local MC vs local MC
@functools.lru_cache(maxsize=1)
def _ka8() -> Configuration:
    """KA 3D, N = 8 at density 0.1 (L = 4.3), overlaps removed (configurations are immutable: cached)."""
    return random_state("ka3d", 8, density=0.1, seed=1)


def _check_bookkeeping(fm: FlowMCMC, res: FlowMCMCResult) -> None:
    u_model = model_energy(fm.model, fm.species, fm.box)(res.final_positions)
    assert np.allclose(res.energies[-1], u_model, rtol=1e-9, atol=1e-9)
    assert np.array_equal(fm.u, res.energies[-1])
    for k, mc in enumerate(fm.chains):
        assert mc.energy == pytest.approx(mc.recompute_energy(), rel=1e-9, abs=1e-9)
        assert mc.energy == pytest.approx(u_model[k], rel=1e-9, abs=1e-9)
        assert np.array_equal(mc.pos, res.final_positions[k])


def _chain_mean(res: FlowMCMCResult, burn: int) -> tuple[float, float]:
    """Mean U and its error from the spread of the (independent) chain means."""
    m = res.energies[burn:].mean(axis=0)
    return float(m.mean()), float(m.std(ddof=1) / math.sqrt(m.size))


def _compare_with_local_mc(n_flow: int, n_local: int, n_chains: int) -> None:
    conf, T = _ka8(), 3.0
    fm = FlowMCMC(Uniform(8, conf.box, seed=2), conf, T, n_chains, local_sweeps=1, delta=0.5, seed=3)
    res = fm.run(n_flow, progress=False)
    _check_bookkeeping(fm, res)
    assert 0.1 < res.imh_acceptance < 0.6
    base = FlowMCMC(None, conf, T, n_chains, local_sweeps=1, delta=0.5, seed=4)
    res0 = base.run(n_local, progress=False)
    _check_bookkeeping(base, res0)
    assert np.isnan(res0.imh_acceptance) and np.all(np.isnan(res0.imh_acceptance_per_chain))
    (m1, e1), (m0, e0) = _chain_mean(res, n_flow // 10), _chain_mean(res0, n_local // 10)
    assert abs(m1 - m0) < 4 * math.hypot(e1, e0)
    assert math.hypot(e1, e0) < 0.1  # about 3 % of |U|: the comparison is not vacuous
    # the flow proposals decorrelate U and Q faster than local moves alone
    assert res.tau_u < res0.tau_u and res.tau_q < res0.tau_q


def test_ka_imh_plus_local_agrees_with_local_mc_fast():
    _compare_with_local_mc(n_flow=500, n_local=1000, n_chains=16)


@pytest.mark.slow
def test_ka_imh_plus_local_agrees_with_local_mc_long():
    _compare_with_local_mc(n_flow=5000, n_local=10000, n_chains=32)


def test_pure_imh_on_ka_and_result_shapes():
    conf = _ka8()
    fm = FlowMCMC(Uniform(8, conf.box, seed=5), conf, 3.0, 6, local_sweeps=0, seed=6)
    assert fm.chains == []
    res = fm.run(40, progress=False, store_every=10, overlap_every=2)
    assert res.energies.shape == (40, 6) and res.energies.dtype == np.float64
    assert res.final_positions.shape == (6, 8, 3) and res.final_positions.dtype == np.float64
    assert np.all((res.final_positions >= 0) & (res.final_positions < conf.box))
    assert res.frames.shape == (4, 6, 8, 3) and res.frame_iterations.tolist() == [10, 20, 30, 40]
    assert np.array_equal(res.frames[-1], res.final_positions)
    assert res.imh_acceptance_per_chain.shape == (6,) and res.tau_u_per_chain.shape == (6,)
    assert res.imh_acceptance == pytest.approx(float(np.mean(res.imh_acceptance_per_chain)))
    assert np.all(np.isnan(res.local_acceptance_per_chain))
    assert res.overlap is not None and res.overlap.q[0] == 1.0 and math.isfinite(res.tau_q)
    assert np.allclose(res.energies[-1], model_energy(fm.model, fm.species, fm.box)(res.final_positions))
    assert fm.iterations == 40
    with pytest.raises(AttributeError):
        res.T = 1.0  # type: ignore[misc]
    # a chain whose energy never changed has an infinite autocorrelation time
    col = np.ones((50, 2))
    col[:, 1] = np.random.default_rng(0).normal(size=50)
    assert pooled_autocorrelation_time(col) > 0 and pooled_autocorrelation_time(np.ones((50, 2))) == math.inf


def test_pool_proposals_are_drawn_with_replacement_for_imh():
    """A Boltzmann-prior pool base draws with replacement while flow-MCMC samples its proposals (draws without
    replacement depend on the past, which biases independence MH by O(1/pool)), and without replacement
    otherwise (a pass over the pool uses each configuration once)."""
    from glassgen.flows.base import BoltzmannPriorBase

    conf = _ka8()
    pool = torch.as_tensor(np.random.default_rng(0).random((3, 7, 3)))
    base = BoltzmannPriorBase(pool, 2.0, lambda r: torch.zeros(r.shape[0], dtype=torch.float64))
    assert sorted(base._draw(0, 3, None).tolist()) == [0, 1, 2]  # one pass: each once
    base.with_replacement = True
    counts = np.bincount(base._draw(0, 3000, torch.Generator().manual_seed(1)).numpy(), minlength=3)
    assert counts.min() > 900  # uniform with replacement
    base.with_replacement = False

    seen = []
    inner = Uniform(8, conf.box, seed=2)

    class PoolProposal:
        flow = type("F", (), {"q0": base})()

        def sample(self, n, T):
            seen.append(base.with_replacement)
            return inner.sample(n, T)

        def log_prob(self, x, T):
            return inner.log_prob(x, T)

    FlowMCMC(PoolProposal(), conf, 3.0, 2, local_sweeps=0, seed=1).run(3, progress=False)
    assert seen and all(seen) and base.with_replacement is False


def test_several_starting_configurations_and_protocol():
    c0 = _ka8()
    confs = [c0.replace(positions=c0.positions + 0.37 * s) for s in range(3)]  # translated copies
    assert isinstance(Uniform(8, confs[0].box, 0), Proposal)
    fm = FlowMCMC(Uniform(8, confs[0].box, seed=0), confs, 3.0, 3, local_sweeps=2, seed=0)
    assert np.array_equal(fm.pos[1], confs[1].wrapped_positions())
    res = fm.run(5, progress=False, overlap_every=0)
    assert res.overlap is None and math.isnan(res.tau_q)
    assert res.local_acceptance_per_chain.shape == (3,) and 0 < res.local_acceptance <= 1


def test_starts_in_another_particle_order_are_relabelled_to_the_proposal_species():
    """Swap MC leaves each chain's species in its own particle order: FlowMCMC reorders the particles of each
    start to the proposal's species array (particles of one species are indistinguishable: same energy)."""
    c0 = _ka8()
    rng = np.random.default_rng(4)
    perms = [rng.permutation(8) for _ in range(2)]
    confs = [c0.replace(positions=c0.positions[p], species=c0.species[p].copy()) for p in perms]
    assert not np.array_equal(confs[0].species, confs[1].species)
    u0 = model_energy(c0.model, c0.species, c0.box)(c0.wrapped_positions()[None])[0]

    class WithSystem(Uniform):
        class system:  # noqa: N801  (the BoltzmannGenerator attribute FlowMCMC reads)
            @staticmethod
            def species_array():
                return c0.species

    for proposal, target in ((WithSystem(8, c0.box, 0), c0.species), (Uniform(8, c0.box, 0), confs[0].species)):
        fm = FlowMCMC(proposal, confs, 1.0, 2, local_sweeps=1, seed=2)
        assert np.array_equal(fm.species, target)
        assert np.allclose(fm.u, u0, rtol=1e-12)  # the same configuration, relabelled
        for k in range(2):  # each chain holds, per species, the same set of positions as its start
            for sp in (0, 1):
                a = fm.pos[k][fm.species == sp]
                b = confs[k].wrapped_positions()[confs[k].species == sp]
                assert np.array_equal(a[np.lexsort(a.T)], b[np.lexsort(b.T)])
        _check_bookkeeping(fm, fm.run(3, progress=False, overlap_every=0))
    bad = type("Bad", (Uniform,), {"system": type("S", (), {"species_array": staticmethod(lambda: np.zeros(8, int))})})
    with pytest.raises(InputError, match="species counts"):
        FlowMCMC(bad(8, c0.box, 0), confs, 1.0, 2)


def test_bad_input_raises():
    conf = _ka8()
    u = Uniform(8, conf.box, 0)
    for T in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(InputError):
            FlowMCMC(u, conf, T, 2)
    with pytest.raises(InputError):
        FlowMCMC(u, conf, 1.0, 0)
    with pytest.raises(InputError):
        FlowMCMC(u, conf, 1.0, 2, local_sweeps=-1)
    with pytest.raises(InputError):
        FlowMCMC(None, conf, 1.0, 2, local_sweeps=0)
    with pytest.raises(InputError):
        FlowMCMC(object(), conf, 1.0, 2)  # type: ignore[arg-type]
    with pytest.raises(InputError):  # wrong number of configurations
        FlowMCMC(u, [conf, conf], 1.0, 3)
    with pytest.raises(InputError, match="species counts"):  # another composition
        FlowMCMC(u, [conf, conf.replace(species=np.zeros_like(conf.species))], 1.0, 2)
    with pytest.raises(InputError):  # energy function inconsistent with the local moves' model
        FlowMCMC(u, conf, 1.0, 2, energy=lambda x: np.zeros(x.shape[0]))
    with pytest.raises(InputError):  # energy of the wrong shape
        FlowMCMC(u, conf, 1.0, 2, local_sweeps=0, energy=lambda x: np.zeros(3))
    with pytest.raises(InputError):  # no model and no energy
        FlowMCMC(u, conf.replace(model=None), 1.0, 2, local_sweeps=0)
    fm = FlowMCMC(Uniform(7, conf.box, 0), conf, 1.0, 2, local_sweeps=0)
    with pytest.raises(InputError):  # proposal returns configurations of the wrong shape
        fm.run(1, progress=False)
    fm = FlowMCMC(u, conf, 1.0, 2)
    with pytest.raises(InputError):
        fm.run(0, progress=False)
    with pytest.raises(InputError):
        fm.run(2, progress=False, store_every=-1)
    overlapping = conf.replace(positions=np.concatenate([conf.positions[:1], conf.positions[:7]]))
    with pytest.raises((InputError, PhysicsError)):
        FlowMCMC(u, overlapping, 1.0, 2)
    with pytest.raises(InputError):
        FlowMCMC(u, overlapping, 1.0, 2, local_sweeps=0)
