"""The yardsticks of ``digits-density``: held-out bits per dimension of a full-covariance
Gaussian and of ebm-nce's RealNVP trained by maximum likelihood for a given CPU time.

    python benchmarks/density_baselines.py [--cpu-seconds 600] [--layers 8] [--hidden 256]
                                           [--threads 2] [--json PATH]

Scored exactly as the ``loglik`` task scores a trained energy: scikit-learn's digits (the
ebm-image split: 360 held out by seed 0, values 0..16 scaled to [−1, 1]), dequantised by
uniform noise across each bin (Δ = 0.125), bits/dim = −(log p(x̃) + D·log Δ)/(D·ln 2) of the
held-out images, the training images dequantised anew at every step. The flow trains with
Adam (lr 1e-3, batch 128) until the process has spent ``--cpu-seconds`` of CPU time (user +
sys), the budget the EBM recipe is compared at; its held-out score is checked every 200
steps and the best one kept (early stopping on the test set favours the flow).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import torch
from ebm_image.digits import DigitsConfig, DigitsData
from ebm_nce.flow import RealNVP

from ebmcore.kit.likelihood import GaussianBase

BIN = 0.125


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def bits_per_dim(log_p: torch.Tensor, dims: int) -> float:
    return -(float(log_p.mean()) + dims * math.log(BIN)) / (dims * math.log(2))


def dequantise(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    return x + BIN * (torch.rand(x.shape, generator=rng) - 0.5)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu-seconds", type=float, default=600.0)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    data = DigitsData.from_config(DigitsConfig())
    train, test = data.dataset().x.flatten(1), data.heldout().x.flatten(1)
    dims = train.shape[1]
    rng = torch.Generator().manual_seed(0)
    test_x = dequantise(test, rng)
    gaussian = GaussianBase.fit(dequantise(train, rng))
    with torch.no_grad():
        results = {"gaussian_bits_per_dim": bits_per_dim(-gaussian(test_x).double(), dims)}
    print(f"full-covariance Gaussian: {results['gaussian_bits_per_dim']:.4f} bits/dim")

    flow = RealNVP.fitted(train, a.layers, (a.hidden, a.hidden), min_std=BIN)
    opt = torch.optim.Adam(flow.parameters(), lr=1e-3)
    start, step, best, curve = _cpu(), 0, math.inf, []
    wall = time.perf_counter()
    while _cpu() - start < a.cpu_seconds:
        batch = dequantise(train[torch.randint(len(train), (128,), generator=rng)], rng)
        loss = -flow.log_prob(batch).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 200 == 0:
            with torch.no_grad():
                bpd = bits_per_dim(flow.log_prob(test_x).double(), dims)
            best = min(best, bpd)
            curve.append((step, round(_cpu() - start, 1), round(bpd, 4)))
            print(f"step {step:6d}  cpu {_cpu() - start:7.1f} s  held-out {bpd:.4f} bits/dim", flush=True)
    results.update({"realnvp_bits_per_dim": best, "realnvp_steps": step, "cpu_seconds": round(_cpu() - start, 1),
                    "wall_seconds": round(time.perf_counter() - wall, 1), "curve": curve,
                    "layers": a.layers, "hidden": a.hidden})
    print(f"RealNVP ({a.layers} couplings, {a.hidden} hidden): best {best:.4f} bits/dim after {step} steps, "
          f"{results['cpu_seconds']} CPU s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
