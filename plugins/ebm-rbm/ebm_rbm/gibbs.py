"""Block Gibbs sampling of an RBM: v → h → v, both layers drawn from their conditionals.

The chain lives on the visible units; each step draws h ~ P(h | v), then v ~ P(v | h),
using the energy's :class:`~ebm_rbm.energies.BipartiteEnergy` conditionals (any other energy
is refused: its conditionals are unknown). Observed coordinates (``mask``) are kept: the
visible units are independent given h, so drawing only the free ones is exact Gibbs on the
conditional distribution. All draws go through :func:`ebmcore.kernel.uniform_like` /
``normal_like``, so ``compile = true`` replays the eager chain.

There is no ``temperature``: exp(−F(v)/T) is not an RBM (its softplus terms are divided by
T, not their arguments), so these conditionals cannot sample it exactly. The RBM's own
tempered family is its joint exp(−E(v, h)/T), again an RBM (:meth:`BipartiteEnergy.tempered`,
a :class:`~ebm_rbm.energies.TemperedRBM`), which Gibbs samples: parallel tempering runs
Gibbs at every temperature of its ladder that way.
"""

from __future__ import annotations

from typing import NamedTuple

import attrs
import torch
from torch import Tensor, nn

from ebm_rbm.energies import BipartiteEnergy, TemperedRBM
from ebmcore import EbmError, Sampler
from ebmcore import config as cfg
from ebmcore.kit.offgraph import off_graph


@attrs.frozen
class GibbsConfig:
    """Block Gibbs sampling v → h → v of a restricted Boltzmann machine."""

    n_steps: int = cfg.positive("Gibbs sweeps v → h → v (k of CD-k)", default=1)
    probabilities: bool = cfg.doc(
        "return E[v | h] of the last half-step instead of a draw (pictures; as contrastive divergence's "
        "negatives, the probabilities Hinton's guide advises); the chain itself stays a draw", default=False)
    compile: bool = cfg.compile_flag()


class GibbsState(NamedTuple):
    """``x``: what the chain returns (the visible draw, or its conditional mean with
    ``probabilities``); ``v``: the visible draw the next sweep starts from. Both shaped like
    the chain's start."""

    x: Tensor
    v: Tensor


def _bipartite(energy: nn.Module) -> tuple[BipartiteEnergy, Tensor | None]:
    """The RBM and the inverse temperature per chain (batch, 1) it is sampled at (None: 1)."""
    if isinstance(energy, TemperedRBM):
        return energy.rbm, energy.beta
    if not isinstance(energy, BipartiteEnergy):
        raise EbmError(f"sampler 'gibbs' draws from an RBM's conditionals and needs an ebm_rbm.BipartiteEnergy "
                       f"(energy 'rbm' or 'gaussian_rbm'), got {type(energy).__name__}; use a gradient "
                       "sampler (langevin, mala, hmc) for other energies")
    return energy, None


class Gibbs(Sampler):
    """Block Gibbs kernel: ``Gibbs(n_steps=1)`` for CD-1."""

    Config = GibbsConfig

    def init(self, x: Tensor, energy: nn.Module, *, rng: torch.Generator, cond: Tensor | None = None) -> GibbsState:
        _bipartite(energy)
        return GibbsState(x, x)

    @off_graph
    def step(self, state: GibbsState, energy: nn.Module, *, rng: torch.Generator,
             cond: Tensor | None = None, mask: Tensor | None = None) -> tuple[GibbsState, tuple]:
        rbm, beta = _bipartite(energy)
        h = rbm.sample_hidden(state.v.flatten(1), rng, beta=beta)
        eta = rbm.visible_eta(h)
        v = rbm.sample_visible_from(eta, rng, beta).view_as(state.v)
        x = rbm.visible_mean(eta, beta).view_as(state.v) if self.config.probabilities else v
        if mask is not None:  # observed units stay bit-identical
            v, x = torch.where(mask, state.v, v), torch.where(mask, state.v, x)
        return GibbsState(x, v), ()
