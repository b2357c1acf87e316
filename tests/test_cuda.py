"""The CUDA path: flows, the torch energy and `flow train --device cuda` give the CPU's numbers.

Skipped without a CUDA device (CI has none); run on a GPU machine with ``pytest tests/test_cuda.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glassgen.flows import NumbaPairEnergy, TorchPairEnergy
from glassgen.flows.generator import BoltzmannGenerator
from glassgen.flows.model import FlowArchitecture, FlowSystem, ParticleFlow, beta_context, to_relative
from glassgen.flows.training import TrainingConfig, train_flow
from glassgen.systems.configuration import random_configuration
from test_flows import SMALL, _randomise

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("model,n", [("ka3d", 32), ("ka2d", 43)])
def test_flow_log_density_and_map_match_cpu(model, n):
    flow = _randomise(ParticleFlow(FlowSystem.create(model, n), SMALL), std=0.05)
    r = (torch.rand(16, n - 1, flow.system.dim, dtype=torch.float64) - 0.5) * flow.box
    ctx = beta_context(torch.linspace(0.4, 0.6, 16, dtype=torch.float64))
    y_cpu, ld_cpu = flow.forward_and_log_det(r, ctx)
    lp_cpu = flow.log_prob(r, ctx)
    flow_gpu = flow.to("cuda")
    y_gpu, ld_gpu = flow_gpu.forward_and_log_det(r.cuda(), ctx.cuda())
    lp_gpu = flow_gpu.log_prob(r.cuda(), ctx.cuda())
    assert y_gpu.dtype == torch.float64 and ld_gpu.dtype == torch.float64 and lp_gpu.dtype == torch.float64
    torch.testing.assert_close(y_gpu.cpu(), y_cpu, atol=1e-10, rtol=0)
    torch.testing.assert_close(ld_gpu.cpu(), ld_cpu, atol=1e-10, rtol=0)
    torch.testing.assert_close(lp_gpu.cpu(), lp_cpu, atol=1e-10, rtol=0)


def test_torch_energy_on_cuda_matches_numba_energy_and_forces():
    """KA 3D N = 64 (box < 2 r_c: 27 images) with the training soft core, a batch of 8."""
    confs = [random_configuration("ka3d", 64, seed=s) for s in range(8)]
    x = torch.as_tensor(np.stack([c.positions for c in confs]))
    te = TorchPairEnergy("ka3d", confs[0].species, confs[0].box, soft_core=0.8).to("cuda")
    ne = NumbaPairEnergy("ka3d", confs[0].species, confs[0].box, soft_core=0.8)
    xg = x.cuda().requires_grad_(True)
    ug = te.energy(xg)
    (gg,) = torch.autograd.grad(ug.sum(), xg)
    xc = x.clone().requires_grad_(True)
    uc = ne.energy(xc)
    (gc,) = torch.autograd.grad(uc.sum(), xc)
    torch.testing.assert_close(ug.detach().cpu(), uc.detach(), rtol=1e-11, atol=1e-9)
    torch.testing.assert_close(gg.cpu(), gc, rtol=1e-9, atol=1e-8)


def test_training_on_cuda_runs_resumes_and_loads_on_cpu(tmp_path):
    """A few reverse-KL steps on the GPU (torch energy there); the checkpoint loads on the CPU and the
    CPU and GPU copies of the trained flow give the same log q; resuming continues the step count."""
    cfg = TrainingConfig(model="ka2d", N=12, density=0.8, T_ladder=(2.0, 1.0), steps_per_rung=6, batch=32,
                         lr=2e-3, checkpoint_every=3, objective="reverse", soft_core=0.8,
                         architecture=FlowArchitecture(n_blocks=1, width=16, n_layers=1, ff_width=16, n_bins=8))
    ck = tmp_path / "gpu.pt"
    train_flow(cfg, ck, device="cuda", progress=False, log_every=2, max_steps=7)
    gen = train_flow(cfg, ck, device="cuda", progress=False, log_every=2)
    assert gen.training["step"] == 12 and gen.training["skipped"] == 0
    losses = [h["reverse_kl"] for h in gen.training["history"] if "reverse_kl" in h]
    assert losses and all(np.isfinite(losses))
    loaded = BoltzmannGenerator.load(ck)
    assert loaded.training["step"] == 12
    x, lq = loaded.sample(64, 1.0)
    r = to_relative(x, loaded.box)
    ctx = beta_context(1.0, 64)
    lp_cpu = loaded.flow.log_prob(r, ctx)
    lp_gpu = loaded.flow.to("cuda").log_prob(r.cuda(), ctx.cuda()).cpu()
    torch.testing.assert_close(lp_gpu, lp_cpu, atol=1e-10, rtol=0)
    torch.testing.assert_close(lp_cpu + loaded.flow.log_pinned, lq, atol=1e-9, rtol=0)


def test_flow_train_command_with_device_cuda(tmp_path, capsys):
    from glassgen.cli import main

    cfg = tmp_path / "tiny.toml"
    cfg.write_text('[system]\nmodel = "ka2d"\nN = 8\ndensity = 0.6\n\n[architecture]\nn_blocks = 1\nwidth = 16\n'
                   'n_layers = 1\nff_width = 16\nn_bins = 8\n\n[training]\nT_ladder = [2.0, 1.0]\nsteps_per_rung = 3\n'
                   'batch = 16\nobjective = "reverse"\ncheckpoint_every = 3\n')
    out = tmp_path / "tiny.pt"
    rc = main(["flow", "train", "--config", str(cfg), "--out", str(out), "--device", "cuda", "--no-progress"])
    assert rc == 0, capsys.readouterr()
    assert BoltzmannGenerator.load(out).training["step"] == 6
