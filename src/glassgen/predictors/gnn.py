"""Message-passing GNN on positions (Bapst et al., Nat. Phys. 16, 448 (2020); BOTAN edge target optional).

Graph: particles are nodes (species one-hot), edges join pairs with r_ij < ``r_edge`` (our exact neighbour
list, :func:`glassgen.predictors.descriptors.neighbour_list`). Encoder-processor-decoder as Bapst et al.:
encoder MLPs embed nodes and edges to ``hidden``; ``steps`` processor blocks (own weights each), each a
residual edge update e += MLP_e([e, h_i, h_j]) and a residual node update h += MLP_v([h, s * sum_j e_ij]),
every MLP two layers with a LayerNorm on its output; a decoder MLP gives the per-particle output. The sum of
messages is scaled by s = 1 / (mean number of neighbours of the training graphs), so that it is O(1) while
still counting neighbours. float32 throughout.

Loss: mean squared error on the standardised propensity of the particles of ``loss_species`` (default A, as
Bapst), by default (``center_targets``) after removing each training configuration's mean propensity, which
varies between configurations far more than local structure can explain and otherwise swamps the per-step
gradients; with ``edge_weight`` > 0 and edge targets, BOTAN's 0.4 MSE_node + 0.6 MSE_edge is available through
``edge_weight = 0.6`` (edge target: the replica-averaged change of pair distance; needs replica positions, so
only isoconfig files provide it). Edge input: ``edge_features = "rbf"`` (default; rotation invariant: 16
Gaussians of r between 0.7 and r_edge; angles enter only through message passing) or ``"vector"`` (dx, dy, dz,
r, with rotation augmentation: the edge vectors of each training graph are rotated by a random rotation every
epoch).

Training: Adam, one whole configuration per step, ``epochs`` passes over the training configurations, learning
rate decayed from ``lr`` to ``lr_final`` by a cosine. A checkpoint (parameters, Adam moments, epoch) is written
every epoch when ``checkpoint`` is set, and training resumes from it. ``GLASSGEN_TORCH_THREADS`` sets torch's
threads when present.

Why the first version "did not learn" (pooled Pearson 0.19 on KA T = 0.44): the summed messages of ~40
LayerNorm'd edges (r < 1.8) entered the node MLP ~40 times larger than its other inputs, and without residual
connections every step re-normalised the state; on one configuration it still had training Pearson 0.23 after
200 Adam steps (this version: 0.48), and in float64 with the concatenated first layers a step cost 3.5 times
more, so the 400 steps it was given were far too few.

This is a small, CPU-affordable version (defaults hidden 32, steps 4, r_edge 1.8), not Bapst's full size
(64 x 64 MLPs, 7 steps, r < 2).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from glassgen.errors import InputError
from glassgen.predictors.base import Predictor, hyper_value, select_samples
from glassgen.predictors.data import Frame, inherent_positions, target
from glassgen.predictors.descriptors import neighbour_list
from glassgen.progress import progress_bar

__all__ = ["GNNPredictor"]


def _mlp(n_in: int, hidden: int, n_out: int, norm: bool = True) -> Any:
    import torch

    layers = [torch.nn.Linear(n_in, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, n_out)]
    if norm:
        layers.append(torch.nn.LayerNorm(n_out))
    return torch.nn.Sequential(*layers)


#: Gaussians of the rotation-invariant edge encoding
N_RBF = 16


def _module(nsp: int, hidden: int, n_edge: int = 4, steps: int = 4) -> Any:
    """Encoder-processor-decoder with residual, LayerNorm'd edge and node updates (one core per step)."""
    import torch

    h = hidden

    class Core(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            # first layer of MLP_e([e, h_src, h_dst]) split in three, so that the node terms are computed per node
            self.e_lin = torch.nn.Linear(h, h)
            self.s_lin = torch.nn.Linear(h, h, bias=False)
            self.d_lin = torch.nn.Linear(h, h, bias=False)
            self.e_out = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(h, h), torch.nn.LayerNorm(h))
            self.v_mlp = _mlp(2 * h, h, h)

    m = torch.nn.ModuleDict({
        "enc_v": _mlp(nsp, h, h), "enc_e": _mlp(n_edge, h, h),
        "core": torch.nn.ModuleList([Core() for _ in range(steps)]),
        "dec": _mlp(h, h, 1, norm=False), "dec_e": _mlp(h, h, 1, norm=False),
    })
    return m


def _forward(m: Any, onehot: Any, src: Any, dst: Any, edge: Any, steps: int, agg_scale: float = 1.0) -> tuple[Any, Any]:
    """Node and edge outputs; messages are summed over the incoming edges and scaled by ``agg_scale``."""
    import torch

    v = m["enc_v"](onehot)
    e = m["enc_e"](edge)
    for core in m["core"][:steps]:
        e = e + core.e_out(core.e_lin(e) + core.s_lin(v)[src] + core.d_lin(v)[dst])
        agg = torch.zeros_like(v).index_add_(0, dst, e) * agg_scale
        v = v + core.v_mlp(torch.cat([v, agg], 1))
    return m["dec"](v).squeeze(-1), m["dec_e"](e).squeeze(-1)


def _training_data_key(frames: list[Frame]) -> str:
    """SHA-256 of what a GNN is fitted to (positions, species, box and target of every frame, in order): a
    checkpoint resumes only the training it was written by."""
    h = hashlib.sha256()
    for f in frames:
        for a in (f.positions, f.species, f.box, f.target):
            a = np.ascontiguousarray(a)
            h.update(str((a.dtype.str, a.shape)).encode())
            h.update(a.tobytes())
    return h.hexdigest()


def _random_rotation(rng: np.random.Generator, d: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


class GNNPredictor(Predictor):
    """Bapst-style GNN (see the module docstring). Hyperparameters: hidden 32, steps 4, r_edge 1.8, epochs 30
    (passes over the training configurations, one configuration per Adam step), lr 1e-3 decayed to lr_final 1e-5
    (cosine), loss_species [0], edge_weight 0.0, edge_features 'rbf', center_targets True, checkpoint None."""

    kind = "gnn"

    def __init__(self, settings: Any = None, hidden: int = 32, steps: int = 4, r_edge: float = 1.8, epochs: int = 30,
                 lr: float = 1e-3, lr_final: float = 1e-5, loss_species: list[int] | None = None,
                 edge_weight: float = 0.0, checkpoint: str | None = None, edge_features: str = "rbf",
                 center_targets: bool = True, **hyper: Any) -> None:
        k = "gnn"
        super().__init__(settings, hidden=hyper_value(k, "hidden", hidden, integer=True, minimum=1),
                         steps=hyper_value(k, "steps", steps, integer=True, minimum=1),
                         r_edge=hyper_value(k, "r_edge", r_edge, minimum=0, above=True),
                         epochs=hyper_value(k, "epochs", epochs, integer=True, minimum=1),
                         lr=hyper_value(k, "lr", lr, minimum=0, above=True),
                         lr_final=hyper_value(k, "lr_final", lr_final, minimum=0, above=True),
                         loss_species=hyper_value(k, "loss_species", list(loss_species if loss_species is not None
                                                                          else [0]), integer=True, minimum=0),
                         edge_weight=hyper_value(k, "edge_weight", edge_weight, minimum=0, maximum=1),
                         checkpoint=checkpoint, edge_features=edge_features,
                         center_targets=bool(center_targets), **hyper)
        if max(self.hyper["loss_species"]) >= self.settings.nsp:
            raise InputError(f"gnn hyperparameter loss_species must name species below {self.settings.nsp}, got "
                             f"{self.hyper['loss_species']}")
        if edge_features not in ("vector", "rbf"):
            raise InputError(f"edge_features must be 'vector' or 'rbf', got {edge_features!r}")
        self.net = self._new_net()
        self.y_mean = 0.0
        self.y_std = 1.0
        self.agg_scale = 1.0

    def _new_net(self) -> Any:
        h = self.hyper
        return _module(self.settings.nsp, h["hidden"], N_RBF if h["edge_features"] == "rbf" else 4, h["steps"])

    def _lr(self, epoch: int) -> float:
        """Cosine decay from lr (first epoch) to lr_final (last epoch)."""
        h = self.hyper
        frac = epoch / max(h["epochs"] - 1, 1)
        return float(h["lr_final"] + 0.5 * (h["lr"] - h["lr_final"]) * (1 + np.cos(np.pi * frac)))

    # graphs -------------------------------------------------------------------------------------------
    def _graph(self, positions: np.ndarray, species: np.ndarray, box: np.ndarray) -> dict[str, Any]:
        import torch

        nl = neighbour_list(positions, box, self.hyper["r_edge"])
        dr = nl.dr if nl.dr.shape[1] == 3 else np.pad(nl.dr, ((0, 0), (0, 3 - nl.dr.shape[1])))
        onehot = np.eye(self.settings.nsp, dtype=np.float32)[np.asarray(species, dtype=np.int64)]
        return {"onehot": torch.from_numpy(onehot), "src": torch.from_numpy(nl.nbr),
                "dst": torch.from_numpy(nl.owner), "dr": dr, "r": nl.r, "nbr": nl.nbr, "owner": nl.owner,
                "degree": nl.nbr.size / max(len(species), 1)}

    def _edges(self, g: dict[str, Any], rot: np.ndarray | None) -> Any:
        import torch

        if self.hyper["edge_features"] == "rbf":  # rotation invariant: Gaussian expansion of r
            mu = np.linspace(0.7, self.hyper["r_edge"], N_RBF)
            width = mu[1] - mu[0]
            return torch.from_numpy(np.exp(-0.5 * ((g["r"][:, None] - mu) / width) ** 2).astype(np.float32))
        dr = g["dr"] if rot is None else g["dr"] @ rot.T
        return torch.from_numpy(np.column_stack([dr, g["r"]]).astype(np.float32))

    def fit(self, dataset: Any, time: float | None, T: float | None = None, split: str | None = "train",
            indices: list[int] | None = None, seed: int = 0, progress: bool = False) -> GNNPredictor:
        samples = select_samples(dataset, T, split, indices)
        fr = [self.frame(s, time) for s in samples]
        self.info.update({"time": time, "T_train": sorted({s.T for s in samples}),
                          "train_indices": [s.index for s in samples], "seed": int(seed), "n_train": len(samples),
                          "N": int(samples[0].n)})
        edge_targets = None
        if self.hyper["edge_weight"] > 0:
            edge_targets = [self._edge_target(s, f) for s, f in zip(samples, fr, strict=True)]
        return self._train(fr, seed, progress, edge_targets)

    def _edge_target(self, s: Any, f: Frame) -> np.ndarray:
        if s.replicas is None:
            raise InputError(f"{s.path}: the BOTAN edge target needs replica positions")
        from glassgen.observables.isoconfig import displacements
        from glassgen.systems.configuration import minimum_image

        g = neighbour_list(f.positions, f.box, self.hyper["r_edge"])  # the graph's edges (its input state)
        disp = displacements(s.positions, s.replicas, s.box)  # (R, N, d), from the thermal configuration
        # BOTAN's edge target: the change of the pair distance from the thermal configuration on, with the
        # thermal r_ij(0) throughout (the graph may be built on the inherent state)
        dr0 = minimum_image(np.asarray(s.positions, np.float64)[g.nbr] - np.asarray(s.positions, np.float64)[g.owner],
                            np.asarray(s.box, np.float64))
        rel = dr0[None] + disp[:, g.nbr] - disp[:, g.owner]
        return np.linalg.norm(rel, axis=-1).mean(0) - np.linalg.norm(dr0, axis=-1)

    def frame(self, sample: Any, time: float | None, with_target: bool = True) -> Frame:
        s = sample
        x = inherent_positions(s, self.settings.model, self.settings.ftol) if self.settings.inherent else s.positions
        return Frame(np.zeros((s.n, 1)), s.species, target(s, time) if with_target else None, x, s.box, s.index, s.T)

    def fit_frames(self, fr: list[Frame], seed: int = 0, progress: bool = False) -> GNNPredictor:
        self.qmap = None
        self._train(fr, seed, progress, None)
        if self.hyper.get("calibrate", "none") == "quantile":
            self._fit_quantile_map(fr, seed)
        return self

    def _train(self, fr: list[Frame], seed: int, progress: bool, edge_targets: list[np.ndarray] | None) -> GNNPredictor:
        import os
        import time as _time

        import torch

        if os.environ.get("GLASSGEN_TORCH_THREADS"):
            torch.set_num_threads(int(os.environ["GLASSGEN_TORCH_THREADS"]))
        h = self.hyper
        self.mean = np.zeros((self.settings.nsp, 1))
        self.std = np.ones((self.settings.nsp, 1))
        sel = [np.isin(f.species, h["loss_species"]) for f in fr]
        ys = [np.asarray(f.target, dtype=np.float64) for f in fr]
        # per-configuration offsets of the propensity (KA T = 0.44: config means 0.43-0.70) are not a function of
        # local structure; with center_targets each configuration's mean is removed before the loss
        offs = [float(y[m].mean()) if h["center_targets"] else 0.0 for y, m in zip(ys, sel, strict=True)]
        pooled = np.concatenate([y[m] for y, m in zip(ys, sel, strict=True)])
        self.y_mean = float(pooled.mean())
        self.y_std = float(np.concatenate([y[m] - o for y, m, o in zip(ys, sel, offs, strict=True)]).std())
        if h["center_targets"]:
            offs = [o - self.y_mean for o in offs]
        graphs = [self._graph(f.positions, f.species, f.box) for f in fr]
        self.agg_scale = float(1.0 / max(np.mean([g["degree"] for g in graphs]), 1e-12))
        targets = [torch.from_numpy(((y - o - self.y_mean) / self.y_std).astype(np.float32))
                   for y, o in zip(ys, offs, strict=True)]
        masks = [torch.from_numpy(m) for m in sel]
        torch.manual_seed(seed)
        self.net = self._new_net()
        opt = torch.optim.Adam(self.net.parameters(), lr=h["lr"])
        start = 0
        ck = Path(h["checkpoint"]) if h.get("checkpoint") else None
        self._data_key = _training_data_key(fr)
        if ck is not None and ck.is_file():
            start = self._load_checkpoint(ck, seed, opt)
        rng = np.random.default_rng(seed)
        for _ in range(start):  # keep the augmentation/order streams identical after a resume
            rng.permutation(len(fr))
            [_random_rotation(rng, 3) for _ in fr]
        history = list(self.info.get("loss_history", []))[:start]
        rbf = h["edge_features"] == "rbf"
        fixed_edges = [self._edges(g, None) for g in graphs] if rbf else None
        t_cpu = _time.process_time() - float(self.info.get("train_cpu_seconds", 0.0) if start else 0.0)
        with progress_bar(h["epochs"], "GNN", progress) as advance:
            advance(start)
            for epoch in range(start, h["epochs"]):
                for group in opt.param_groups:
                    group["lr"] = self._lr(epoch)
                order = rng.permutation(len(fr))
                rots = [_random_rotation(rng, 3) for _ in fr]
                tot = 0.0
                for k in order:
                    g = graphs[k]
                    edges = fixed_edges[k] if fixed_edges is not None else self._edges(g, rots[k])
                    out, eout = _forward(self.net, g["onehot"], g["src"], g["dst"], edges, h["steps"],
                                         self.agg_scale)
                    loss = ((out - targets[k])[masks[k]] ** 2).mean()
                    if edge_targets is not None:
                        et = torch.from_numpy((edge_targets[k] / self.y_std).astype(np.float32))
                        loss = (1 - h["edge_weight"]) * loss + h["edge_weight"] * ((eout - et) ** 2).mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    tot += float(loss.detach())
                history.append(tot / len(fr))
                self.info["loss_history"] = history
                self.info["train_cpu_seconds"] = _time.process_time() - t_cpu
                if ck is not None:
                    self._save_checkpoint(ck, epoch + 1, seed, opt)
                advance(1)
        self.info["optimizer_steps"] = h["epochs"] * len(fr)
        return self

    def _save_checkpoint(self, path: Path, epoch: int, seed: int, opt: Any = None) -> None:
        from glassgen.provenance import atomic_path

        arrays = {f"p_{k}": v.numpy() for k, v in self.net.state_dict().items()}
        if opt is not None:  # Adam moments, so that a resumed run continues exactly
            for i, st in opt.state_dict()["state"].items():
                for name, val in st.items():
                    arrays[f"o_{i}_{name}"] = np.asarray(val.numpy() if hasattr(val, "numpy") else val)
        meta = {"epoch": epoch, "seed": seed, "hyper": {k: v for k, v in self.hyper.items() if k != "checkpoint"},
                "data": getattr(self, "_data_key", None),
                "loss_history": self.info.get("loss_history", []),
                "train_cpu_seconds": self.info.get("train_cpu_seconds", 0.0)}
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, meta=np.asarray(json.dumps(meta)), **arrays)

    def _load_checkpoint(self, path: Path, seed: int, opt: Any = None) -> int:
        import torch

        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            want = {k: v for k, v in self.hyper.items() if k != "checkpoint"}
            if meta["seed"] != seed or meta["hyper"] != json.loads(json.dumps(want)):
                raise InputError(f"checkpoint {path} was written with other settings; remove it to start afresh")
            if meta.get("data") != getattr(self, "_data_key", None):
                raise InputError(f"checkpoint {path} was written for other training data (temperature, lag time, "
                                 "samples or descriptors); remove it to start afresh")
            self.net.load_state_dict({k[2:]: torch.from_numpy(np.array(z[k])) for k in z.files if k.startswith("p_")})
            if opt is not None and any(k.startswith("o_") for k in z.files):
                sd = opt.state_dict()
                state: dict[int, dict[str, Any]] = {}
                for k in z.files:
                    if k.startswith("o_"):
                        i, name = k[2:].split("_", 1)
                        state.setdefault(int(i), {})[name] = torch.from_numpy(np.array(z[k]))
                sd["state"] = state
                opt.load_state_dict(sd)
        self.info["loss_history"] = meta["loss_history"]
        self.info["train_cpu_seconds"] = float(meta.get("train_cpu_seconds", 0.0))
        return int(meta["epoch"])

    # prediction ------------------------------------------------------------------------------------------
    def _raw_prediction(self, positions: np.ndarray, species: np.ndarray, box: np.ndarray) -> np.ndarray:
        import torch

        g = self._graph(np.asarray(positions, dtype=np.float64), species, box)
        with torch.no_grad():
            out, _ = _forward(self.net, g["onehot"], g["src"], g["dst"], self._edges(g, None), self.hyper["steps"],
                              self.agg_scale)
        return out.numpy().astype(np.float64) * self.y_std + self.y_mean

    def score_structure(self, positions: np.ndarray, species: np.ndarray, box: np.ndarray,
                        thermal: np.ndarray | None = None) -> np.ndarray:
        return self._apply_quantile_map(self._raw_prediction(positions, species, box),
                                        np.asarray(species, dtype=np.int64))

    def _calibration_predictions(self, fr: list[Frame], seed: int) -> tuple[list[np.ndarray], str]:
        if int(self.hyper.get("calibration_folds") or 0) >= 2:
            return super()._calibration_predictions(fr, seed)
        return [self._raw_prediction(f.positions, f.species, f.box) for f in fr], "in-sample"

    def predict_frame(self, frame: Frame) -> np.ndarray:
        return self.score_structure(frame.positions, frame.species, frame.box)

    def _arrays(self) -> dict[str, np.ndarray]:
        arr = {f"p.{k}": v.numpy() for k, v in self.net.state_dict().items()}
        arr["y_norm"] = np.array([self.y_mean, self.y_std])
        arr["agg_scale"] = np.array(self.agg_scale)
        return arr

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        import torch

        params = {k[2:]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("p.")}
        if "agg_scale" not in arrays or set(params) != set(self.net.state_dict()):
            raise InputError("this GNN file was written by an older, incompatible GNN version; retrain it")
        self.net.load_state_dict(params)
        self.y_mean, self.y_std = (float(v) for v in arrays["y_norm"])
        self.agg_scale = float(arrays["agg_scale"])
