"""The particle flow: invertibility, exact log-determinants, float64, symmetries, checkpoints, exactness."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from glassgen.errors import InputError
from glassgen.flows.generator import BoltzmannGenerator
from glassgen.flows.layers import fold
from glassgen.flows.model import FlowArchitecture, FlowSystem, ParticleFlow, beta_context, to_full, to_relative

SMALL = FlowArchitecture(n_blocks=2, width=16, n_layers=1, ff_width=32, n_bins=8)


def _randomise(flow: ParticleFlow, std: float, seed: int = 0, shifts: bool = True) -> ParticleFlow:
    """Give every zero-initialised head random weights, so the flow is far from the identity (and, with
    ``shifts``, random circular shifts: the moving particles translated against the pinned one)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in flow.modules():
            if hasattr(m, "head"):
                m.head.weight.copy_(torch.randn(m.head.weight.shape, generator=g, dtype=torch.float64) * std)
                m.head.bias.copy_(torch.randn(m.head.bias.shape, generator=g, dtype=torch.float64) * std)
            if shifts and hasattr(m, "shift"):
                m.shift.copy_(torch.rand(m.shift.shape, generator=g, dtype=torch.float64))
    return flow


@pytest.fixture(params=[("ka3d", 8), ("ka2d", 7)], ids=["ka3d-N8", "ka2d-N7"])
def flow(request) -> ParticleFlow:
    torch.manual_seed(1)
    model, n = request.param
    return _randomise(ParticleFlow(FlowSystem.create(model, n), SMALL), std=0.05)


def test_identity_at_initialisation():
    f = ParticleFlow(FlowSystem.create("ka3d", 8), SMALL)
    r = (torch.rand(5, 7, 3, dtype=torch.float64) - 0.5) * f.box
    y, ld = f.forward_and_log_det(r, beta_context(0.5, 5))
    assert torch.allclose(y, r, atol=1e-12, rtol=0)
    assert torch.all(ld.abs() < 1e-12)


def test_roundtrip_and_float64(flow):
    ctx = beta_context(0.7, 6)
    r, lq = flow.sample(6, ctx)
    assert r.dtype == torch.float64 and lq.dtype == torch.float64
    z, ld_inv = flow.inverse_and_log_det(r, ctx)
    r2, ld = flow.forward_and_log_det(z, ctx)
    assert ld.dtype == torch.float64 and ld_inv.dtype == torch.float64
    assert fold(r2 - r, flow.box).abs().max() < 1e-12
    assert (ld + ld_inv).abs().max() < 1e-10
    assert (flow.log_prob(r, ctx) - lq).abs().max() < 1e-10
    assert ld.abs().max() > 1e-2  # the randomised flow is not the identity


def test_log_det_equals_autograd_jacobian(flow):
    ctx = beta_context(0.5, 1)
    m, d = flow.system.n - 1, flow.system.dim
    z = (torch.rand(1, m, d, dtype=torch.float64) - 0.5) * flow.box * 0.98

    def fn(v: torch.Tensor) -> torch.Tensor:
        return flow.forward_and_log_det(v.reshape(1, m, d), ctx)[0].reshape(-1)

    jac = torch.autograd.functional.jacobian(fn, z.reshape(-1))
    sign, logabs = torch.linalg.slogdet(jac)
    _, ld = flow.forward_and_log_det(z, ctx)
    assert abs(float(logabs) - float(ld.detach())) < 1e-9


def test_permutation_and_translation_invariance(flow):
    """log q of full configurations: same-species permutations (pinned particle fixed), translations."""
    gen = BoltzmannGenerator(flow)
    x, lq = gen.sample(4, 0.6)
    species = np.asarray(flow.system.species)
    perm = np.arange(flow.system.n)
    for s in np.unique(species):
        idx = np.flatnonzero(species == s)
        idx = idx[idx != 0]
        perm[idx] = np.roll(idx, 1)
    assert not np.all(perm == np.arange(flow.system.n))
    lp = gen.log_prob(x, 0.6)
    assert (lp - lq).abs().max() < 1e-10
    assert (gen.log_prob(x[:, perm], 0.6) - lp).abs().max() < 1e-10
    shift = torch.as_tensor([0.37, -1.91, 5.3][: flow.system.dim], dtype=torch.float64)
    assert (gen.log_prob(x + shift, 0.6) - lp).abs().max() < 1e-10
    images = torch.as_tensor(np.random.default_rng(3).integers(-3, 4, x.shape), dtype=torch.float64) * flow.box
    assert (gen.log_prob(x + images, 0.6) - lp).abs().max() < 1e-10  # unwrapped input is folded, never zeroed


def test_normflows_float32_pitfall_is_avoided():
    """normflows' own accumulators are float32; ours must agree with a float64 sum to 1e-12."""
    f = _randomise(ParticleFlow(FlowSystem.create("ka3d", 8), SMALL), std=0.05)
    ctx = beta_context(0.5, 3)
    z, _ = f.q0(3)
    ref = torch.zeros(3, dtype=torch.float64)
    y = z
    for layer in f.flows:
        y, ld = layer(y, context=ctx)
        ref = ref + ld
    _, ours = f.forward_and_log_det(z, ctx)
    assert ours.dtype == torch.float64
    assert (ours - ref).abs().max() < 1e-12


def test_checkpoint_roundtrip(tmp_path):
    gen = BoltzmannGenerator.create("ka2d", 7, SMALL)
    _randomise(gen.flow, 0.05)
    gen.T_range = (0.4, 2.0)
    path = gen.save(tmp_path / "f.pt")
    gen2 = BoltzmannGenerator.load(path)
    x, lq = gen.sample(5, 0.5)
    assert torch.equal(gen2.log_prob(x, 0.5), gen.log_prob(x, 0.5))
    with pytest.raises(InputError, match="outside the trained range"):
        gen2.sample(2, 0.1)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read"):
        BoltzmannGenerator.load(tmp_path / "bad.pt")
    with pytest.raises(InputError, match="not found"):
        BoltzmannGenerator.load(tmp_path / "missing.pt")


def test_relative_coordinates_roundtrip():
    box = torch.as_tensor([3.0, 4.0], dtype=torch.float64)
    x = torch.rand(3, 5, 2, dtype=torch.float64) * box
    r = to_relative(x, box)
    assert torch.all(r >= -box / 2) and torch.all(r < box / 2)
    back = to_full(r, x[:, 0, :], box)
    assert (fold(back - x, box)).abs().max() < 1e-13


def _exact_reference(n: int, density: float, T: float) -> tuple[float, float]:
    """(<U>, 0): the exact canonical mean energy of KA2D's three particles (one A, B, C) by quadrature
    (tests/exact_three_body.py; Metropolis MC reproduces it, tests/test_mc.py). These tests used a 60 000-sweep
    MC chain before, whose error bar was ~25% too small (12 seeds: spread 0.013 against 0.010 claimed at T = 0.7)."""
    from exact_three_body import exact_mean_energy

    assert n == 3
    return exact_mean_energy("ka2d", density, T), 0.0


def test_reweighting_is_exact_on_a_small_system():
    """Self-normalised importance sampling with a deliberately imperfect flow recovers the exact <U> (quadrature);
    the same samples weighted without the flow's log-determinant do not (the test can fail)."""
    from glassgen.flows.weights import reweighted_mean

    T, density, n = 1.0, 0.3, 3
    torch.manual_seed(0)
    system = FlowSystem.create("ka2d", n, density=density)
    flow = _randomise(ParticleFlow(system, SMALL), std=0.1, seed=2)
    gen = BoltzmannGenerator(flow)
    x, lq = gen.sample(40000, T)
    u = gen.energies(x)
    lw = gen.log_weights(u, lq, T)
    finite = np.isfinite(u)
    est, err = reweighted_mean(np.where(finite, u, 0.0), lw)
    ref, ref_err = _exact_reference(n, density, T)
    z = (est - ref) / math.hypot(err, ref_err)
    assert abs(z) < 4.0, (est, err, ref, ref_err)
    # negative control: drop the log-determinant (treat the flow samples as uniform)
    lw_bad = gen.log_weights(u, np.full_like(lw, -n * math.log(float(np.prod(system.box_array())))), T)
    bad, bad_err = reweighted_mean(np.where(finite, u, 0.0), lw_bad)
    assert abs(bad - ref) / math.hypot(bad_err, ref_err) > 8.0, (bad, bad_err, ref)


def _mc_pool(model: str, n: int, density: float, T: float, count: int, every: int, seed: int) -> np.ndarray:
    from glassgen.dynamics.mc import MonteCarlo
    from glassgen.systems.configuration import random_configuration

    mc = MonteCarlo(random_configuration(model, n, density=density, seed=seed), T=T, delta=0.3, seed=seed)
    mc.sweep(500)
    out = np.empty((count, n, mc.dim))
    for k in range(count):
        mc.sweep(every)
        out[k] = mc.pos
    return out


def test_fold_stays_inside_the_centred_box():
    """Coordinates one ulp below L/2 (or -L/2 exactly) fold into [-L/2, L/2): round-off once put them one
    ulp below -L/2, outside the splines' range (an index error in the spline)."""
    box = torch.tensor([3.0, 4.0, 15.05658], dtype=torch.float64)
    below = torch.tensor([math.nextafter(float(h), 0.0) for h in box / 2], dtype=torch.float64)
    for r in (below, -box / 2, box / 2, below + 7 * box, -below - 3 * box):
        f = fold(r, box)
        assert bool(((f >= -box / 2) & (f < box / 2)).all()), (r, f)
        d = torch.remainder(f - r, box)  # the same point of the torus, to round-off
        assert bool((torch.minimum(d, box - d) < 1e-12).all()), (r, f)


def test_boltzmann_prior_base_reweights_exactly(tmp_path):
    """High-T prior: log q(x) = -U(z)/T_h - log|det J| (up to log Z_h); reweighting pool samples from
    T_h = 2 to T = 1 through a non-trivial flow recovers the exact <U> at T = 1; the pool survives a checkpoint."""
    from glassgen.flows.weights import reweighted_mean

    n, density, T_h, T = 3, 0.3, 2.0, 1.0
    pool = _mc_pool("ka2d", n, density, T_h, 6000, 4, seed=1)
    arch = FlowArchitecture(n_blocks=1, width=16, n_layers=1, ff_width=16, n_bins=8, base="boltzmann",
                            T_prior=T_h)
    torch.manual_seed(0)  # the conditioner's initial weights (a run-to-run varying flow made this test flaky)
    gen = BoltzmannGenerator.create("ka2d", n, arch, density=density, prior_pool=pool)
    # no random circular shifts: they push the moving particles onto the pinned one, so rare high-energy
    # pool states land on low-energy x with weights ~ exp(+U(z)/T_h): an infinite-variance estimator whose
    # finite-sample bias (measured: 2-5 sigma, shrinking with the pool size) is not a density error
    _randomise(gen.flow, std=0.03, seed=4, shifts=False)
    x, lq = gen.sample(6000, T)
    assert (gen.log_prob(x, T) - lq).abs().max() < 1e-9  # density through the inverse and the base energy
    u = gen.energies(x)
    lw = gen.log_weights(u, lq, T)
    ok = np.isfinite(lw)
    est, err = reweighted_mean(u[ok], lw[ok])
    ref, ref_err = _exact_reference(n, density, T)
    assert abs(est - ref) / math.hypot(err, ref_err) < 4.0, (est, err, ref, ref_err)
    # negative control: the unweighted flow samples (T_h statistics) are far from <U>_T
    raw = float(np.mean(u[ok]))
    assert abs(raw - ref) / math.hypot(float(np.std(u[ok])) / math.sqrt(ok.sum()), ref_err) > 8.0, (raw, ref)
    gen2 = BoltzmannGenerator.load(gen.save(tmp_path / "prior.pt"))
    assert (gen2.log_prob(x[:50], T) - lq[:50]).abs().max() < 1e-9
    # the omitted constant is exactly log Z_h: through the identity map at T = T_h, log q = -U/T_h, so every
    # log weight is 0 and log Z = log(Z_T / Z_h) = 0 (log V too high before the base's log V term)
    ident = BoltzmannGenerator.create("ka2d", n, arch, density=density, prior_pool=pool)
    xi, lqi = ident.sample(200, T_h)
    lwi = ident.log_weights(ident.energies(xi), lqi, T_h)
    assert np.abs(lwi).max() < 1e-9, np.abs(lwi).max()


def test_ladder_of_prior_pools_serves_each_T_from_a_hotter_pool(tmp_path):
    """Pools at T_h = 1.5 and 3: target T = 1 draws from the 1.5 pool, T = 1.5 and 2 from the 3 pool (never
    the pool of the target temperature itself), T = 4 from the hottest; densities are consistent through
    the inverse for a mixed-temperature batch; reweighting the 1.5 pool to T = 1 recovers MC's <U>; the
    pools survive a checkpoint."""
    from glassgen.flows.weights import reweighted_mean

    n, density = 3, 0.3
    pools = {1.5: _mc_pool("ka2d", n, density, 1.5, 6000, 4, seed=1), 3.0: _mc_pool("ka2d", n, density, 3.0, 200, 4,
                                                                                       seed=2)}
    arch = FlowArchitecture(n_blocks=1, width=16, n_layers=1, ff_width=16, n_bins=8, base="boltzmann",
                            T_priors=(3.0, 1.5))
    assert arch.prior_temperatures == (1.5, 3.0)
    torch.manual_seed(0)
    gen = BoltzmannGenerator.create("ka2d", n, arch, density=density, prior_pool=pools)
    base = gen.flow.q0
    assert [base.prior_temperature(t) for t in (1.0, 1.4999, 1.5, 2.0, 3.0, 4.0)] == [1.5, 1.5, 3.0, 3.0, 3.0, 3.0]
    _randomise(gen.flow, std=0.03, seed=4, shifts=False)  # see test_boltzmann_prior_base_reweights_exactly
    temps = torch.tensor([1.0, 2.0] * 200, dtype=torch.float64)
    z, lq0 = base(400, context=beta_context(temps))
    u0 = base.energy(z)
    lv = base.log_volume  # log V of the box: the base leaves out log Z_h only
    assert lv == pytest.approx(float(np.log(gen.system.box_array()).sum()))
    assert torch.allclose(lq0[0::2], -u0[0::2] / 1.5 + lv) and torch.allclose(lq0[1::2], -u0[1::2] / 3.0 + lv)
    # a pass over a pool uses every configuration once (draws without replacement)
    z_all, _ = base(200, context=beta_context(2.0, 200))
    assert torch.unique(z_all.reshape(200, -1), dim=0).shape[0] == 200
    assert torch.equal(torch.sort(base.pool_energies[1]).values, torch.sort(base.energy(z_all)).values)
    r, lq = gen.flow.sample(400, beta_context(temps))
    assert (gen.flow.log_prob(r, beta_context(temps)) - lq).abs().max() < 1e-9
    x, lq = gen.sample(6000, 1.0)
    u = gen.energies(x)
    lw = gen.log_weights(u, lq, 1.0)
    ok = np.isfinite(lw)
    est, err = reweighted_mean(u[ok], lw[ok])
    ref, ref_err = _exact_reference(n, density, 1.0)
    assert abs(est - ref) / math.hypot(err, ref_err) < 4.0, (est, err, ref, ref_err)
    gen2 = BoltzmannGenerator.load(gen.save(tmp_path / "ladder.pt"))
    assert gen2.flow.q0.T_priors == (1.5, 3.0)
    assert (gen2.log_prob(x[:50], 1.0) - lq[:50]).abs().max() < 1e-9
    with pytest.raises(InputError, match="do not match"):
        BoltzmannGenerator.create("ka2d", n, arch, density=density, prior_pool={1.5: pools[1.5]})
