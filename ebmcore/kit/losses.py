"""The maximum-likelihood loss every MCMC-trained energy shares."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def maximum_likelihood_loss(energy: nn.Module, x_pos: Tensor, x_neg: Tensor, cond: Tensor | None = None,
                            alpha: float = 0.0) -> tuple[Tensor, dict[str, Tensor]]:
    """E(data) − E(samples), averaged, whose gradient is the log-likelihood's (the samples
    standing in for the model), plus the energy-magnitude regulariser α·(E⁺² + E⁻²) of
    IGEBM; one forward pass over both. Returns (loss, metrics ``loss/cd``,
    ``energy/data``, ``energy/sample``)."""
    n = len(x_pos)
    both = torch.cat([x_pos, x_neg])
    e = energy(both) if cond is None else energy(both, torch.cat([cond, cond]))
    e_pos, e_neg = e[:n], e[n:]
    cd = e_pos.mean() - e_neg.mean()
    loss = cd + alpha * (e_pos.pow(2) + e_neg.pow(2)).mean() if alpha else cd
    return loss, {"loss/cd": cd.detach(), "energy/data": e_pos.mean().detach(),
                  "energy/sample": e_neg.mean().detach()}
