"""benchmarks/peers.py: each peer library's Langevin and HMC loops draw the same chains as the
hand loops of benchmarks/sampler_speed.py when fed the same random numbers (nothing is timed).

Feeding both the same random numbers: the hand loops and ebmkit draw from the global RNG, so
both run after ``torch.manual_seed(seed)``; torchebm draws from the ``generator`` it is given,
so it gets a fresh generator seeded with ``seed`` (the same stream on the CPU) while the global
RNG is seeded differently, which also checks that it really uses that generator. The draws
come in the same order (ULA: one ξ per step; HMC: the momentum, then one uniform per chain),
so equal settings give equal chains up to float rounding, and a wrong step, noise scale,
leapfrog count, mass or accept rule gives chains that differ by far more than the tolerance.
"""

import importlib.metadata
import sys

import pytest
import torch
from support import ROOT
from torch import nn

from ebmcore.kit.conformance import GaussianEnergy

sys.path.insert(0, str(ROOT / "benchmarks"))
import peers
import sampler_speed as speed

MODULE = {"torchebm": "torchebm", "ebmkit": "ebm"}  # ebmkit installs as `ebm`
USES_GENERATOR = {"torchebm": True, "ebmkit": False}
HAND = {"langevin": speed.hand_loop, "hmc": speed.hand_hmc}


def need(peer):
    pytest.importorskip(MODULE[peer])
    if peer not in peers.installed():  # e.g. an unrelated package named `ebm`
        pytest.skip(f"{peer} not installed")


def run_peer(peer, kind, x0, energy, n_steps, seed):
    torch.manual_seed(seed + (1000 if USES_GENERATOR[peer] else 0))
    rng = torch.Generator().manual_seed(seed)
    x = x0.clone()
    out = peers.SAMPLERS[peer][kind](x, energy, n_steps, rng)
    assert torch.equal(x, x0), "the peer loop changed x0 in place"
    return out


def run_hand(kind, x0, energy, n_steps, seed):
    torch.manual_seed(seed)
    return HAND[kind](x0.clone(), energy, n_steps).detach()


def gaussian():
    """A correlated 2-D Gaussian, x0 well away from it so the drift matters."""
    torch.manual_seed(0)
    energy = GaussianEnergy(torch.tensor([1.0, -1.0]), torch.tensor([[1.0, 0.5], [0.5, 2.0]]))
    return energy, 3 * torch.randn(512, 2)


def stiff_gaussian():
    """A 2-D Gaussian narrow enough that ε = 0.01 leapfrog trajectories are often rejected
    (stiffest mode: ε·ω ≈ 1.4), started from exact draws: exercises the accept step."""
    a, b = 5e-5, 1e-3  # variances along the diagonals
    cov = torch.tensor([[a + b, a - b], [a - b, a + b]]) / 2
    energy = GaussianEnergy(torch.tensor([0.3, -0.2]), cov)
    return energy, energy.sample(512, rng=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("peer", list(peers.PEERS))
def test_installed_reports_versions_and_both_loops(peer):
    need(peer)
    dist = peers.PEERS[peer][0]
    assert peers.installed()[peer] == importlib.metadata.version(dist)
    assert set(peers.SAMPLERS[peer]) == {"langevin", "hmc"}


@pytest.mark.parametrize("peer", list(peers.PEERS))
def test_langevin_matches_hand_loop_on_gaussian(peer):
    need(peer)
    energy, x0 = gaussian()
    out = run_peer(peer, "langevin", x0, energy, 5, seed=1)
    ref = run_hand("langevin", x0, energy, 5, seed=1)
    assert out.shape == x0.shape and not out.requires_grad
    # the drift alone moves x by ~0.1 over these 5 steps: a wrong step or noise scale is way off
    assert (ref - x0).abs().mean() > 0.1
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("peer", list(peers.PEERS))
def test_hmc_matches_hand_loop_with_rejections(peer):
    need(peer)
    energy, x0 = stiff_gaussian()
    ref1 = run_hand("hmc", x0, energy, 1, seed=2)
    stayed = (ref1 == x0).all(1).float().mean().item()
    assert 0.05 < stayed < 0.95, f"the test energy should give both accepts and rejects ({stayed=})"
    out = run_peer(peer, "hmc", x0, energy, 3, seed=2)
    ref = run_hand("hmc", x0, energy, 3, seed=2)
    assert out.shape == x0.shape and not out.requires_grad
    # one flipped accept decision moves a chain by ~the target's scale (≥ 0.007) ≫ atol
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("peer", list(peers.PEERS))
@pytest.mark.parametrize("kind", ["langevin", "hmc"])
@pytest.mark.parametrize("workload", ["mlp", "conv"])
def test_benchmark_energies_match_hand_loop(peer, kind, workload):
    """The benchmark's own nets (random weights, small batch), image-shaped states included:
    checks the energy wrappers (and torchebm's flattening for HMC) change nothing."""
    need(peer)
    torch.manual_seed(0)
    energy, x0 = (speed.mlp(), torch.randn(64, 2)) if workload == "mlp" else (speed.conv(), torch.randn(4, 1, 28, 28))
    out = run_peer(peer, kind, x0, energy, 2, seed=3)
    ref = run_hand(kind, x0, energy, 2, seed=3)
    assert all(p.requires_grad for p in energy.parameters()), "parameter gradients not restored"
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


class Counting(nn.Module):
    """Counts energy evaluations, and those made with autograd on (i.e. for a gradient)."""

    def __init__(self, energy):
        super().__init__()
        self.energy, self.calls, self.grad_calls = energy, 0, 0

    def forward(self, x, cond=None):
        self.calls += 1
        self.grad_calls += torch.is_grad_enabled()
        return self.energy(x)


# energy evaluations for 3 HMC steps of 5 leapfrog steps: (all, with gradient)
HMC_EVALS = {"hand": (16, 16),         # 1 at x0, then 5 per step (the gradient is carried)
             "ebmkit": (18, 18),       # 6 per step: E and ∇E at the start point recomputed
             "torchebm": (36, 30)}     # per step 2 per leapfrog step + 2 without gradient


@pytest.mark.parametrize("peer", list(peers.PEERS))
def test_work_per_step_is_as_documented(peer):
    """Pins the Differences section of peers.py: gradients per Langevin / HMC step."""
    need(peer)
    energy, x0 = gaussian()
    counting = Counting(energy)
    run_peer(peer, "langevin", x0, counting, 3, seed=4)
    assert (counting.calls, counting.grad_calls) == (3, 3)
    for who, run in (("hand", lambda e: run_hand("hmc", x0, e, 3, seed=4)),
                     (peer, lambda e: run_peer(peer, "hmc", x0, e, 3, seed=4))):
        counting = Counting(energy)
        run(counting)
        assert (counting.calls, counting.grad_calls) == HMC_EVALS[who], who
