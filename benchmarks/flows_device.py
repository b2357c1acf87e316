"""Flow training and proposal throughput on the CPU and on a CUDA device: same flow, same batches, one run.

The shipped KA 3D N = 64 Boltzmann generator (Boltzmann-prior base, pools at T_h = 0.6, 0.5, 0.45; 2 coupling
blocks; ``configs/flows/ka3d_n64.toml``) at T = 0.45:

- one reverse-KL training step (:func:`glassgen.flows.training.reverse_kl_loss`, backward, gradient clipping,
  Adam) at batch B = 64 (the shipped config), 256 and 1024: on the CPU with the Numba energy (the CPU path
  of ``glassgen flow train``), on CUDA with the torch energy on the GPU (its ``--device cuda`` path);
- proposals: the flow map f(z) and log|det J| of B = 4096 configurations drawn from the base, no gradient.

The flow starts from the shipped weights before every measurement. Prints seconds per step and per
proposal and the ratio CPU / CUDA (speed-up of the GPU), saves ``benchmarks/results/flows_device.json``.
Without a CUDA device only the CPU column is measured.

Run: ``python benchmarks/flows_device.py [--steps 10] [--batches 64 256 1024]``
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
from _common import save, table

from glassgen.api import shipped_flow
from glassgen.flows.generator import BoltzmannGenerator
from glassgen.flows.model import beta_context
from glassgen.flows.training import reverse_kl_loss

T = 0.45
SOFT_CORE = 0.8  # the shipped config's


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def training_step_seconds(gen: BoltzmannGenerator, state: dict, dev: torch.device, batch: int, steps: int
                          ) -> tuple[float, float]:
    """Mean wall seconds of one reverse-KL training step, and the last loss."""
    flow = gen.flow
    flow.load_state_dict(state)
    flow.to(dev)
    energy = gen.training_energy(SOFT_CORE, dev)
    box = gen.box.to(dev if dev.type == "cuda" else "cpu")
    opt = torch.optim.Adam(flow.parameters(), lr=2e-5)
    beta = torch.full((batch,), 1.0 / T, dtype=torch.float64, device=dev)
    ctx = beta_context(T, batch).to(dev)
    loss = torch.zeros(())
    times = []
    for i in range(steps + 2):  # two warm-up steps (allocations, kernels, Numba caches)
        _sync(dev)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = reverse_kl_loss(flow, energy, beta, ctx, box)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 100.0)
        opt.step()
        _sync(dev)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    flow.to("cpu")
    return float(np.mean(times)), float(loss.detach())


@torch.no_grad()
def proposal_seconds(gen: BoltzmannGenerator, state: dict, dev: torch.device, batch: int, reps: int) -> float:
    """Mean wall seconds to map ``batch`` base draws through the flow (with log|det J|)."""
    flow = gen.flow
    flow.load_state_dict(state)
    flow.to(dev)
    ctx = beta_context(T, batch).to(dev)
    times = []
    for i in range(reps + 1):
        _sync(dev)
        t0 = time.perf_counter()
        z, _ = flow.q0(batch, context=ctx.cpu())
        flow.forward_and_log_det(z.to(dev), ctx)
        _sync(dev)
        if i >= 1:
            times.append(time.perf_counter() - t0)
    flow.to("cpu")
    return float(np.mean(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10, help="timed training steps per (device, batch)")
    ap.add_argument("--batches", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument("--proposals", type=int, default=4096)
    args = ap.parse_args()

    torch.manual_seed(0)
    gen = BoltzmannGenerator.load(shipped_flow("ka3d", 64))
    state = copy.deepcopy(gen.flow.state_dict())
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = []
    for b in args.batches:
        row: dict = {"what": f"training step, B={b}", "batch": b}
        for dev in devices:
            s, loss = training_step_seconds(gen, state, dev, b, args.steps)
            row[f"{dev.type}_s"] = s
            row[f"{dev.type}_loss"] = loss
        rows.append(row)
        print(row, flush=True)
    row = {"what": f"proposals, B={args.proposals}", "batch": args.proposals}
    for dev in devices:
        row[f"{dev.type}_s"] = proposal_seconds(gen, state, dev, args.proposals, reps=3)
    rows.append(row)
    for r in rows:
        if "cuda_s" in r:
            r["speedup_cuda"] = r["cpu_s"] / r["cuda_s"]
    print(table(rows, ["what", "cpu_s", "cuda_s", "speedup_cuda"]))
    payload = {"system": "ka3d N=64, shipped flow", "T": T, "soft_core": SOFT_CORE, "steps": args.steps,
               "torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
               "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "rows": rows}
    print("saved", save("flows_device", payload))


if __name__ == "__main__":
    main()
