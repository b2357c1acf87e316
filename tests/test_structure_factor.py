"""Static structure factor against exact results: ideal gas, a perfect lattice, one species vs several, the
KA 3D main peak on the shipped T = 0.44 configurations."""

from __future__ import annotations

import numpy as np
import pytest

from glassgen.errors import InputError
from glassgen.observables import StaticStructureFactor


@pytest.mark.parametrize("d", [2, 3])
def test_ideal_gas_has_s_equal_one(d: int) -> None:
    """Uniform independent points: |rho(q)|^2 / N is exponential with mean 1 at every allowed q != 0, so each
    bin's mean is 1 within 1/sqrt(independent vectors) (q and -q carry the same value); S_ab -> delta_ab."""
    rng = np.random.default_rng(4)
    n, L, frames = 400, 7.0, 12
    species = rng.integers(0, 2, n)
    sq = StaticStructureFactor(q_max=9.0, bins=30)
    for f in range(frames):
        sq.compute(rng.random((n, d)) * L, species, np.full(d, L), reset=(f == 0))
    ok = sq.n_vectors > 0
    sd = 1.0 / np.sqrt(sq.n_vectors[ok] / 2)
    assert np.all(np.abs(sq.S[ok] - 1.0) < 4.5 * sd)
    assert np.all(np.abs(sq.S_partial[0, 0][ok] - 1.0) < 4.5 * sd)
    assert np.all(np.abs(sq.S_partial[0, 1][ok]) < 4.5 * sd)
    pooled = np.sum(sq.S[ok] * sq.n_vectors[ok]) / sq.n_vectors[ok].sum()
    assert abs(pooled - 1.0) < 4.5 / np.sqrt(sq.n_vectors[ok].sum() / 2)
    assert sq.n_frames == frames and np.all(np.isnan(sq.S[~ok]))


def test_simple_cubic_lattice_gives_bragg_peaks_only() -> None:
    """4^3 simple cubic lattice of spacing 1.5, shifted at random: S = N at the reciprocal-lattice vectors
    (|q| = 2 pi / 1.5 x |m|) and 0 at every other allowed vector, exactly."""
    a, m = 1.5, 4
    g = np.arange(m) * a
    pos = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3) + np.array([0.31, -0.7, 2.2])
    sq = StaticStructureFactor(q_max=9.0, bins=90).compute(pos, None, np.full(3, m * a))
    ok = sq.n_vectors > 0
    bragg = 2 * np.pi / a * np.sqrt([1.0, 2.0, 3.0, 4.0])  # the shells |m|^2 = 1 ... 4 below q_max = 9
    k_bragg = [int(q / 0.1) for q in bragg]
    np.testing.assert_allclose(sq.q[k_bragg], bragg, rtol=1e-12)
    # a bin holding a Bragg shell also holds only vectors of that |q| here, so its mean is N
    np.testing.assert_allclose(sq.S[k_bragg], m ** 3, rtol=1e-10)
    rest = ok.copy()
    rest[k_bragg] = False
    np.testing.assert_allclose(sq.S[rest], 0.0, atol=1e-9)
    q_peak, s_peak = sq.peak()  # all four shells tie at N (to round-off)
    assert s_peak == pytest.approx(m ** 3) and np.min(np.abs(bragg - q_peak)) < 1e-9
    # the windowed peak: S averaged over the vectors of the bins within +- 0.25 of each bin, by hand
    q, c, s = sq.q[ok], sq.n_vectors[ok], sq.S[ok]
    by_hand = max((np.sum(c[w] * s[w]) / np.sum(c[w]), np.sum(c[w] * q[w]) / np.sum(c[w]))
                  for w in (np.abs(q - qk) <= 0.25 + 1e-12 for qk in q))
    q_w, s_w = sq.peak(window=0.5)
    assert s_w == pytest.approx(by_hand[0], rel=1e-12) and q_w == pytest.approx(by_hand[1], rel=1e-12)
    assert s_w < s_peak  # a Bragg shell averaged with its empty neighbours


def test_species_resolved_partials_recombine_to_the_one_species_result() -> None:
    """S(q) from three species' Ashcroft-Langreth partials equals S(q) of the same points as one species,
    and S_ab = S_ba (2D, unequal box sides)."""
    rng = np.random.default_rng(9)
    pos = rng.random((150, 2)) * np.array([6.0, 8.0])
    sp = rng.integers(0, 3, 150)
    box = np.array([6.0, 8.0])
    many = StaticStructureFactor(q_max=8.0, bins=40).compute(pos, sp, box)
    one = StaticStructureFactor(q_max=8.0, bins=40).compute(pos, np.zeros(150, int), box)
    ok = many.n_vectors > 0
    np.testing.assert_allclose(many.S[ok], one.S[ok], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(many.S_partial, np.swapaxes(many.S_partial, 0, 1), equal_nan=True)


def test_ka3d_main_peak_on_shipped_configurations(data) -> None:
    """KA 3D at T = 0.44 (three training configurations, N = 4096): S_AA peaks at q ~ 7.2 (the q = 7.25 of
    REFERENCE.md used for F_s) with height ~ 3; S_BB has no peak there (B particles are 20% and do not
    touch each other)."""
    from glassgen.systems.glassbench import infer_species

    sq = StaticStructureFactor(q_max=10.0)
    for i in (1, 2, 3):
        z = np.load(data / "ka3d-T0.44-isoconfig" / f"isoconfig_N4096T0.44_{i}_tc07.npz")
        sq.compute(z["initial_positions"], infer_species(z["types"]), np.full(3, 15.05658), reset=(i == 1))
    q_aa, s_aa = sq.peak((0, 0))
    assert 6.95 < q_aa < 7.5 and 2.6 < s_aa < 3.8, (q_aa, s_aa)
    q_all, s_all = sq.peak()
    assert 7.0 < q_all < 7.7 and 2.5 < s_all < 3.5, (q_all, s_all)
    q_w, s_w = sq.peak((0, 0), window=0.5)  # dense shells at N = 4096: the window lowers the peak by a few %
    assert abs(q_w - q_aa) < 0.2 and 0.9 * s_aa < s_w <= s_aa, (q_w, s_w, q_aa, s_aa)
    assert sq.S_partial[1, 1][int(q_aa / 0.1)] < 1.5


def test_bad_inputs() -> None:
    with pytest.raises(InputError, match="q_max"):
        StaticStructureFactor(q_max=0)
    sq = StaticStructureFactor(q_max=5.0)
    with pytest.raises(InputError, match="box"):
        sq.compute(np.zeros((3, 3)), None, None)
    with pytest.raises(InputError, match="NaN"):
        sq.compute(np.full((3, 3), np.nan), None, np.ones(3))
    with pytest.raises(InputError, match="wave vectors"):
        StaticStructureFactor(q_max=1e4).compute(np.zeros((3, 3)), None, np.full(3, 10.0))
