"""Predictors: descriptors against brute-force NumPy (periodic images, 2D and 3D), Voronoi consistency,
invariances, p_hop, model save/load round trips, CLI errors."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from glassgen.errors import InputError
from glassgen.predictors import descriptors as D


def _random_system(n: int, d: int, box: float, seed: int, nsp: int = 2, min_dist: float = 0.0):
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, box, size=(n, d))
    spec = (rng.uniform(size=n) < 0.3).astype(np.int64) if nsp == 2 else np.zeros(n, np.int64)
    return pos, spec, np.full(d, box)


def _brute_pairs(pos, box, rc):
    """All (i, j, dr) with 0 < |dr| < rc over explicit image shifts."""
    n, d = pos.shape
    m = int(math.ceil(rc / box.min())) + 1
    shifts = np.array(np.meshgrid(*[np.arange(-m, m + 1)] * d, indexing="ij")).reshape(d, -1).T * box
    out = []
    for i in range(n):
        dr = pos[None, :, :] + shifts[:, None, :] - pos[i]  # (S, N, d)
        r = np.sqrt((dr * dr).sum(-1))
        s_idx, j_idx = np.nonzero((r < rc) & (r > 1e-12))
        for s, j in zip(s_idx, j_idx, strict=True):
            out.append((i, j, *dr[s, j]))
    return np.array(sorted(out, key=lambda t: tuple(np.round(t, 9))))


def _as_sorted(nl):
    rows = np.column_stack([nl.owner, nl.nbr, nl.dr])
    return np.array(sorted(rows.tolist(), key=lambda t: tuple(np.round(t, 9))))


@pytest.mark.parametrize("d,n,box,rc", [(3, 25, 3.0, 2.0), (3, 300, 7.0, 2.2), (2, 30, 3.0, 2.5), (2, 200, 9.0, 2.5)])
def test_neighbour_list_matches_brute_force(d, n, box, rc):
    # small boxes (rc > L/2: several images, own images) and cell-list boxes, 2D and 3D
    pos, _, b = _random_system(n, d, box, seed=n)
    nl = D.neighbour_list(pos, b, rc)
    ref = _brute_pairs(pos, b, rc)
    got = _as_sorted(nl)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-12)
    np.testing.assert_allclose(nl.r, np.linalg.norm(nl.dr, axis=1))


def test_neighbour_list_within_is_a_sub_list():
    pos, _, b = _random_system(120, 3, 5.0, seed=3)
    full = D.neighbour_list(pos, b, 2.4)
    sub = full.within(1.3)
    np.testing.assert_array_equal(_as_sorted(sub), _as_sorted(D.neighbour_list(pos, b, 1.3)))


def _brute_glassmlp(pos, spec, box, e, c, L, rc, nsp):
    """DEN, EPOT, PERI, EPOT_VAR per channel from explicit images (j = i included with weight 1)."""
    pairs = _brute_pairs(pos, box, rc)
    n = pos.shape[0]
    out = np.zeros((n, nsp + 1, 4))
    for i in range(n):
        rows = pairs[pairs[:, 0] == i]
        js = np.concatenate([[i], rows[:, 1].astype(int)])
        r = np.concatenate([[0.0], np.linalg.norm(rows[:, 2:], axis=1)])
        w = np.exp(-r / L) if L > 0 else (r == 0).astype(float)
        for ch in range(nsp + 1):
            sel = np.ones(js.size, bool) if ch == nsp else spec[js] == ch
            den = w[sel].sum()
            if den == 0:
                continue
            ep = (w[sel] * e[js[sel]]).sum() / den
            out[i, ch] = [den, ep, (w[sel] * c[js[sel]]).sum() / den, (w[sel] * (e[js[sel]] - ep) ** 2).sum() / den]
    return out


@pytest.mark.parametrize("d,box", [(3, 3.2), (2, 4.0)])
def test_glassmlp_features_match_brute_force(d, box):
    pos, spec, b = _random_system(20, d, box, seed=7)
    rng = np.random.default_rng(1)
    e, c = rng.normal(size=20), rng.uniform(1, 2, size=20)
    lengths = (0.0, 0.7, 1.5)
    x, names = D.glassmlp_features(pos, spec, b, e, c, lengths=lengths, rc=2.5)
    col = {nm: x[:, k] for k, nm in enumerate(names)}
    checked = 0
    for L in lengths:
        ref = _brute_glassmlp(pos, spec, b, e, c, L, 2.5, 2)
        for ch, cname in enumerate(["A", "B", "all"]):
            for f, fname in enumerate(["DEN", "EPOT", "PERI", "EPOT_VAR"]):
                key = f"{fname}_L{L:g}_{cname}"
                if key in col:
                    np.testing.assert_allclose(col[key], ref[:, ch, f], rtol=1e-10, atol=1e-12, err_msg=key)
                    checked += 1
    assert checked == len(names), (checked, names)  # every emitted column was compared
    assert "EPOT_L0_all" in col and "DEN_L0_all" not in col


def _complex_ql(pos, box, rc, lmax):
    from scipy.special import sph_harm_y

    pairs = _brute_pairs(pos, box, rc)
    out = np.zeros((pos.shape[0], lmax))
    for i in range(pos.shape[0]):
        dr = pairs[pairs[:, 0] == i][:, 2:]
        r = np.linalg.norm(dr, axis=1)
        theta = np.arccos(dr[:, 2] / r)
        phi = np.arctan2(dr[:, 1], dr[:, 0])
        for ll in range(1, lmax + 1):
            qlm = np.array([sph_harm_y(ll, m, theta, phi).mean() for m in range(-ll, ll + 1)])
            out[i, ll - 1] = np.sqrt(4 * np.pi / (2 * ll + 1) * np.sum(np.abs(qlm) ** 2))
    return out


def test_bond_order_matches_scipy_and_addition_theorem():
    from glassgen._kernels import descriptors as K

    pos, _, b = _random_system(15, 3, 3.0, seed=11)
    lmax = 12
    nl = D.neighbour_list(pos, b, 1.6)
    w = np.ones_like(nl.r)
    ql = D.ql_from_qlm(D.bond_order(nl, w, lmax), lmax)
    np.testing.assert_allclose(ql, _complex_ql(pos, b, 1.6, lmax), rtol=1e-9, atol=1e-12)
    q2 = K.legendre_ql(nl.start, nl.dr3(), w, lmax)[:, 1:]
    np.testing.assert_allclose(ql**2, q2, rtol=1e-9, atol=1e-12)


def test_radial_shells_and_angular_functions_match_a_brute_force_sum():
    """The radial structure functions G[i, s, k] and Behler's angular functions psi[i, a] of the softness
    descriptors against plain sums over the pairs and triplets of an explicit image search (a small box, so
    that several images of a particle are neighbours)."""
    from glassgen._kernels import descriptors as K

    pos, spec, b = _random_system(20, 3, 2.6, seed=21)
    rc = 2.0
    pairs = _brute_pairs(pos, b, rc)
    i_of, j_of, dr = pairs[:, 0].astype(int), pairs[:, 1].astype(int), pairs[:, 2:]
    r = np.linalg.norm(dr, axis=1)
    nl = D.neighbour_list(pos, b, rc)
    mus, width = np.array([0.6, 1.0, 1.45, 1.9]), 0.2
    got = K.radial_shells(nl.start, nl.nbr, nl.r, spec, 2, mus, width)
    ref = np.zeros((20, 2, mus.size))
    for i, j, rr in zip(i_of, j_of, r, strict=True):
        ref[i, spec[j]] += np.exp(-((rr - mus) ** 2) / (2 * width**2))
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-14)
    assert ref.min() < 0.01 * ref.max()  # shells nearly empty and well occupied: not a constant

    xi, lam, zeta, rc_a = np.array([1.0, 2.0, 1.5]), np.array([1.0, -1.0, 1.0]), np.array([1.0, 2.0, 4.0]), 1.7
    got = K.behler_angular(nl.start, nl.dr3(), xi, lam, zeta, rc_a)
    ref = np.zeros((20, 3))
    for i in range(20):
        v = dr[(i_of == i) & (r < rc_a)]
        for p_ in range(len(v)):
            for q_ in range(p_ + 1, len(v)):
                rij, rik = np.linalg.norm(v[p_]), np.linalg.norm(v[q_])
                cos = v[p_] @ v[q_] / (rij * rik)
                s2 = rij**2 + rik**2 + np.linalg.norm(v[p_] - v[q_]) ** 2
                ref[i] += np.exp(-s2 / xi**2) * (1 + lam * cos) ** zeta
    np.testing.assert_allclose(got, ref, rtol=1e-11, atol=1e-14)
    assert np.all(ref.max(0) > 0)


def test_rotation_invariance_of_structural_descriptors():
    # a cluster in a large box: rotating it about its centre must leave radial shells, q_l, SBO and
    # the angular softness functions unchanged
    rng = np.random.default_rng(5)
    n = 60
    pos = rng.normal(size=(n, 3)) * 1.2 + 50.0
    spec = (rng.uniform(size=n) < 0.3).astype(np.int64)
    b = np.full(3, 100.0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rot = (pos - 50.0) @ q.T + 50.0
    for fn in (lambda p: D.boattini_features(p, spec, b, rc=3.0)[0], lambda p: D.sbo_features(p, b)[0],
               lambda p: D.softness_features(p, spec, b, mus=(0.5, 2.0, 0.1))[0]):
        np.testing.assert_allclose(fn(rot), fn(pos), rtol=1e-8, atol=1e-10)


def test_permutation_and_box_symmetry_invariance():
    pos, spec, b = _random_system(80, 3, 4.5, seed=2)
    e = np.random.default_rng(0).normal(size=80)
    c, _ = D.voronoi_cells(pos, b)
    x, _ = D.glassmlp_features(pos, spec, b, e, c, rc=3.0)
    perm = np.random.default_rng(1).permutation(80)
    cp, _ = D.voronoi_cells(pos[perm], b)
    np.testing.assert_allclose(cp, c[perm], rtol=1e-9)
    xp, _ = D.glassmlp_features(pos[perm], spec[perm], b, e[perm], cp, rc=3.0)
    np.testing.assert_allclose(xp, x[perm], rtol=1e-9, atol=1e-12)
    # a 90 degree rotation of the cubic box plus a translation is a symmetry of the periodic system
    rot = np.column_stack([pos[:, 1], -pos[:, 0], pos[:, 2]]) + np.array([0.3, 1.7, -2.2])
    cr, _ = D.voronoi_cells(rot, b)
    np.testing.assert_allclose(cr, c, rtol=1e-8)
    xb, _ = D.boattini_features(pos, spec, b, rc=3.0)
    xbr, _ = D.boattini_features(rot, spec, b, rc=3.0)
    np.testing.assert_allclose(xbr, xb, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("d", [2, 3])
def test_voronoi_sizes_sum_to_box_and_lattice_values(d):
    pos, _, b = _random_system(150 if d == 3 else 200, d, 6.0, seed=d)
    boundary, size = D.voronoi_cells(pos, b)
    assert np.all(boundary > 0) and np.all(size > 0)
    assert size.sum() == pytest.approx(np.prod(b), rel=1e-10)
    # a slightly perturbed simple cubic / square lattice: cells are unit cubes / squares
    k = 5
    grid = np.array(np.meshgrid(*[np.arange(k)] * d, indexing="ij")).reshape(d, -1).T + 0.5
    grid = grid + np.random.default_rng(0).normal(scale=1e-7, size=grid.shape)
    bl, sl = D.voronoi_cells(grid, np.full(d, float(k)))
    np.testing.assert_allclose(sl, 1.0, rtol=1e-5)
    np.testing.assert_allclose(bl, 2.0 * d, rtol=1e-5)  # 6 unit faces in 3D, 4 unit edges in 2D


def test_p_hop_matches_loop():
    rng = np.random.default_rng(4)
    traj = np.cumsum(rng.normal(scale=0.1, size=(21, 7, 3)), axis=0)
    h = 4
    got = D.p_hop(traj, h)
    ref = np.zeros((21 - 2 * h, 7))
    for k, t in enumerate(range(h, 21 - h)):
        a, bw = traj[t - h:t + 1], traj[t:t + h + 1]
        va = ((a - bw.mean(0)) ** 2).sum(-1).mean(0)
        vb = ((bw - a.mean(0)) ** 2).sum(-1).mean(0)
        ref[k] = np.sqrt(va * vb)
    np.testing.assert_allclose(got, ref, rtol=1e-10)
    # a particle that jumps by 1 in the middle of the window has p_hop ~ 1/4 ... 1 at the jump
    jump = np.zeros((21, 1, 3))
    jump[11:, 0, 0] = 1.0
    assert D.p_hop(jump, h)[11 - h, 0] > 0.2 and D.p_hop(jump, h)[0, 0] == 0.0


def test_descriptor_input_errors():
    with pytest.raises(InputError):
        D.neighbour_list(np.zeros((3, 4)), np.ones(4), 1.0)
    with pytest.raises(InputError):
        D.neighbour_list(np.zeros((3, 3)), np.ones(3), -1.0)
    with pytest.raises(InputError):
        D.DescriptorSettings.from_dict({"families": ["nope"]})
    with pytest.raises(InputError, match="lenghts"):
        D.DescriptorSettings.from_dict({"families": ["quench"], "quench": {"lenghts": [1.0]}})
    with pytest.raises(InputError, match="replicas"):
        D.DescriptorSettings.from_dict({"families": ["cage"], "cage": {"T": 0.44, "replicas": 4}})
    ok = D.DescriptorSettings.from_dict({"families": ["cage"], "cage": {"T": 0.44, "n_replicas": 4}})
    assert ok.cage == {"T": 0.44, "n_replicas": 4, "model": "ka3d"}  # the cage MD runs the settings' model
    with pytest.raises(InputError):
        D.p_hop(np.zeros((3, 2, 3)), 2)


# ---------------------------------------------------------------------------------------------- models
def _write_tiny_dataset(root, n_configs=6, n=64, seed=0):
    """KA 3D configurations (random, overlaps removed) with a synthetic propensity that depends on structure."""
    from glassgen.dynamics.initial import random_state
    from glassgen.systems.glassbench import GlassBenchSample, write_sample

    rng = np.random.default_rng(seed)
    for i in range(1, n_configs + 1):
        c = random_state("ka3d", n, seed=seed + i)
        e = D.per_particle_energy(c.positions, c.species, c.box, "ka3d")
        y = 0.5 + 0.05 * (e - e.mean()) + 0.01 * rng.normal(size=n)
        s = GlassBenchSample(system="KA", T=0.8, index=i, species=c.species, positions=c.positions, box=c.box,
                             times=np.array([1.0, 2.0]), md_prop=np.stack([y, 2 * y]),
                             metadata={"split": "test" if i == n_configs else "train"})
        write_sample(root / f"N{n}T0.80_{i}.npz", s)
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _write_tiny_dataset(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSGEN_PREDICTOR_CACHE", str(tmp_path / "cache"))


THERMAL = {"families": ["glassmlp"], "inherent": False, "rc_cg": 3.0, "lengths": [0.0, 1.0, 2.0]}


@pytest.mark.parametrize("kind,hyper", [("ridge", {}), ("glassmlp", {"epochs1": 3, "epochs2": 2, "n_corr": 20}),
                                        ("gnn", {"epochs": 2, "hidden": 8, "steps": 2})])
def test_save_load_round_trip_gives_identical_predictions(tiny, tmp_path, kind, hyper):
    from glassgen.api_predict import build_predictor
    from glassgen.predictors import load_predictor
    from glassgen.systems.glassbench import read_dataset

    p = build_predictor(kind, THERMAL, hyper).fit(read_dataset(tiny), 2.0, seed=3)
    f = p.save(tmp_path / "m.npz")
    q = load_predictor(f)
    s = next(read_dataset(tiny).samples(split="test"))
    a = p.predict(s)
    np.testing.assert_array_equal(q.predict(s), a)
    np.testing.assert_array_equal(q.score(s.positions, s.species, s.box), a)
    assert q.settings == p.settings and q.info["time"] == 2.0 and a.shape == (64,)


def test_ridge_learns_a_structural_target(tiny):
    from glassgen.bench.metrics import pearson_pooled
    from glassgen.predictors import RidgePredictor
    from glassgen.predictors.descriptors import DescriptorSettings
    from glassgen.systems.glassbench import read_dataset

    ds = read_dataset(tiny)
    p = RidgePredictor(DescriptorSettings.from_dict(THERMAL)).fit(ds, 2.0, seed=0)
    s = next(ds.samples(split="test"))
    r = pearson_pooled([s.md_prop[1]], [p.predict(s)], [s.mask(0)])
    assert r > 0.9  # the target is a linear function of EPOT_L0 plus 2 % noise


def test_same_seed_same_glassmlp(tiny):
    from glassgen.api_predict import build_predictor
    from glassgen.systems.glassbench import read_dataset

    s = next(read_dataset(tiny).samples(split="test"))
    preds = [build_predictor("glassmlp", THERMAL, {"epochs1": 2, "epochs2": 2, "n_corr": 20})
             .fit(read_dataset(tiny), 2.0, seed=5).predict(s) for _ in range(2)]
    np.testing.assert_array_equal(preds[0], preds[1])


def test_arrhenius_fit_recovers_known_law():
    from glassgen.predictors.softness import arrhenius_fit

    temps = np.array([0.5, 0.6, 0.8, 1.0])
    s = np.linspace(-2, 2, 5)
    de, sig = 3.0 - 1.0 * s, 2.0 - 0.5 * s
    p = np.exp(sig[None] - de[None] / temps[:, None])
    counts = np.full(p.shape, 1e6)
    out = arrhenius_fit(temps, p, counts, p * counts)
    np.testing.assert_allclose(out["DeltaE"], de, rtol=1e-8)
    np.testing.assert_allclose(out["Sigma"], sig, rtol=1e-8)


def test_cli_predict_help_and_bad_input(tmp_path, capsys):
    from glassgen.cli import main

    for cmd in ("train", "eval", "score"):
        assert main(["predict", cmd, "--help"]) == 0
        assert "Examples" in capsys.readouterr().out
    cases = [["predict", "train", "--kind", "ridge", "--data", str(tmp_path / "no"), "--out", str(tmp_path / "m.npz")],
             ["predict", "train", "--kind", "nonsense", "--data", str(tmp_path), "--out", str(tmp_path / "m.npz")],
             ["predict", "score", str(tmp_path / "missing.npz"), str(tmp_path / "c.xyz"), "--out", str(tmp_path / "o")],
             ["predict", "eval", str(tmp_path / "missing.npz"), "--data", str(tmp_path)],
             ["predict", "train", "--kind", "ridge", "--data", str(tmp_path), "--out", "x.npz", "--hyper", "[1"]]
    for args in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err, err


def test_cli_train_eval_score_end_to_end(tiny, tmp_path):
    import json

    from glassgen.cli import main

    m = tmp_path / "r.npz"
    assert main(["predict", "train", "--kind", "ridge", "--data", str(tiny), "--time", "2.0", "--out", str(m),
                 "--descriptors", json.dumps(THERMAL), "--seed", "4", "--no-progress"]) == 0
    meta = json.loads((tmp_path / "r.npz.json").read_text())
    assert meta["provenance"]["seed"] == 4 and meta["provenance"]["model"] == "ka3d"
    assert main(["predict", "eval", str(m), "--data", str(tiny), "--out", str(tmp_path / "e.json")]) == 0
    ev = json.loads((tmp_path / "e.json").read_text())
    assert ev["pearson_pooled"] > 0.8 and ev["test_indices"] == [6]
    assert main(["predict", "score", str(m), str(tiny / "N64T0.80_6.npz"), "--out", str(tmp_path / "p.npz")]) == 0
    with np.load(tmp_path / "p.npz") as z:
        prov = json.loads(str(z["provenance"]))
        assert z["prediction"].shape == (64,) and "command" in prov
        assert prov["T"] == 0.8 and prov["T_train"] == [0.8]  # the input's and the predictor's temperatures
    # training on the test split is refused unless asked for deliberately
    from glassgen.api_predict import train

    with pytest.raises(InputError, match="train split only"):
        train(kind="ridge", data=tiny, out=tmp_path / "t.npz", time=2.0, split="test", descriptors=THERMAL)
    cfg = tmp_path / "t.toml"
    cfg.write_text(f'[predictor]\nkind = "ridge"\ndata = "{tiny}"\nsplit = "test"\ntime = 2.0\n')
    assert main(["predict", "train", "--config", str(cfg), "--out", str(tmp_path / "t.npz")]) == 2
    assert not (tmp_path / "t.npz").exists()


def test_eval_at_another_temperature_uses_the_models_row_of_the_time_grid(tmp_path, capsys):
    """A model trained at T = 0.8 at row 1 of that grid (t = 2) is evaluated at T = 0.6 at row 1 of the T = 0.6
    grid (t = 6, the same t / tau_alpha) unless told otherwise; it failed with "time 2 not in the grid"."""
    from glassgen.api_predict import evaluate, train
    from glassgen.cli import main
    from glassgen.dynamics.initial import random_state
    from glassgen.systems.glassbench import GlassBenchSample, write_sample

    rng = np.random.default_rng(2)
    for T, times, tag in ((0.8, [1.0, 2.0], "0.80"), (0.6, [3.0, 6.0], "0.60")):
        for i in range(1, 5):
            c = random_state("ka3d", 64, seed=40 + i)
            e = D.per_particle_energy(c.positions, c.species, c.box, "ka3d")
            y = 0.5 + 0.05 * (e - e.mean()) + 0.01 * rng.normal(size=64)
            write_sample(tmp_path / f"N64T{tag}_{i}.npz", GlassBenchSample(
                system="KA", T=T, index=i, species=c.species, positions=c.positions, box=c.box,
                times=np.array(times), md_prop=np.stack([y, 3 * y]), metadata={"split": "test" if i == 4 else "train"}))
    m = tmp_path / "r.npz"
    train(kind="ridge", data=tmp_path, out=m, T=0.8, time_index=1, descriptors=THERMAL)
    assert json.loads((tmp_path / "r.npz.json").read_text())["time"] == 2.0
    with pytest.warns(UserWarning, match="one configuration evaluated .* chi_4 .* NaN"):
        ev = evaluate(model=m, data=tmp_path, T=0.6)
    assert ev["time"] == 6.0 and ev["time_index"] == 1 and ev["pearson_pooled"] > 0.5
    assert math.isnan(ev["chi4_true"]) and math.isnan(ev["pearson_per_config_err"])
    with pytest.warns(UserWarning, match="one configuration evaluated"):
        assert evaluate(model=m, data=tmp_path, T=0.6, time_index=0)["time"] == 3.0
    both = evaluate(model=m, data=tmp_path)  # both temperatures: the training time where it is on the grid
    assert both["time"] == {"0.6": 6.0, "0.8": 2.0}
    with pytest.raises(InputError, match="not in the grid"):
        evaluate(model=m, data=tmp_path, T=0.6, time=2.0)
    assert main(["predict", "eval", str(m), "--data", str(tmp_path), "--T", "0.6", "--time-index", "7"]) == 2
    assert "time_index must be in [0, 1]" in capsys.readouterr().err


def test_eval_reports_the_replicas_lag_time_when_the_model_has_none(tmp_path):
    """A predictor trained on isoconfigurational replicas (no --time) is scored at the replicas' recorded lag
    time, and ``predict eval`` says which (it printed ``time: None``)."""
    from glassgen.api_predict import evaluate, train
    from glassgen.dynamics.initial import random_state
    from glassgen.systems.glassbench import GlassBenchSample, write_sample

    rng = np.random.default_rng(1)
    for i in range(1, 5):
        c = random_state("ka3d", 64, seed=20 + i)
        reps = c.positions[None] + 0.1 * rng.normal(size=(3, 64, 3))
        write_sample(tmp_path / f"N64T0.80_{i}.npz", GlassBenchSample(
            system="KA", T=0.8, index=i, species=c.species, positions=c.positions, box=c.box, replicas=reps,
            replica_time=7.5, metadata={"split": "test" if i == 4 else "train"}))
    m = tmp_path / "r.npz"
    train(kind="ridge", data=tmp_path, out=m, descriptors=THERMAL)
    with pytest.warns(UserWarning, match="one configuration evaluated"):
        assert evaluate(model=m, data=tmp_path)["time"] == 7.5


@pytest.mark.parametrize("extra, msg", [
    (["--time-index", "99"], "time_index must be in"), (["--time-index", "-1"], "time_index must be in"),
    (["--T", "0"], "temperature must be positive"), (["--time", "nan"], "lag time must be positive"),
    (["--time", "2.0", "--hyper", '{"bogus": 1}'], "unknown hyperparameter(s) for ridge: bogus"),
])
def test_cli_predict_train_checks_times_and_hyperparameters(tiny, tmp_path, capsys, extra, msg):
    from glassgen.cli import main

    rc = main(["predict", "train", "--kind", "ridge", "--data", str(tiny), "--out", str(tmp_path / "m.npz"), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and msg in err and "\n" not in err, err
    assert not (tmp_path / "m.npz").exists()


# ---------------------------------------------------------------------------------------------- real data
def test_real_ka3d_voronoi_and_features(data):
    from glassgen.systems.glassbench import read_sample

    s = read_sample(data / "ka3d-T0.44-isoconfig" / "isoconfig_N4096T0.44_1_tc07.npz", load_replicas=False)
    boundary, size = D.voronoi_cells(s.positions, s.box)
    assert size.sum() == pytest.approx(np.prod(s.box), rel=1e-10)
    # A particles are bigger than B particles: larger Voronoi cells on average
    assert size[s.species == 0].mean() > size[s.species == 1].mean()
    x, names = D.compute_descriptors(D.DescriptorSettings(model="ka3d_sf"), s.positions, s.species, s.box)
    assert x.shape == (4096, len(names)) and np.all(np.isfinite(x))


@pytest.mark.slow
def test_real_ka3d_inherent_energy_predicts_propensity(data, tmp_path, monkeypatch):
    # physics check on one real configuration: coarse-grained inherent-state energy correlates with propensity
    from glassgen.predictors.data import inherent_positions, target
    from glassgen.systems.glassbench import read_sample

    monkeypatch.setenv("GLASSGEN_PREDICTOR_CACHE", str(tmp_path))
    s = read_sample(data / "ka3d-T0.44-isoconfig" / "isoconfig_N4096T0.44_2_tc07.npz")
    x_is = inherent_positions(s, "ka3d_sf")
    e = D.per_particle_energy(x_is, s.species, s.box, "ka3d_sf")
    c, _ = D.voronoi_cells(x_is, s.box)
    x, names = D.glassmlp_features(x_is, s.species, s.box, e, c)
    y = target(s, None)
    a = s.species == 0
    assert np.corrcoef(x[a, names.index("EPOT_L2_all")], y[a])[0, 1] > 0.3


def test_shipped_configs_parse():
    from glassgen.api_predict import build_predictor, train_spec_from_config
    from glassgen.config import repo_root

    files = sorted((repo_root() / "configs" / "predictors").glob("ka3d_*.toml"))
    assert len(files) >= 4
    for f in files:
        spec = train_spec_from_config(f)
        build_predictor(spec["kind"], spec.get("descriptors"), spec.get("hyper"))


def _softness_results() -> dict:
    """A softness study's results at T = 0.6 and 0.8 on three S bins, the middle one without data (NaN)."""
    keys = ("DeltaE", "DeltaE_err", "Sigma", "Sigma_err", "n_T")
    return {"temperatures": np.array([0.6, 0.8]), "S": np.array([-1.0, 0.0, 1.0]),
            "fit": {"DeltaE": [3.0, -1.0], "Sigma": [2.0, -0.5], "S_range": [-1.0, 1.0]},
            "S_mean": np.array([-0.1, 0.1]), "S_std": np.array([1.0, 1.1]),
            "P_R": np.array([[0.01, 0.02, np.nan], [0.02, 0.04, 0.08]]), "count": np.ones((2, 3)),
            "arrhenius": {k: np.array([1.0, np.nan, 2.0]) for k in keys}}


def test_softness_export_round_trip(tmp_path):
    import tomllib

    from glassgen.predictors.softness import export_toml

    res = _softness_results()
    export_toml(tmp_path / "s.toml", res, {"model": "ka3d", "p_c": 0.2, "provenance": {"command": 'a "b"', "seed": 1}})
    d = tomllib.loads((tmp_path / "s.toml").read_text())["softness"]
    assert d["fit"]["DeltaE"] == [3.0, -1.0] and d["T_fit_range"] == [0.6, 0.8]
    assert d["provenance"]["command"] == 'a "b"' and len(d["P_S"]) == 2 and d["P_S"][1]["std"] == 1.1
    assert math.isnan(d["bins"]["DeltaE"][1])


def test_softness_export_is_a_trap_model_law(tmp_path):
    """The export of a softness study is read by the trap models (it was refused for the NaN of its empty bins,
    and its [softness] layout was not a law): k(S, T) = P_R / t_R = exp(Sigma(S) - DeltaE(S)/T) / t_R, P(S; T)
    from each temperature's summary; a NaN outside the bins table is still an error; the shipped export runs."""
    import tomllib

    from glassgen.models.softness_law import load_softness_law
    from glassgen.predictors.softness import export_toml

    res = _softness_results()
    export_toml(tmp_path / "s.toml", res, {"model": "ka3d", "n": 400, "t_R": 2.0, "p_c": 0.2})
    law = load_softness_law(tmp_path / "s.toml")
    S, T = np.array([-0.5, 0.0, 0.7]), 0.7
    np.testing.assert_allclose(np.exp(law.lnk(S, T)), np.exp((2.0 - 0.5 * S) - (3.0 - 1.0 * S) / T) / 2.0, rtol=1e-12)
    assert law.p_s(0.6) == (-0.1, 1.0) and law.p_s(0.8) == pytest.approx((0.1, 1.1))
    # d ln k / dS = Sigma_1 - DeltaE_1 / T = -0.5 + 1/T > 0 only below T = 2: that is the fitted law's onset
    assert law.linear and law.T_onset == pytest.approx(2.0) and law.T_min == 0.0
    from glassgen.models.softness_law import law_from_export

    soft = tomllib.loads((tmp_path / "s.toml").read_text())["softness"]
    rising = law_from_export({**soft, "fit": {"DeltaE": [3.0, 0.4], "Sigma": [2.0, 1.3]}})
    assert rising["T_min"] == pytest.approx(0.4 / 1.3) and "T_onset" not in rising
    with pytest.raises(InputError, match="not above T_min"):
        load_softness_law(rising).kernel_law(0.3)
    with pytest.raises(InputError, match="more slowly at every T"):
        law_from_export({**soft, "fit": {"DeltaE": [3.0, 0.4], "Sigma": [2.0, -1.3]}})
    text = (tmp_path / "s.toml").read_text().replace("t_R = 2", "t_R = nan")
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(InputError, match=r"softness.t_R is NaN"):
        load_softness_law(tmp_path / "bad.toml")
    from glassgen.cli import main

    shipped = str(Path(__file__).resolve().parents[1] / "configs/predictors/softness_export_ka3d.toml")
    assert main(["trap-model", "run", "--model", "softness", "--softness-law", shipped, "--T", "0.6", "--N", "100",
                 "--seed", "1", "--max-events", "20000", "--out", str(tmp_path / "t.h5"), "--no-progress"]) == 0


def test_shipped_ka_softness_law_is_physical():
    """The KA law made by `predict softness-law` (README, "A usable KA softness law"): barriers fall with
    softness (DeltaE slope < 0, per-bin values within their errors of the fit over the well-sampled bins),
    the entropic term too, so softer particles rearrange faster below the onset DeltaE_1 / Sigma_1; its
    provenance names the command."""
    import tomllib

    from glassgen.models.softness_law import load_softness_law

    path = Path(__file__).resolve().parents[1] / "configs/predictors/softness_ka3d.toml"
    d = tomllib.loads(path.read_text())["softness"]
    e0, e1 = d["fit"]["DeltaE"]
    s0, s1 = d["fit"]["Sigma"]
    assert e1 < 0 and s1 < 0 and d["n_labels"] > 2000
    b = d["bins"]
    ok = [k for k in range(len(b["S"])) if b["n_T"][k] >= 4 and math.isfinite(b["DeltaE"][k])]
    assert len(ok) >= 6
    z = [(b["DeltaE"][k] - (e0 + e1 * b["S"][k])) / b["DeltaE_err"][k] for k in ok]
    assert max(abs(x) for x in z) < 3, z
    law = load_softness_law(path)
    assert law.T_onset == pytest.approx(e1 / s1) and law.T_onset > 0.8
    assert load_softness_law("softness_ka3d").describe()["DeltaE"] == law.describe()["DeltaE"]  # by name too
    assert "predict softness-law" in d["provenance"]["command"] and "--t-prod 1000" in d["provenance"]["command"]


def test_recursive_coarse_graining_matches_brute_force():
    pos, spec, b = _random_system(25, 3, 3.0, seed=9)
    x = np.random.default_rng(2).normal(size=(25, 3))
    nl = D.neighbour_list(pos, b, 2.2)
    got = D.coarse_grain(x, nl, np.exp(-nl.r / 2.0), 2)
    pairs = _brute_pairs(pos, b, 2.2)
    ref = [x]
    for _ in range(2):
        prev, new = ref[-1], np.empty_like(x)
        for i in range(25):
            rows = pairs[pairs[:, 0] == i]
            w = np.exp(-np.linalg.norm(rows[:, 2:], axis=1) / 2.0)
            new[i] = (prev[i] + (w[:, None] * prev[rows[:, 1].astype(int)]).sum(0)) / (1 + w.sum())
        ref.append(new)
    for g, r in zip(got, ref, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-12)
    # the settings option appends exactly these levels of the GlassMLP block
    from glassgen.dynamics.initial import random_state

    c = random_state("ka3d", 40, seed=1)
    pos, spec, b = c.positions, c.species, c.box
    nl = D.neighbour_list(pos, b, 2.2)
    st = D.DescriptorSettings(model="ka3d", glassmlp_cg_levels=1, rc_cg=2.2, lengths=(0.0, 1.0))
    full, names = D.compute_descriptors(st, pos, spec, b)
    plain, pnames = D.compute_descriptors(D.DescriptorSettings(model="ka3d", rc_cg=2.2, lengths=(0.0, 1.0)),
                                          pos, spec, b)
    np.testing.assert_allclose(full[:, :plain.shape[1]], plain)
    np.testing.assert_allclose(full[:, plain.shape[1]:], D.coarse_grain(plain, nl, np.exp(-nl.r / 2.0), 1)[1])
    assert names[len(pnames):] == [n + "_cg1" for n in pnames]


def test_gnn_learns_coordination_number():
    # the message passing must be able to fit a simple graph function (neighbours within 1.4)
    import torch

    from glassgen.dynamics.initial import random_state
    from glassgen.predictors import DescriptorSettings, GNNPredictor
    from glassgen.predictors.data import Frame

    torch.set_num_threads(1)
    fr = []
    for k in range(3):
        c = random_state("ka3d", 100, seed=k)
        y = np.diff(D.neighbour_list(c.positions, c.box, 1.4).start).astype(float)
        fr.append(Frame(np.zeros((100, 1)), c.species, y, c.positions, c.box, k, 1.0))
    p = GNNPredictor(DescriptorSettings(inherent=False), epochs=80, hidden=16, steps=2, edge_features="rbf", lr=3e-3)
    p.fit_frames(fr, seed=0)
    assert p.info["loss_history"][-1] < 0.3 < p.info["loss_history"][0]


def _gnn_frames(n_configs=3, n=100, offsets=None):
    from glassgen.dynamics.initial import random_state
    from glassgen.predictors.data import Frame

    fr = []
    for k in range(n_configs):
        c = random_state("ka3d", n, seed=k)
        y = np.diff(D.neighbour_list(c.positions, c.box, 1.4).start).astype(float)
        if offsets is not None:
            y = y + offsets[k]
        fr.append(Frame(np.zeros((n, 1)), c.species, y, c.positions, c.box, k, 1.0))
    return fr


def test_gnn_ignores_per_configuration_offsets():
    # center_targets: a constant added to one configuration's target (not a function of structure) must not be
    # learned; the per-configuration Pearson with the structural part stays high
    import torch

    from glassgen.predictors import DescriptorSettings, GNNPredictor

    torch.set_num_threads(1)
    fr = _gnn_frames(offsets=[0.0, 30.0, -30.0])
    p = GNNPredictor(DescriptorSettings(inherent=False), epochs=60, hidden=16, steps=2, lr=3e-3, lr_final=3e-4)
    p.fit_frames(fr, seed=0)
    # the loss sees species A only (the default loss_species, as Bapst), so A is what is checked
    pooled_mean_a = np.mean(np.concatenate([g.target[g.species == 0] for g in fr]))
    for f in fr:
        a = f.species == 0
        yp = p.predict_frame(f)[a]
        assert np.corrcoef(yp, f.target[a])[0, 1] > 0.8  # measured 0.96-0.97
        assert abs(yp.mean() - pooled_mean_a) < 5.0  # no offset learned (offsets are +-30)


def test_gnn_checkpoint_resume_matches_uninterrupted(tmp_path, monkeypatch):
    # interrupted after 3 of 6 epochs (parameters, Adam moments and the lr schedule restored): same result
    import torch

    import glassgen.predictors.gnn as G
    from glassgen.predictors import DescriptorSettings, GNNPredictor

    torch.set_num_threads(1)
    fr = _gnn_frames(n_configs=2, n=64)
    kw = {"hidden": 8, "steps": 2, "lr": 3e-3, "epochs": 6}
    full = GNNPredictor(DescriptorSettings(inherent=False), **kw).fit_frames(fr, seed=1)
    ck = str(tmp_path / "g.ckpt.npz")

    class Stop(Exception):
        pass

    orig = G.GNNPredictor._save_checkpoint

    def save_then_stop(self, path, epoch, seed, opt=None):
        orig(self, path, epoch, seed, opt)
        if epoch == 3:
            raise Stop

    with monkeypatch.context() as mp:
        mp.setattr(G.GNNPredictor, "_save_checkpoint", save_then_stop)
        with pytest.raises(Stop):
            GNNPredictor(DescriptorSettings(inherent=False), checkpoint=ck, **kw).fit_frames(fr, seed=1)
    resumed = GNNPredictor(DescriptorSettings(inherent=False), checkpoint=ck, **kw).fit_frames(fr, seed=1)
    np.testing.assert_allclose(resumed.predict_frame(fr[0]), full.predict_frame(fr[0]), rtol=1e-5, atol=1e-6)
    assert resumed.info["loss_history"] == pytest.approx(full.info["loss_history"], rel=1e-5)
    # a checkpoint resumes only the training it was written by: other targets (another T or lag time) are refused
    other = [dataclasses.replace(f, target=2.0 * f.target) for f in fr]
    with pytest.raises(InputError, match="other training data"):
        GNNPredictor(DescriptorSettings(inherent=False), checkpoint=ck, **kw).fit_frames(other, seed=1)


def test_gnn_training_removes_its_checkpoint_and_retrains_on_other_data(tiny, tmp_path):
    """``predict train --kind gnn`` leaves no checkpoint behind, so training again on other data (another lag
    time) gives another model (it reused the finished checkpoint of the first and returned the same weights)."""
    from glassgen.api_predict import train
    from glassgen.predictors import load_predictor
    from glassgen.systems.glassbench import read_dataset

    hyper = {"epochs": 2, "hidden": 8, "steps": 2}
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    train(kind="gnn", data=tiny, out=a, time=1.0, descriptors=THERMAL, hyper=hyper)
    assert not Path(str(a) + ".ckpt.npz").exists()
    Path(a).rename(b)
    train(kind="gnn", data=tiny, out=a, time=2.0, descriptors=THERMAL, hyper=hyper)
    s = next(read_dataset(tiny).samples(split="test"))
    assert not np.allclose(load_predictor(a).predict(s), load_predictor(b).predict(s))


def test_glassmlp_meanvar_calibration_matches_training_distribution(tiny):
    from glassgen.api_predict import build_predictor
    from glassgen.predictors.data import frames
    from glassgen.systems.glassbench import read_dataset

    ds = read_dataset(tiny)
    hyper = {"epochs1": 3, "epochs2": 2, "n_corr": 20}
    raw = build_predictor("glassmlp", THERMAL, hyper).fit(ds, 2.0, seed=0)
    cal = build_predictor("glassmlp", THERMAL, dict(hyper, calibrate="meanvar")).fit(ds, 2.0, seed=0)
    tr = [s for s in ds.samples(split="train")]
    fr = frames(tr, cal.settings, 2.0)
    for sp in (0, 1):
        yt = np.concatenate([f.target[f.species == sp] for f in fr])
        yp = np.concatenate([cal.predict_frame(f)[f.species == sp] for f in fr])
        yr = np.concatenate([raw.predict_frame(f)[f.species == sp] for f in fr])
        assert yp.mean() == pytest.approx(yt.mean(), rel=1e-8) and yp.std() == pytest.approx(yt.std(), rel=1e-8)
        assert np.corrcoef(yp, yr)[0, 1] == pytest.approx(1.0)  # a monotone linear map: Pearson unchanged


def test_quantile_calibration_restores_the_target_distribution(tiny, tmp_path):
    """Ridge with ``calibrate = "quantile"``: the out-of-fold map gives the training predictions the targets'
    distribution (so a threshold falls where it falls on the true field), keeps the particle ranking, and
    survives save/load. A strongly penalised ridge shrinks its output, which the map must undo."""
    from scipy.stats import ks_2samp, spearmanr

    from glassgen.api_predict import build_predictor
    from glassgen.predictors import load_predictor
    from glassgen.predictors.data import frames
    from glassgen.systems.glassbench import read_dataset

    ds = read_dataset(tiny)
    hyper = {"alphas": [3.0]}  # heavy shrinkage: raw predictions far narrower than the targets
    raw = build_predictor("ridge", THERMAL, hyper).fit(ds, 2.0, seed=0)
    cal = build_predictor("ridge", THERMAL, dict(hyper, calibrate="quantile")).fit(ds, 2.0, seed=0)
    assert cal.info["quantile_map"]["fitted_on"] == "out-of-fold"
    fr = frames(list(ds.samples(split="train")), cal.settings, 2.0)
    for sp in (0, 1):
        yt = np.concatenate([f.target[f.species == sp] for f in fr])
        yr = np.concatenate([raw.predict_frame(f)[f.species == sp] for f in fr])
        yc = np.concatenate([cal.predict_frame(f)[f.species == sp] for f in fr])
        assert yr.std() < 0.7 * yt.std()  # the shrinkage the map has to undo
        assert yc.std() == pytest.approx(yt.std(), rel=0.1)
        assert ks_2samp(yc, yt).statistic < 0.5 * ks_2samp(yr, yt).statistic
        if sp == 0:  # enough particles for the test to have power
            assert ks_2samp(yc, yt).pvalue > 0.01 and ks_2samp(yr, yt).pvalue < 1e-3
        assert spearmanr(yc, yr).statistic == pytest.approx(1.0)
    s = next(ds.samples(split="test"))
    np.testing.assert_array_equal(load_predictor(cal.save(tmp_path / "q.npz")).predict(s), cal.predict(s))
    with pytest.raises(InputError):
        build_predictor("ridge", THERMAL, {"calibrate": "sideways"})


def test_quench_displacement_features_match_direct_computation():
    """u_i = |r_thermal - r_inherent| with the minimum image, and its first coarse-graining level by brute force."""
    pos, spec, b = _random_system(60, 3, 4.5, seed=3)
    rng = np.random.default_rng(1)
    ih = (pos + 0.05 * rng.normal(size=pos.shape)) % b
    th = pos.copy()
    th[0] = ih[0] + np.array([b[0] - 0.1, 0.0, 0.0])  # crosses the boundary: minimum image gives 0.1
    th %= b
    x, names = D.quench_features(th, ih, b, lengths=(1.5,), levels=1, rc=2.0)
    dr = th - ih
    dr -= b * np.round(dr / b)
    u = np.linalg.norm(dr, axis=1)
    assert u[0] == pytest.approx(0.1)
    np.testing.assert_allclose(x[:, 0], u, rtol=1e-12)
    np.testing.assert_allclose(x[:, 1], np.log(u + 1e-3), rtol=1e-12)
    pairs = _brute_pairs(ih, b, 2.0)
    i, j = pairs[:, 0].astype(int), pairs[:, 1].astype(int)
    w = np.exp(-np.linalg.norm(pairs[:, 2:], axis=1) / 1.5)
    num, den = u.copy(), np.ones_like(u)
    np.add.at(num, i, w * u[j])
    np.add.at(den, i, w)
    np.testing.assert_allclose(x[:, names.index("QU_L1.5_cg1")], num / den, rtol=1e-10)
    with pytest.raises(InputError):
        D.compute_descriptors(D.DescriptorSettings(families=("quench",)), ih, spec, b)  # no thermal positions


def test_cross_fitted_calibration_uses_models_that_never_saw_the_configuration(tiny):
    """``calibration_folds = 3``: each training configuration's calibration prediction comes from a copy trained
    on the other folds (checked by refitting one fold by hand), not from the model itself."""
    from glassgen.api_predict import build_predictor
    from glassgen.predictors.data import frames
    from glassgen.systems.glassbench import read_dataset

    ds = read_dataset(tiny)
    hyper = {"epochs1": 3, "epochs2": 2, "n_corr": 20}
    p = build_predictor("glassmlp", THERMAL, dict(hyper, calibrate="quantile", calibration_folds=3))
    fr = frames(list(ds.samples(split="train")), p.settings, 2.0)
    p.fit_frames(fr, seed=4)
    preds, how = p._calibration_predictions(fr, seed=4)
    assert how == "out-of-fold (3 folds)" and p.info["quantile_map"]["fitted_on"] == how
    held = np.array_split(np.random.default_rng(4).permutation(len(fr)), 3)[0]
    by_hand = build_predictor("glassmlp", THERMAL, hyper).fit_frames(
        [f for i, f in enumerate(fr) if i not in set(held.tolist())], seed=4)
    np.testing.assert_allclose(preds[held[0]], by_hand.predict_frame(fr[held[0]]), rtol=1e-12)
    in_sample = build_predictor("glassmlp", THERMAL, hyper).fit_frames(fr, seed=4).predict_frame(fr[held[0]])
    assert not np.allclose(preds[held[0]], in_sample)


def test_cage_features_match_the_isoconfigurational_runner():
    """Short-time propensity and cage-centre displacement equal those of bench.replicas (same seeds), and the
    family is rejected without its temperature or the thermal positions."""
    from glassgen.bench.replicas import run_isoconfigurational
    from glassgen.dynamics.initial import random_state
    from glassgen.dynamics.minimize import fire_minimize
    from glassgen.systems.model import load_model

    c = random_state("ka3d", 64, seed=2)
    c = fire_minimize(c, ftol=1e-3, max_iter=20000).configuration  # relaxed start: no huge forces
    x, names = D.cage_features(c.positions, c.positions, c.species, c.box, T=0.8, times=(0.05, 0.2),
                               n_replicas=2, seed=3, lengths=(2.0,), levels=1)
    ref = run_isoconfigurational(c.replace(model=load_model("ka3d")), T=0.8, times=[0.05, 0.2], n_replicas=2,
                                 seed=3, keep_replicas=True)
    for k, t in enumerate((0.05, 0.2)):
        np.testing.assert_allclose(x[:, names.index(f"R_t{t:g}")], ref.md_prop[k], rtol=1e-10)
        centre = np.linalg.norm(ref.replicas[k].mean(0) - c.positions, axis=1)
        np.testing.assert_allclose(x[:, names.index(f"CAGE_t{t:g}")], centre, rtol=1e-10, atol=1e-14)
    assert x.shape == (64, 3 * 2 * 2) and np.all(np.isfinite(x))
    st = D.DescriptorSettings(families=("cage",), model="ka3d")
    with pytest.raises(InputError):
        D.compute_descriptors(st, c.positions, c.species, c.box, thermal=c.positions)  # no temperature
    with pytest.raises(InputError):
        D.compute_descriptors(D.DescriptorSettings(families=("cage",), cage={"T": 0.8}), c.positions, c.species,
                              c.box)  # no thermal positions


def test_softness_rearrangement_law_is_measured_on_frames_it_was_not_trained_on():
    """P_R(S, T) counts only frames the SVM never saw (at most half of each trajectory's frames train it),
    and S outside the bin range is dropped rather than piled into the edge bins."""
    from glassgen.dynamics.initial import random_state
    from glassgen.predictors.softness import TrajectoryData, softness_study

    def synthetic(T: float, seed: int, n_frames: int = 160) -> TrajectoryData:
        rng = np.random.default_rng(seed)
        c = random_state("ka3d", 64, seed=seed)
        site = np.repeat(c.positions[None], n_frames, 0)
        for i in range(64):  # unit hops at random frames, more at the higher T; vibrations 0.03
            for f in np.nonzero(rng.random(n_frames) < 0.08 * np.exp(-1 / T))[0]:
                v = rng.normal(size=3)
                site[f:, i] += v / np.linalg.norm(v)
        return TrajectoryData(site + 0.03 * rng.normal(size=site.shape), c.species, c.box, T, 0.1)

    trajs = [synthetic(T, 3 + k) for k, T in enumerate((0.5, 0.8))]
    n_a = int(np.sum(trajs[0].species == 0))
    rows = np.arange(6, 160 - 2 * 3 - 6, 6).size  # frames t_R apart (half window 3, nr_window 6)
    n_eval = rows - rows // 2
    _, wide = softness_study(trajs, half_window=3, nr_window=6, n_train_frames=10**9, seed=1,
                             bins=np.array([-1e9, 1e9]))
    assert np.array_equal(wide["count"][:, 0], [n_eval * n_a] * 2)
    assert np.all(wide["hits"][:, 0] > 0) and wide["hits"][0, 0] < wide["hits"][1, 0]
    _, res = softness_study(trajs, half_window=3, nr_window=6, n_train_frames=10**9, seed=1)
    kept = res["count"].sum()
    assert 0.95 * 2 * n_eval * n_a < kept < 2 * n_eval * n_a  # the 0.5 % tails of S on either side dropped


def test_gnn_edge_target_uses_thermal_pair_vectors():
    """BOTAN's edge target <|r_ij(0) + d_j - d_i|> - |r_ij(0)| with the thermal r_ij(0), on the edges of the
    graph (built on the inherent state), brute force over the edges."""
    from types import SimpleNamespace

    from glassgen.predictors import DescriptorSettings, GNNPredictor
    from glassgen.predictors.data import Frame

    rng = np.random.default_rng(3)
    n, L = 40, 4.0
    box = np.full(3, L)
    thermal = rng.random((n, 3)) * L
    inherent = np.mod(thermal + 0.2 * rng.normal(size=(n, 3)), L)
    replicas = thermal + 0.4 * rng.normal(size=(3, n, 3))
    s = SimpleNamespace(positions=thermal, replicas=replicas, box=box, path="x", n=n)
    p = GNNPredictor(DescriptorSettings(inherent=True), r_edge=1.5, edge_weight=1.0)
    fr = Frame(np.zeros((n, 1)), np.zeros(n, np.int32), None, inherent, box, 1, 0.5)
    got = p._edge_target(s, fr)
    g = D.neighbour_list(inherent, box, 1.5)
    for e in range(0, g.r.size, 7):
        i, j = g.owner[e], g.nbr[e]
        r0 = thermal[j] - thermal[i]
        r0 -= L * np.round(r0 / L)
        d = replicas - thermal
        want = np.mean([np.linalg.norm(r0 + d[r, j] - d[r, i]) for r in range(3)]) - np.linalg.norm(r0)
        assert got[e] == pytest.approx(want, abs=1e-12)


def test_species_channels_cover_the_model():
    """KA2D has three species: a settings' nsp follows the model, and species outside nsp are a one-line
    error (the radial-shell kernel once wrote out of bounds with them)."""
    from glassgen.dynamics.initial import random_state

    assert D.DescriptorSettings.from_dict({"model": "ka2d", "families": ["boattini"]}).nsp == 3
    assert D.DescriptorSettings.from_dict({"model": "ka3d_sf"}).nsp == 2
    c = random_state("ka2d", 60, seed=1)
    assert c.species.max() == 2
    for fam in ("boattini", "softness", "glassmlp"):
        bad = D.DescriptorSettings(families=(fam,), model="ka2d", inherent=False)  # nsp left at 2
        with pytest.raises(InputError, match="nsp"):
            D.compute_descriptors(bad, c.positions, c.species, c.box)
    with pytest.raises(InputError, match="nsp"):
        D.softness_features(c.positions, c.species, c.box, nsp=2)
    good = D.DescriptorSettings(families=("boattini", "softness"), model="ka2d", inherent=False, nsp=3)
    x, _ = D.compute_descriptors(good, c.positions, c.species, c.box)
    assert np.all(np.isfinite(x))
    # the cage MD runs the settings' model unless the cage table names one
    assert D.DescriptorSettings(families=("cage",), model="ka3d_sf", cage={"T": 0.5}).cage["model"] == "ka3d_sf"
    assert D.DescriptorSettings(families=("cage",), model="ka3d_sf", cage={"T": 0.5, "model": "ka3d"}).cage[
        "model"] == "ka3d"


def test_cache_key_follows_content_not_file_stamp(tmp_path):
    """Two files with the same name, size and modification time but different positions never share a cache
    entry; the same content gives the same key wherever the file lies."""
    from types import SimpleNamespace

    from glassgen.predictors.data import sample_cache_key

    rng = np.random.default_rng(0)
    pos, sp, box = rng.random((10, 3)), np.zeros(10, np.int32), np.ones(3)
    other = pos.copy()
    other[3, 1] = np.nan
    a = SimpleNamespace(path=tmp_path / "a" / "s.npz", positions=pos, species=sp, box=box)
    b = SimpleNamespace(path=tmp_path / "b" / "s.npz", positions=other, species=sp, box=box)
    c = SimpleNamespace(path=tmp_path / "c" / "s.npz", positions=pos.copy(), species=sp, box=box)
    assert sample_cache_key(a) != sample_cache_key(b)
    assert sample_cache_key(a) == sample_cache_key(c)


def test_shipped_predictor_configs_find_their_data_from_any_folder(tmp_path, monkeypatch):
    """The data a shipped config names (``$GLASSGEN_DATA/...`` or a folder of the repository) resolves from any
    working directory; a ``../shared/data`` path only worked from the repository root."""
    from glassgen.api_predict import train_spec_from_config
    from glassgen.config import config_path, repo_root

    monkeypatch.setenv("GLASSGEN_DATA", str(tmp_path / "shared"))
    monkeypatch.chdir(tmp_path)
    configs = [c for c in sorted((repo_root() / "configs" / "predictors").glob("*.toml"))
               if "[predictor]" in c.read_text()]
    assert len(configs) >= 5
    for cfg in configs:
        data = Path(train_spec_from_config(cfg)["data"])
        assert data.is_absolute() and (data.is_relative_to(tmp_path / "shared") or data.is_dir()), (cfg.name, data)
    assert config_path("$GLASSGEN_DATA/ka3d-T0.44-isoconfig") == tmp_path / "shared" / "ka3d-T0.44-isoconfig"
    assert config_path("${GLASSGEN_DATA}/x") == tmp_path / "shared" / "x"
    assert config_path("datasets/ka3d_n500") == repo_root() / "datasets" / "ka3d_n500"
    (tmp_path / "datasets" / "ka3d_n500").mkdir(parents=True)  # the working directory's own folder wins
    assert config_path("datasets/ka3d_n500") == Path("datasets/ka3d_n500")


@pytest.mark.parametrize("kind, hyper, msg", [
    ("glassmlp", {"lr": -1}, "lr must be a number > 0"), ("glassmlp", {"lr": "fast"}, "lr must be a number"),
    ("glassmlp", {"hidden": 0}, "hidden must be an integer >= 1"), ("glassmlp", {"hidden": []}, "non-empty list"),
    ("glassmlp", {"n_ensemble": 0}, "n_ensemble must be an integer >= 1"),
    ("glassmlp", {"epochs1": -5}, "epochs1 must be an integer >= 1"), ("glassmlp", {"radii": [2.0, -1]}, "radii"),
    ("gnn", {"hidden": -3}, "hidden must be an integer >= 1"), ("gnn", {"epochs": 0}, "epochs must be an integer"),
    ("gnn", {"edge_weight": 2}, "edge_weight must be a number >= 0 and <= 1"), ("gnn", {"steps": 1.5}, "steps"),
    ("gnn", {"loss_species": [5]}, "loss_species must name species below 2")])
def test_bad_hyperparameters_are_refused_in_one_line(kind, hyper, msg, tmp_path, capsys):
    """Hyperparameters out of range or of the wrong type: one line, exit 2, before any training (they failed deep
    in torch with a traceback, or saved an untrained or NaN-predicting model with exit 0)."""
    import json as _json

    from glassgen.api_predict import build_predictor
    from glassgen.cli import main

    with pytest.raises(InputError, match=msg):
        build_predictor(kind, THERMAL, hyper)
    assert main(["predict", "train", "--kind", kind, "--data", str(tmp_path), "--time", "1", "--hyper",
                 _json.dumps(hyper), "--out", str(tmp_path / "m.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and msg.split()[0] in err, err
    build_predictor(kind, THERMAL, {})  # the defaults pass


def test_2d_data_with_the_default_3d_descriptor_model_names_the_fix(tmp_path):
    """KA2D samples with the default (KA 3D) descriptor model: one line that says how to set the model."""
    from glassgen.api_predict import train
    from glassgen.dynamics.initial import random_state
    from glassgen.systems.glassbench import GlassBenchSample, write_sample

    for i in (1, 2):
        c = random_state("ka2d", 43, seed=i)
        write_sample(tmp_path / f"N43T0.50_{i}.npz", GlassBenchSample(
            system="KA2D", T=0.5, index=i, species=c.species, positions=c.positions, box=c.box,
            times=np.array([1.0]), md_prop=np.ones((1, 43)), metadata={"split": "train"}))
    with pytest.raises(InputError, match="""the descriptors use the 3D model 'ka3d' but the data are 2D: set """
                                         """--descriptors '\\{"model": "ka2d"\\}'"""):
        train(kind="ridge", data=tmp_path, out=tmp_path / "m.npz", time=1.0, descriptors={"inherent": False})


def test_softness_law_command_resumes_at_the_temperature_in_progress(tmp_path, monkeypatch, capsys):
    """``predict softness-law`` keeps each finished temperature's trajectory: a study interrupted during the
    second temperature's MD reruns only that one and writes the uninterrupted law (provenance aside); the
    command line is recorded; bad settings are one-line errors."""
    import glassgen.predictors.softness as S
    from glassgen.cli import main

    args = ["predict", "softness-law", "--T", "0.7", "--T", "0.9", "--N", "128", "--t-prod", "40", "--seed", "3",
            "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "full.toml")]) == 0
    real, calls = S.simulate_trajectory, []

    def interrupted(*a, **k):
        calls.append(a[2])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    with monkeypatch.context() as mp:
        mp.setattr(S, "simulate_trajectory", interrupted)
        assert main([*args, "--out", str(tmp_path / "cut.toml")]) == 130
    assert "run the same command again to resume" in capsys.readouterr().err
    assert (tmp_path / "cut.toml.trajectories.npz").is_file() and not (tmp_path / "cut.toml").exists()
    calls.clear()
    monkeypatch.setattr(S, "simulate_trajectory", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    with pytest.warns(UserWarning, match="no softness bin had rearrangements at two or more temperatures"):
        assert main([*args, "--out", str(tmp_path / "cut.toml")]) == 0
    assert calls == [0.9] and not (tmp_path / "cut.toml.trajectories.npz").exists()

    def body(name):
        return [ln for ln in (tmp_path / name).read_text().splitlines() if not ln.startswith("provenance")]

    assert body("cut.toml") == body("full.toml")
    assert "softness-law --T 0.7" in (tmp_path / "full.toml").read_text()
    # so short a study finds too few rearrangements for a fit: said when it is written and when it is used
    assert "[softness.fit]\n\n" in (tmp_path / "full.toml").read_text()
    assert main(["trap-model", "run", "--model", "softness", "--softness-law", str(tmp_path / "full.toml"),
                 "--T", "0.6", "--out", str(tmp_path / "t.h5")]) == 2
    assert "has no fit" in capsys.readouterr().err
    two = ["--T", "0.7", "--T", "0.9"]
    for bad, msg in ((["--T", "0.7"], "at least two"), (["--T", "0.7", "--T", "-1"], "temperature"),
                     ([*two, "--t-prod", "0"], "t_prod > 0"), ([*two, "--t-prod", "nan"], "finite"),
                     ([*two, "--frame-dt", "0.0125"], "multiple of the MD step"),
                     ([*two, "--frame-dt", "0.001"], "multiple of the MD step"),
                     ([*two, "--t-prod", "3"], "shorter than two p_hop windows"),
                     ([*two, "--svm-out", str(tmp_path / "x.toml")], "NumPy .npz")):
        assert main(["predict", "softness-law", *bad, "--out", str(tmp_path / "x.toml")]) == 2
        assert msg in capsys.readouterr().err
    assert main(["predict", "softness-law", "--T", "0.7", "--T", "0.9", "--out", str(tmp_path / "x.h5")]) == 2
    assert "name it .toml" in capsys.readouterr().err
    # the finished temperatures of a study with other settings are not overwritten without a word
    with monkeypatch.context() as mp:
        mp.setattr(S, "simulate_trajectory", interrupted)
        calls.clear()
        assert main([*args, "--out", str(tmp_path / "other.toml")]) == 130
    capsys.readouterr()
    other = [a if a != "3" else "4" for a in args]  # another seed
    assert main([*other, "--out", str(tmp_path / "other.toml")]) == 2
    assert "holds trajectories of a softness study with other settings" in capsys.readouterr().err
