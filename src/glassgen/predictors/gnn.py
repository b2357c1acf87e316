"""Message-passing GNN on positions (Bapst et al., Nat. Phys. 16, 448 (2020); BOTAN edge target optional).

Graph: particles are nodes (species one-hot), edges join pairs with r_ij < ``r_edge`` (our exact neighbour
list, :func:`glassgen.predictors.descriptors.neighbour_list`), edge input (dx, dy, dz, r). Encoder MLPs
embed nodes and edges to ``hidden``; a shared core is applied ``steps`` times, each time on the concatenation
of the encoded inputs and the current state (as Bapst's encode-process-decode):
e' = MLP_e([e0, e, h_i, h_j]), h' = MLP_v([h0, h, sum_j e'_ij]); a decoder MLP gives the per-particle output.
Loss: mean squared error on the particles of ``loss_species`` (default A, as Bapst); with ``edge_weight`` > 0
and edge targets, BOTAN's 0.4 MSE_node + 0.6 MSE_edge is available through ``edge_weight = 0.6`` (edge target:
the replica-averaged change of pair distance; needs replica positions, so only isoconfig files provide it).
Edge input: ``edge_features = "vector"`` (Bapst: dx, dy, dz, r, with rotation augmentation: the edge vectors
of each training graph are rotated by a random rotation every epoch) or ``"rbf"`` (rotation invariant: 16
Gaussians of r between 0.7 and r_edge; angles enter only through message passing).
Training: Adam, one configuration per step; a checkpoint (parameters and epoch, not the Adam moments) is written
every epoch when ``checkpoint`` is set, and training resumes from it.

This is a small, CPU-affordable version (defaults hidden 32, steps 4, r_edge 1.8), not Bapst's full size
(64 x 64 MLPs, 7 steps, r < 2).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from glassgen.errors import InputError
from glassgen.predictors.base import Predictor, select_samples
from glassgen.predictors.data import Frame, inherent_positions, target
from glassgen.predictors.descriptors import neighbour_list
from glassgen.progress import progress_bar

__all__ = ["GNNPredictor"]


def _mlp(n_in: int, hidden: int, n_out: int) -> Any:
    import torch

    return torch.nn.Sequential(torch.nn.Linear(n_in, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, n_out),
                               torch.nn.LayerNorm(n_out)).double()


#: Gaussians of the rotation-invariant edge encoding
N_RBF = 16


def _module(nsp: int, hidden: int, n_edge: int = 4) -> Any:
    import torch

    m = torch.nn.ModuleDict({
        "enc_v": _mlp(nsp, hidden, hidden), "enc_e": _mlp(n_edge, hidden, hidden),
        "core_e": _mlp(4 * hidden, hidden, hidden), "core_v": _mlp(3 * hidden, hidden, hidden),
        "dec": torch.nn.Sequential(torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
                                   torch.nn.Linear(hidden, 1)).double(),
        "dec_e": torch.nn.Sequential(torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
                                     torch.nn.Linear(hidden, 1)).double(),
    })
    return m


def _forward(m: Any, onehot: Any, src: Any, dst: Any, edge: Any, steps: int) -> tuple[Any, Any]:
    import torch

    v0 = m["enc_v"](onehot)
    e0 = m["enc_e"](edge)
    v, e = v0, e0
    for _ in range(steps):
        e = m["core_e"](torch.cat([e0, e, v[src], v[dst]], 1))
        agg = torch.zeros_like(v).index_add_(0, dst, e)
        v = m["core_v"](torch.cat([v0, v, agg], 1))
    return m["dec"](v).squeeze(-1), m["dec_e"](e).squeeze(-1)


def _random_rotation(rng: np.random.Generator, d: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


class GNNPredictor(Predictor):
    """Bapst-style GNN (see the module docstring). Hyperparameters: hidden 32, steps 4, r_edge 1.8, epochs 30,
    lr 1e-3, loss_species [0], edge_weight 0.0, checkpoint None."""

    kind = "gnn"

    def __init__(self, settings: Any = None, hidden: int = 32, steps: int = 4, r_edge: float = 1.8, epochs: int = 30,
                 lr: float = 1e-3, loss_species: list[int] | None = None, edge_weight: float = 0.0,
                 checkpoint: str | None = None, edge_features: str = "vector", **hyper: Any) -> None:
        super().__init__(settings, hidden=int(hidden), steps=int(steps), r_edge=float(r_edge), epochs=int(epochs),
                         lr=float(lr), loss_species=list(loss_species if loss_species is not None else [0]),
                         edge_weight=float(edge_weight), checkpoint=checkpoint, edge_features=edge_features,
                         **hyper)
        if edge_features not in ("vector", "rbf"):
            raise InputError(f"edge_features must be 'vector' or 'rbf', got {edge_features!r}")
        self.net = self._new_net()
        self.y_mean = 0.0
        self.y_std = 1.0

    def _new_net(self) -> Any:
        return _module(self.settings.nsp, self.hyper["hidden"], N_RBF if self.hyper["edge_features"] == "rbf" else 4)

    # graphs -------------------------------------------------------------------------------------------
    def _graph(self, positions: np.ndarray, species: np.ndarray, box: np.ndarray) -> dict[str, Any]:
        import torch

        nl = neighbour_list(positions, box, self.hyper["r_edge"])
        dr = nl.dr if nl.dr.shape[1] == 3 else np.pad(nl.dr, ((0, 0), (0, 3 - nl.dr.shape[1])))
        onehot = np.eye(self.settings.nsp)[np.asarray(species, dtype=np.int64)]
        return {"onehot": torch.from_numpy(onehot), "src": torch.from_numpy(nl.nbr),
                "dst": torch.from_numpy(nl.owner), "dr": dr, "r": nl.r, "nbr": nl.nbr, "owner": nl.owner}

    def _edges(self, g: dict[str, Any], rot: np.ndarray | None) -> Any:
        import torch

        if self.hyper["edge_features"] == "rbf":  # rotation invariant: Gaussian expansion of r
            mu = np.linspace(0.7, self.hyper["r_edge"], N_RBF)
            width = mu[1] - mu[0]
            return torch.from_numpy(np.exp(-0.5 * ((g["r"][:, None] - mu) / width) ** 2))
        dr = g["dr"] if rot is None else g["dr"] @ rot.T
        return torch.from_numpy(np.column_stack([dr, g["r"]]))

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

        g = neighbour_list(f.positions, f.box, self.hyper["r_edge"])
        disp = displacements(s.positions, s.replicas, s.box)  # (R, N, d)
        rel = g.dr[None] + disp[:, g.nbr] - disp[:, g.owner]
        return np.linalg.norm(rel, axis=-1).mean(0) - g.r

    def frame(self, sample: Any, time: float | None, with_target: bool = True) -> Frame:
        s = sample
        x = inherent_positions(s, self.settings.model, self.settings.ftol) if self.settings.inherent else s.positions
        return Frame(np.zeros((s.n, 1)), s.species, target(s, time) if with_target else None, x, s.box, s.index, s.T)

    def fit_frames(self, fr: list[Frame], seed: int = 0, progress: bool = False) -> GNNPredictor:
        return self._train(fr, seed, progress, None)

    def _train(self, fr: list[Frame], seed: int, progress: bool, edge_targets: list[np.ndarray] | None) -> GNNPredictor:
        import torch

        h = self.hyper
        self.mean = np.zeros((self.settings.nsp, 1))
        self.std = np.ones((self.settings.nsp, 1))
        ys = np.concatenate([f.target[np.isin(f.species, h["loss_species"])] for f in fr])  # type: ignore[index]
        self.y_mean, self.y_std = float(ys.mean()), float(ys.std())
        graphs = [self._graph(f.positions, f.species, f.box) for f in fr]
        targets = [torch.from_numpy((np.asarray(f.target) - self.y_mean) / self.y_std) for f in fr]
        masks = [torch.from_numpy(np.isin(f.species, h["loss_species"])) for f in fr]
        torch.manual_seed(seed)
        self.net = self._new_net()
        opt = torch.optim.Adam(self.net.parameters(), lr=h["lr"])
        start = 0
        ck = Path(h["checkpoint"]) if h.get("checkpoint") else None
        if ck is not None and ck.is_file():
            start = self._load_checkpoint(ck, seed)
        rng = np.random.default_rng(seed)
        for _ in range(start):  # keep the augmentation/order streams identical after a resume
            rng.permutation(len(fr))
            [_random_rotation(rng, 3) for _ in fr]
        history = list(self.info.get("loss_history", []))[:start]
        with progress_bar(h["epochs"], "GNN", progress) as advance:
            advance(start)
            for epoch in range(start, h["epochs"]):
                order = rng.permutation(len(fr))
                rots = [_random_rotation(rng, 3) for _ in fr]
                tot = 0.0
                for k in order:
                    g = graphs[k]
                    out, eout = _forward(self.net, g["onehot"], g["src"], g["dst"], self._edges(g, rots[k]), h["steps"])
                    loss = ((out - targets[k])[masks[k]] ** 2).mean()
                    if edge_targets is not None:
                        et = torch.from_numpy(edge_targets[k] / self.y_std)
                        loss = (1 - h["edge_weight"]) * loss + h["edge_weight"] * ((eout - et) ** 2).mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    tot += float(loss.detach())
                history.append(tot / len(fr))
                self.info["loss_history"] = history
                if ck is not None:
                    self._save_checkpoint(ck, epoch + 1, seed)
                advance(1)
        return self

    def _save_checkpoint(self, path: Path, epoch: int, seed: int) -> None:
        from glassgen.provenance import atomic_path

        arrays = {k: v.numpy() for k, v in self.net.state_dict().items()}
        meta = {"epoch": epoch, "seed": seed, "hyper": {k: v for k, v in self.hyper.items() if k != "checkpoint"},
                "loss_history": self.info.get("loss_history", [])}
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, meta=np.asarray(json.dumps(meta)), **{f"p_{k}": v for k, v in arrays.items()})

    def _load_checkpoint(self, path: Path, seed: int) -> int:
        import torch

        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            want = {k: v for k, v in self.hyper.items() if k != "checkpoint"}
            if meta["seed"] != seed or meta["hyper"] != json.loads(json.dumps(want)):
                raise InputError(f"checkpoint {path} was written with other settings; remove it to start afresh")
            self.net.load_state_dict({k[2:]: torch.from_numpy(np.array(z[k])) for k in z.files if k.startswith("p_")})
        self.info["loss_history"] = meta["loss_history"]
        return int(meta["epoch"])

    # prediction ------------------------------------------------------------------------------------------
    def score_structure(self, positions: np.ndarray, species: np.ndarray, box: np.ndarray) -> np.ndarray:
        import torch

        g = self._graph(np.asarray(positions, dtype=np.float64), species, box)
        with torch.no_grad():
            out, _ = _forward(self.net, g["onehot"], g["src"], g["dst"], self._edges(g, None), self.hyper["steps"])
        return out.numpy() * self.y_std + self.y_mean

    def predict_frame(self, frame: Frame) -> np.ndarray:
        return self.score_structure(frame.positions, frame.species, frame.box)

    def _arrays(self) -> dict[str, np.ndarray]:
        arr = {f"p.{k}": v.numpy() for k, v in self.net.state_dict().items()}
        arr["y_norm"] = np.array([self.y_mean, self.y_std])
        return arr

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        import torch

        self.net.load_state_dict({k[2:]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("p.")})
        self.y_mean, self.y_std = (float(v) for v in arrays["y_norm"])
