"""log Z of an RBM, exactly by enumerating its smaller layer or by annealed importance
sampling along the RBM's own path (Salakhutdinov & Murray 2008), and the
pseudo-log-likelihood scikit-learn's ``BernoulliRBM.score_samples`` reports."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from ebmcore import EbmError
from ebmcore.kernel import uniform_like
from ebmcore.kit.likelihood import Estimate

if TYPE_CHECKING:
    from ebm_rbm.energies import BipartiteEnergy

#: the most units of a layer summed over exactly (2^20 states)
ENUMERABLE = 20
#: states per chunk of the enumeration (memory: chunk × the other layer's width, float64)
_CHUNK = 1 << 13


def enumerable(energy: BipartiteEnergy) -> bool:
    """Whether :func:`exact_log_partition` can sum over a layer of at most 20 units (the
    visible layer only where it is binary)."""
    return energy.n_hidden <= ENUMERABLE or (energy.binary and energy.n_visible <= ENUMERABLE)


def _states(n: int) -> Tensor:
    """Every vector of {0, 1}^n, (2^n, n) float64."""
    codes = torch.arange(1 << n)
    return ((codes[:, None] >> torch.arange(n)) & 1).double()


def exact_log_partition(energy: BipartiteEnergy) -> float:
    """log Z = log Σ_h exp(cᵀh + A(b + Wh)) over the 2^H hidden states (or, for binary visible
    units, log Σ_v exp(−F(v)) over the 2^D visible ones, whichever layer is smaller), in float64."""
    if not enumerable(energy):
        raise EbmError(f"exact log Z: {energy.n_hidden} hidden and {energy.n_visible} visible units; "
                       f"enumeration needs a layer of at most {ENUMERABLE} (binary) units")
    with torch.no_grad():
        p = energy.params()
        p = p._make(t.detach().cpu().double() for t in p)
        over_visible = energy.binary and energy.n_visible < energy.n_hidden
        states = _states(energy.n_visible if over_visible else energy.n_hidden)
        terms = []
        for chunk in states.split(_CHUNK):
            if over_visible:
                terms.append(-energy.free_energy(chunk, p))
            else:
                terms.append(chunk @ p.hidden_bias + energy.log_normaliser(energy.visible_eta(chunk, p)))
        return float(torch.logsumexp(torch.cat(terms), 0))


def rbm_betas(n: int) -> list[float]:
    """``n`` + 1 inverse temperatures from 0 to 1 (n ≥ 3), uniformly spaced in three stretches
    as Salakhutdinov & Murray's schedule (steps of 10⁻³ to 0.5, 10⁻⁴ to 0.9 and 10⁻⁵ to 1:
    500, 4,000 and 10,000 intermediate distributions), its counts scaled to ``n`` (n = 14,500:
    exactly theirs)."""
    if n < 3:
        raise ValueError(f"the RBM's AIS schedule needs at least 3 steps of β, got {n}")
    first = max(1, round(n * 500 / 14500))
    second = max(1, round(n * 4000 / 14500))
    third = n - first - second
    stretches = [(0.0, 0.5, first), (0.5, 0.9, second), (0.9, 1.0, third)]
    betas = [lo + (hi - lo) * k / count for lo, hi, count in stretches for k in range(count)]
    return betas + [1.0]


def ais_log_partition(energy: BipartiteEnergy, base_bias: Tensor, *, chains: int, betas: Sequence[float],
                      rng: torch.Generator) -> Estimate:
    """log Z by AIS from the weightless RBM with visible natural parameter ``base_bias`` (the
    base-rate model: log Z_A = H·log 2 + A(b_A)) through the RBMs at each β of ``betas``,
    with weights β·W, visible bias (1 − β)·b_A + β·b and hidden bias β·c (the geometric path
    of the joint, Salakhutdinov & Murray 2008), one Gibbs sweep v → h → v of each. Log
    weights are accumulated in float64; each chain's, plus log Z_A, is one estimate of log Z."""
    if len(betas) < 2 or betas[0] != 0 or betas[-1] != 1 or any(b >= a for a, b in itertools.pairwise(betas[::-1])):
        raise ValueError("betas must increase from 0 to 1")
    with torch.no_grad():
        w, b, c = (t.detach() for t in energy.params())
        base_bias = base_bias.to(w)
        log_z_base = energy.n_hidden * math.log(2) + float(energy.log_normaliser(base_bias.double()))
        v = energy.sample_visible_from(base_bias.expand(chains, -1).contiguous(), rng)
        shift = (b - base_bias).double()  # the path's visible bias moves along it
        log_w = torch.zeros(chains, dtype=torch.float64, device=v.device)
        for previous, beta in itertools.pairwise(betas):
            pre = v @ w + c
            # log p*_β(v) − log p*_previous(v) = F_previous(v) − F_β(v) (s(v) cancels); the
            # difference of softplus sums is taken in float64, where it does not cancel away
            wide = pre.double()
            log_w += ((beta - previous) * (v.double() @ shift)
                      + F.softplus(beta * wide).sum(1) - F.softplus(previous * wide).sum(1))
            probs = torch.sigmoid(beta * pre)  # a Gibbs sweep of the RBM at β
            h = (uniform_like(probs, rng) < probs).to(v.dtype)
            v = energy.sample_visible_from(torch.lerp(base_bias, b, beta) + beta * (h @ w.T), rng)
        return Estimate.from_log_weights(log_w + log_z_base, v)


def pseudo_log_likelihood(energy: BipartiteEnergy, v: Tensor, *, rng: torch.Generator | None = None,
                          index: Tensor | None = None) -> Tensor:
    """D·log σ(F(ṽ) − F(v)) per example, ṽ being v with one unit flipped (``index`` (batch,),
    or drawn uniformly from ``rng``): scikit-learn's ``BernoulliRBM.score_samples``, a
    one-sample estimate of Σᵢ log P(vᵢ | v₋ᵢ)."""
    if not energy.binary:
        raise EbmError(f"pseudo-log-likelihood flips binary units; {type(energy).__name__} has real-valued ones")
    v = v.flatten(1)
    if index is None:
        if rng is None:
            raise ValueError("pseudo_log_likelihood: give the flipped units (index) or an rng to draw them")
        index = torch.randint(0, v.shape[1], (len(v),), generator=rng, device=rng.device).to(v.device)
    rows = torch.arange(len(v), device=v.device)
    flipped = v.clone()
    flipped[rows, index] = 1 - flipped[rows, index]
    with torch.no_grad():
        return v.shape[1] * F.logsigmoid(energy.free_energy(flipped) - energy.free_energy(v))
