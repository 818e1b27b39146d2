"""The hand loops benchmarks/sampler_speed.py times ebm's HMC against run the same algorithm:
fed the same random numbers (the hand loops draw from the global RNG, ebm from its ``rng``,
both seeded alike, in the same order: the momentum, then one uniform per chain), they give
the same chains up to float rounding. Nothing is timed."""

import sys

import torch
from support import ROOT

from ebmcore.kit.conformance import GaussianEnergy

sys.path.insert(0, str(ROOT / "benchmarks"))
import sampler_speed as speed


def anisotropic():
    """Scales 1 and 0.1, correlation 0.9: the window's inverse mass changes the trajectories."""
    cov = torch.tensor([[1.0, 0.09], [0.09, 0.01]])
    energy = GaussianEnergy(torch.tensor([0.5, -0.5]), cov)
    return energy, energy.sample(512, rng=torch.Generator().manual_seed(0))


def test_hand_hmc_window_is_ebms_window_adapted_hmc():
    energy, x0 = anisotropic()
    n_steps = speed.WARMUP + 10
    sampler = speed.ebm_hmc_window()
    torch.manual_seed(4)
    ref = speed.hand_hmc_window(x0.clone(), energy, n_steps)
    out = sampler.run(x0, energy, n_steps, rng=torch.Generator().manual_seed(4))
    assert (ref - x0).abs().mean() > 0.1, "the chains should move"
    # rounding (a Welford mean against running sums) can flip a rare accept decision, and the
    # pooled adaptation passes it on: one chain flipped at step 13 on one machine changed the
    # window's inverse mass by ~1e-4 and every chain after it by 2e-4–1e-3. A wrong step size,
    # mass or window moves every chain by about the target's scale (0.1–1)
    close = ((out - ref).abs() < 1e-2).all(1).float().mean()
    assert close > 0.99, f"only {close:.3f} of the chains agree"


def test_hand_hmc_window_adapts_its_step_and_mass():
    """Against the plain hand HMC loop on the same draws: the warm-up changes the chains."""
    energy, x0 = anisotropic()
    torch.manual_seed(4)
    adapted = speed.hand_hmc_window(x0.clone(), energy, speed.WARMUP + 10)
    torch.manual_seed(4)
    plain = speed.hand_hmc(x0.clone(), energy, speed.WARMUP + 10)
    assert ((adapted - plain).abs() > 1e-3).any(1).float().mean() > 0.5
