"""Dual-averaging step-size adaptation (Hoffman & Gelman 2014, Algorithm 5; as in Stan
and BlackJAX): a small algorithm of its own, wrapped around a kernel by the caller.

After each warm-up step the kernel's mean acceptance probability ᾱ updates

    h̄ ← (1 − 1/(t + t₀))·h̄ + (δ − ᾱ)/(t + t₀),   log ε ← μ − √t/γ·h̄,
    log ε̄ ← t^(−κ)·log ε + (1 − t^(−κ))·log ε̄,

with target δ and μ = log(10·ε₀). The kernel runs with ε during warm-up and with ε̄ after.
Everything but the step count t is a 0-d tensor, so no update waits for the device.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

#: Stan's and BlackJAX's defaults: shrinkage γ, iteration offset t₀, averaging exponent κ
GAMMA, T0, KAPPA = 0.05, 10.0, 0.75


class DualAveragingState(NamedTuple):
    """log ε (used during warm-up), log ε̄ (used after), the running error h̄, the step
    count t and the shrinkage point μ."""

    log_step: Tensor
    log_step_avg: Tensor
    error_avg: Tensor
    t: int
    mu: float


def dual_averaging_init(step_size: float, device: torch.device | str | None = None) -> DualAveragingState:
    zero = torch.zeros((), device=device)
    return DualAveragingState(torch.full((), math.log(step_size), device=device), zero, zero, 0,
                              math.log(10 * step_size))


def dual_averaging_update(state: DualAveragingState, acceptance: Tensor, target: float, *,
                          gamma: float = GAMMA, t0: float = T0, kappa: float = KAPPA) -> DualAveragingState:
    """One update from ``acceptance``, the mean acceptance probability of the last step (0-d)."""
    t = state.t + 1
    eta = 1.0 / (t + t0)
    error_avg = (1 - eta) * state.error_avg + eta * (target - acceptance)
    log_step = state.mu - math.sqrt(t) / gamma * error_avg
    w = t ** -kappa
    log_step_avg = w * log_step + (1 - w) * state.log_step_avg
    return DualAveragingState(log_step, log_step_avg, error_avg, t, state.mu)
