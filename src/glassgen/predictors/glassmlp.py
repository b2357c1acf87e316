"""GlassMLP (Jung, Biroli, Berthier PRL 130, 238202 (2023)): a small MLP per species with a two-stage loss.

Network per species (and per lag time): input -> Dense(2, ELU) -> Dense(10, ELU) -> Dense(10, ELU) -> 1, on the
standardised descriptors (the GlassMLP set of :func:`glassgen.predictors.descriptors.glassmlp_features`, or any
other family). Training, one configuration per batch, Adam:

* stage 1 (``epochs1``): L_1 = mean|y - yhat| / std(y);
* stage 2 (``epochs2``): L_1 + ``w_corr`` L_corr + ``w_var`` L_var, with
  L_var = |Var(yhat) - Var(y)| / Var(y) per configuration, and L_corr = sum_k |C_k(xhat) - C_k(x)| / sum_k |C_k(x)|
  where x = (tanh(20 (R - a)) + 1)/2 is the smooth-thresholded field and
  C_k(x) = sum_{i != j} g_k(r_ij) dx_i dx_j / sum_{i != j} g_k(r_ij), dx = x - mean(x),
  g_k(r) = exp(-(r - r_k)^2 / 2), r_k = 2, 4, 6 (sigma_AA). To bound memory, C_k is estimated on a fixed random
  subset of ``n_corr`` particles per configuration (drawn with the training seed). The threshold a is
  ``threshold`` when given, else 0.3 (the GlassBench chi_4 threshold) when it lies between the 20 % and 80 %
  quantiles of the training targets, else their median (KA T = 0.44 at tau_alpha: 87 % of the A particles
  have R > 0.3, so the median, 0.525, is used).

Calibration (``calibrate = "meanvar"``, fitted on the training configurations only): per species, the linear map
c0 + c1 yhat that gives the pooled training predictions the mean and variance of the pooled training targets.
It leaves every Pearson coefficient unchanged and only moves where the GlassBench threshold R > 0.3 falls on
the predicted field (chi_4, R^2). Per-configuration statistics of the training fit are kept in
``info["calibration"]``.

float64 throughout; ``torch.set_num_threads`` is left to the caller.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from glassgen.predictors.base import Predictor, hyper_value
from glassgen.predictors.data import Frame
from glassgen.progress import progress_bar

__all__ = ["GlassMLPPredictor"]


def _net(n_in: int, hidden: tuple[int, ...]) -> Any:
    import torch

    layers: list[Any] = []
    prev = n_in
    for h in hidden:
        layers += [torch.nn.Linear(prev, h), torch.nn.ELU()]
        prev = h
    layers.append(torch.nn.Linear(prev, 1))
    return torch.nn.Sequential(*layers).double()


def _shells(pos: np.ndarray, box: np.ndarray, radii: tuple[float, ...]) -> np.ndarray:
    dr = pos[None, :, :] - pos[:, None, :]
    dr -= box * np.round(dr / box)
    r = np.sqrt((dr * dr).sum(-1))
    g = np.exp(-0.5 * (r[None] - np.asarray(radii)[:, None, None]) ** 2)
    for k in range(g.shape[0]):
        np.fill_diagonal(g[k], 0.0)
        g[k] /= g[k].sum()
    return g


class GlassMLPPredictor(Predictor):
    """GlassMLP with the two-stage loss (see the module docstring).

    Hyperparameters: hidden (2, 10, 10), epochs1 300, epochs2 150, lr 1e-3, w_corr 0.5, w_var 1.0,
    n_corr 800, radii (2, 4, 6), n_ensemble 1 (average of nets trained with seeds seed, seed + 1, ...),
    threshold None (the rule above), calibrate 'none' ('meanvar': see above; 'quantile': the
    monotone map of :mod:`glassgen.predictors.base`, fitted in-sample).
    """

    kind = "glassmlp"
    extra_calibrations = ("meanvar",)

    def __init__(self, settings: Any = None, hidden: tuple[int, ...] | list[int] = (2, 10, 10), epochs1: int = 300,
                 epochs2: int = 150, lr: float = 1e-3, w_corr: float = 0.5, w_var: float = 1.0, n_corr: int = 800,
                 radii: tuple[float, ...] | list[float] = (2.0, 4.0, 6.0), n_ensemble: int = 1,
                 threshold: float | None = None, calibrate: str = "none", **hyper: Any) -> None:
        k = "glassmlp"
        super().__init__(settings, hidden=hyper_value(k, "hidden", list(hidden) if isinstance(hidden, (list, tuple))
                                                      else hidden, integer=True, minimum=1),
                         epochs1=hyper_value(k, "epochs1", epochs1, integer=True, minimum=1),
                         epochs2=hyper_value(k, "epochs2", epochs2, integer=True, minimum=0),
                         lr=hyper_value(k, "lr", lr, minimum=0, above=True),
                         w_corr=hyper_value(k, "w_corr", w_corr, minimum=0),
                         w_var=hyper_value(k, "w_var", w_var, minimum=0),
                         n_corr=hyper_value(k, "n_corr", n_corr, integer=True, minimum=1),
                         radii=hyper_value(k, "radii", list(radii) if isinstance(radii, (list, tuple)) else radii,
                                           minimum=0, above=True),
                         n_ensemble=hyper_value(k, "n_ensemble", n_ensemble, integer=True, minimum=1),
                         threshold=None if threshold is None else hyper_value(k, "threshold", threshold),
                         calibrate=calibrate, **hyper)
        self.nets: dict[tuple[int, int], Any] = {}
        self.threshold = np.full(self.settings.nsp, 0.3)
        self.calib = np.tile([0.0, 1.0], (self.settings.nsp, 1))  # per species: yhat -> c0 + c1 yhat

    def _new_nets(self, n_in: int) -> None:
        self.nets = {(s, e): _net(n_in, tuple(self.hyper["hidden"]))
                     for s in range(self.settings.nsp) for e in range(self.hyper["n_ensemble"])}

    def _fit(self, fr: list[Frame], seed: int, progress: bool) -> None:
        import torch

        h = self.hyper
        nsp = self.settings.nsp
        rng = np.random.default_rng(seed)
        data: dict[int, list[tuple[Any, ...]]] = {s: [] for s in range(nsp)}
        for s in range(nsp):
            ys_all = np.concatenate([f.target[f.species == s] for f in fr])  # type: ignore[index]
            if ys_all.size == 0:
                continue
            q20, q80 = np.quantile(ys_all, [0.2, 0.8])
            if h.get("threshold") is not None:
                self.threshold[s] = float(h["threshold"])
            else:
                self.threshold[s] = 0.3 if q20 <= 0.3 <= q80 else float(np.median(ys_all))
            for f in fr:
                m = f.species == s
                x = torch.from_numpy(self.standardise(f.features[m], f.species[m]))
                y = torch.from_numpy(np.asarray(f.target[m], dtype=np.float64))  # type: ignore[index]
                sub = np.sort(rng.choice(int(m.sum()), size=min(h["n_corr"], int(m.sum())), replace=False))
                g = torch.from_numpy(_shells(f.positions[m][sub], f.box, tuple(h["radii"])))
                data[s].append((x, y, torch.from_numpy(sub), g))
        self._new_nets(fr[0].features.shape[1])
        total = (h["epochs1"] + h["epochs2"]) * len(self.nets)
        losses: dict[str, float] = {}
        with progress_bar(total, "GlassMLP", progress) as advance:
            for (s, e), net in self.nets.items():
                if not data[s]:
                    continue
                torch.manual_seed(seed + e)
                # re-initialise with the seed (the nets were built before seeding)
                for layer in net:
                    if isinstance(layer, torch.nn.Linear):
                        layer.reset_parameters()
                opt = torch.optim.Adam(net.parameters(), lr=h["lr"])
                order_rng = np.random.default_rng(seed + 1000 * e + s)
                a = float(self.threshold[s])
                for epoch in range(h["epochs1"] + h["epochs2"]):
                    stage2 = epoch >= h["epochs1"]
                    tot = 0.0
                    for k in order_rng.permutation(len(data[s])):
                        x, y, sub, g = data[s][k]
                        yhat = net(x).squeeze(-1)
                        loss = (yhat - y).abs().mean() / y.std()
                        if stage2:
                            loss = loss + h["w_var"] * (yhat.var() - y.var()).abs() / y.var()
                            if h["w_corr"] > 0:
                                loss = loss + h["w_corr"] * self._corr_loss(y, yhat, sub, g, a)
                        opt.zero_grad()
                        loss.backward()
                        opt.step()
                        tot += float(loss.detach())
                    advance(1)
                    losses[f"{s}.{e}.stage{2 if stage2 else 1}"] = tot / len(data[s])
        self.info["final_loss"] = losses
        self.info["threshold"] = self.threshold.tolist()
        self.calib = np.tile([0.0, 1.0], (nsp, 1))
        if h.get("calibrate", "none") == "meanvar":
            self._fit_calibration(fr)

    def _fit_calibration(self, fr: list[Frame]) -> None:
        """Per species, the linear map that gives the predictions on the training configurations the pooled mean
        and variance of the training targets (fitted on training data only; leaves every Pearson unchanged)."""
        stats = {}
        for s in range(self.settings.nsp):
            yp = [self._predict(self.standardise(f.features[f.species == s], f.species[f.species == s]),
                                f.species[f.species == s]) for f in fr]
            yt = [np.asarray(f.target)[f.species == s] for f in fr]  # type: ignore[index]
            if not sum(len(v) for v in yp):
                continue
            p, t = np.concatenate(yp), np.concatenate(yt)
            c1 = float(t.std() / p.std()) if p.std() > 0 else 1.0
            self.calib[s] = [float(t.mean() - c1 * p.mean()), c1]
            stats[str(s)] = {"pred_std": float(p.std()), "target_std": float(t.std()),
                             "per_config_pred_std": [float(v.std()) for v in yp],
                             "per_config_target_std": [float(v.std()) for v in yt],
                             "per_config_pred_mean": [float(v.mean()) for v in yp],
                             "per_config_target_mean": [float(v.mean()) for v in yt]}
        self.info["calibration"] = {"calib": self.calib.tolist(), "train_stats": stats}

    @staticmethod
    def _corr_loss(y: Any, yhat: Any, sub: Any, g: Any, a: float) -> Any:
        import torch

        def corr(v: Any) -> Any:
            xs = (torch.tanh(20.0 * (v - a)) + 1.0) / 2.0
            dx = xs[sub] - xs.mean()
            return torch.einsum("kij,i,j->k", g, dx, dx)

        ct = corr(y)
        return (corr(yhat) - ct).abs().sum() / (ct.abs().sum() + 1e-12)

    def _predict(self, x: np.ndarray, species: np.ndarray) -> np.ndarray:
        import torch

        out = np.zeros(x.shape[0])
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
        with torch.no_grad():
            for s in range(self.settings.nsp):
                m = species == s
                if not np.any(m):
                    continue
                preds = [self.nets[(s, e)](xt[torch.from_numpy(m)]).squeeze(-1).numpy()
                         for e in range(self.hyper["n_ensemble"])]
                out[m] = self.calib[s, 0] + self.calib[s, 1] * np.mean(preds, 0)
        return out

    def _arrays(self) -> dict[str, np.ndarray]:
        arr = {"threshold": self.threshold, "calib": self.calib}
        for (s, e), net in self.nets.items():
            for k, v in net.state_dict().items():
                arr[f"net{s}_{e}.{k}"] = v.numpy()
        return arr

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        import torch

        self.threshold = arrays["threshold"]
        self.calib = arrays.get("calib", np.tile([0.0, 1.0], (self.settings.nsp, 1)))
        assert self.mean is not None
        self._new_nets(self.mean.shape[1])
        for (s, e), net in self.nets.items():
            prefix = f"net{s}_{e}."
            net.load_state_dict({k[len(prefix):]: torch.from_numpy(v) for k, v in arrays.items()
                                 if k.startswith(prefix)})
