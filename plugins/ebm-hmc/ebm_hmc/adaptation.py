"""Warm-up algorithms for HMC and NUTS, each a small algorithm of its own, wrapped around a
kernel by the caller (:func:`warmup_init`, :func:`warmup_update`).

**Dual averaging** of the step size (Hoffman & Gelman 2014, Algorithm 5; as in Stan and
BlackJAX). After each warm-up step the kernel's acceptance statistic ᾱ updates

    h̄ ← (1 − 1/(t + t₀))·h̄ + (δ − ᾱ)/(t + t₀),   log ε ← μ − √t/γ·h̄,
    log ε̄ ← t^(−κ)·log ε + (1 − t^(−κ))·log ε̄,

with target δ and μ = log(10·ε₀). The kernel runs with ε during warm-up and with ε̄ after.
Everything but the step count t is a tensor (0-d, or one entry per chain), so no update
waits for the device.

**Window adaptation** (Stan's warm-up, as BlackJAX's ``window_adaptation``): a fast window
(step size only), then slow windows doubling in length (25, 50, 100, …), each estimating a
diagonal inverse mass M⁻¹ from the positions the chains visited in it, regularised as Stan
does, (n/(n + 5))·var + 10⁻³·5/(n + 5), after which dual averaging restarts from ε̄ with
μ = log(10·ε̄); a final fast window tunes ε to the last M⁻¹ (Stan's heuristic that also
doubles or halves ε after a window is left out, as in BlackJAX). The right M⁻¹ is the target's
marginal variances: it rescales every coordinate to unit spread, so one ε fits them all
(on the kit's anisotropic Gaussian, scales 1 and 0.1, NUTS then needs 11 gradients a step
instead of 23).

**Pooled or per chain.** By default the chains adapt together: ε follows their mean
acceptance and M⁻¹ the variance of all their positions. With many chains of one target
(ebm's usual batch) that is far less noisy than a chain's own statistics, which after a
short warm-up leave ε spread over a factor 10 between chains, and NUTS's lockstep batch
then waits for the chain with the smallest. ``adaptation_scope = "per_chain"`` gives each
chain its own ε and M⁻¹ (as Stan's independent chains), for batches whose chains sample
different targets (conditionals); it wants a warm-up of Stan's length (≥ 150 steps).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import attrs
import torch
from torch import Tensor

#: Stan's and BlackJAX's defaults: shrinkage γ, iteration offset t₀, averaging exponent κ
GAMMA, T0, KAPPA = 0.05, 10.0, 0.75
#: Stan's windows: initial fast buffer, first slow window, final fast buffer
INIT_BUFFER, BASE_WINDOW, TERM_BUFFER = 75, 25, 50


class DualAveragingState(NamedTuple):
    """log ε (used during warm-up), log ε̄ (used after), the running error h̄, the step
    count t and the shrinkage point μ."""

    log_step: Tensor
    log_step_avg: Tensor
    error_avg: Tensor
    t: int
    mu: float | Tensor


def dual_averaging_init(step_size: float | Tensor, device: torch.device | str | None = None) -> DualAveragingState:
    """Start (a number) or restart (a tensor of step sizes, one per chain) at ``step_size``."""
    if isinstance(step_size, Tensor):
        log_step = step_size.log()
        zero = torch.zeros_like(log_step)
        return DualAveragingState(log_step, zero, zero, 0, log_step + math.log(10))
    zero = torch.zeros((), device=device)
    return DualAveragingState(torch.full((), math.log(step_size), device=device), zero, zero, 0,
                              math.log(10 * step_size))


def dual_averaging_update(state: DualAveragingState, acceptance: Tensor, target: float, *,
                          gamma: float = GAMMA, t0: float = T0, kappa: float = KAPPA) -> DualAveragingState:
    """One update from ``acceptance``, the acceptance statistic of the last step: 0-d (one ε
    for all chains) or one per chain (an ε each)."""
    t = state.t + 1
    eta = 1.0 / (t + t0)
    error_avg = (1 - eta) * state.error_avg + eta * (target - acceptance)
    log_step = state.mu - math.sqrt(t) / gamma * error_avg
    w = t ** -kappa
    log_step_avg = w * log_step + (1 - w) * state.log_step_avg
    return DualAveragingState(log_step, log_step_avg, error_avg, t, state.mu)


class WindowSchedule(NamedTuple):
    """Stan's warm-up windows: ``init_buffer`` fast steps, the slow windows' lengths, then
    ``term_buffer`` fast steps."""

    init_buffer: int
    slow: tuple[int, ...]
    term_buffer: int

    @property
    def ends(self) -> tuple[int, ...]:
        """The warm-up step counts at which each slow window ends."""
        ends, end = [], self.init_buffer
        for n in self.slow:
            end += n
            ends.append(end)
        return tuple(ends)


def window_schedule(n_warmup: int, init_buffer: int = INIT_BUFFER, base_window: int = BASE_WINDOW,
                    term_buffer: int = TERM_BUFFER) -> WindowSchedule:
    """Stan's schedule (``windowed_adaptation``): 1000 warm-up steps give 75 / 25, 50, 100,
    200, 500 / 50. A warm-up shorter than the three defaults (150) is split 15 % / 75 % / 10 %
    into one slow window; under 20 steps there is none (step size only). Each slow window
    doubles the last, and one that would leave less than twice its own length before the
    final buffer runs to it instead."""
    if n_warmup < 20:
        return WindowSchedule(n_warmup, (), 0)
    if init_buffer + base_window + term_buffer > n_warmup:
        init_buffer, term_buffer = int(0.15 * n_warmup), int(0.1 * n_warmup)
        base_window = n_warmup - init_buffer - term_buffer
    slow_end = n_warmup - term_buffer
    windows, start, size = [base_window], init_buffer + base_window, 2 * base_window
    while start < slow_end:
        if start + 3 * size > slow_end:
            size = slow_end - start
        windows.append(size)
        start, size = start + size, 2 * size
    return WindowSchedule(init_buffer, tuple(windows), term_buffer)


class WindowAdaptationState(NamedTuple):
    """Dual averaging (``da``: one ε, or one per chain); the schedule; the warm-up steps
    taken (``t``); the running mean and sum of squared deviations (Welford) of each chain's
    ``n`` positions in the current slow window (None outside one)."""

    da: DualAveragingState
    schedule: WindowSchedule
    t: int
    n: int
    mean: Tensor | None
    m2: Tensor | None


def window_init(step_size: float, n_warmup: int, device: torch.device | str | None = None) -> WindowAdaptationState:
    """The start of an ``n_warmup``-step window adaptation from ``step_size``."""
    return WindowAdaptationState(dual_averaging_init(step_size, device), window_schedule(n_warmup), 0, 0, None, None)


def window_update(state: WindowAdaptationState, x: Tensor, acceptance: Tensor, target: float, *,
                  pooled: bool) -> tuple[WindowAdaptationState, Tensor | None]:
    """One warm-up step: dual averaging with ``acceptance`` (0-d: one ε; (batch,): one per
    chain); the positions ``x`` of a slow window added to its estimate. Returns the new
    state and, where a slow window ends, the new diagonal inverse mass: each chain's
    (shaped like x), or, ``pooled``, all chains' together ((1, *event))."""
    da = dual_averaging_update(state.da, acceptance, target)
    t, n, mean, m2 = state.t, state.n, state.mean, state.m2
    ends = state.schedule.ends
    if ends and state.schedule.init_buffer <= t < ends[-1]:  # Welford: stable for a large mean
        n += 1
        if mean is None:
            mean, m2 = x.clone(), torch.zeros_like(x)
        else:
            delta = x - mean
            mean = mean.add(delta, alpha=1 / n)
            m2 = m2.addcmul(delta, x - mean)
    inv_mass = None
    if t + 1 in ends:
        inv_mass = _regularised_variance(n, mean, m2, pooled)
        da = dual_averaging_init(da.log_step_avg.exp())  # restart from ε̄, μ = log(10·ε̄)
        n, mean, m2 = 0, None, None
    return WindowAdaptationState(da, state.schedule, t + 1, n, mean, m2), inv_mass


def _regularised_variance(n: int, mean: Tensor, m2: Tensor, pooled: bool) -> Tensor:
    """Stan's (N/(N + 5))·var + 10⁻³·5/(N + 5) from N positions: each chain's n, or all
    chains' together (their total variance: a chain's spread and the chains' differences)."""
    if pooled:
        grand = mean.mean(0, keepdim=True)
        m2 = m2.sum(0, keepdim=True) + n * (mean - grand).square().sum(0, keepdim=True)
        n *= mean.shape[0]
    var = m2 / (n - 1)
    return var.mul_(n / (n + 5.0)).add_(1e-3 * 5 / (n + 5.0))


# the warm-up's settings, shared by the HMC and NUTS configs

def _fewer_than_n_steps(inst, _attr, value):
    if value and not value < inst.n_steps:
        raise ValueError(f"must be < n_steps ({inst.n_steps}), so that some steps run with the adapted "
                         f"step size, got {value}")


def adapt_steps_field():
    return attrs.field(default=0, validator=[attrs.validators.ge(0), _fewer_than_n_steps],
                       metadata={"doc": "first steps of each chain that are a warm-up (see adaptation; 0: off)"})


def adaptation_field(default: str):
    return attrs.field(
        default=default, validator=attrs.validators.in_(("step_size", "window")),
        metadata={"doc": "what the warm-up tunes: 'step_size', ε by dual averaging; 'window', Stan's windows: "
                         "ε and a diagonal inverse mass, the target's marginal variances (ebm_hmc.adaptation)"})


def adaptation_scope_field():
    return attrs.field(
        default="pooled", validator=attrs.validators.in_(("pooled", "per_chain")),
        metadata={"doc": "whose statistics the warm-up uses: 'pooled', all chains' (one ε from their mean "
                         "acceptance, one inverse mass from all their positions: with many chains of one "
                         "target far less noisy); 'per_chain', each chain's own ε and inverse mass (for chains "
                         "that sample different conditionals; wants a long warm-up, Stan's ≥ 150 steps)"})


class Warmup(NamedTuple):
    """What a sampler's state carries for the next step: ε (0-d, or (batch,) per chain),
    the diagonal inverse mass (None: the config's scalar mass) and the warm-up's state
    (None once it is over)."""

    step_size: Tensor
    inv_mass: Tensor | None
    adaptation: DualAveragingState | WindowAdaptationState | None


def warmup_init(config: Any, x: Tensor) -> Warmup:
    """A chain's start for an HMC or NUTS ``config`` (its ``step_size``, ``adapt_steps``,
    ``adaptation`` and ``adaptation_scope``): one ε for all chains, or one per chain."""
    c = config
    per_chain = c.adapt_steps and c.adaptation_scope == "per_chain"
    eps = torch.full(x.shape[:1] if per_chain else (), c.step_size, device=x.device)
    if not c.adapt_steps:
        return Warmup(eps, None, None)
    if c.adaptation == "window":
        return Warmup(eps, None, window_init(c.step_size, c.adapt_steps, x.device))
    return Warmup(eps, None, dual_averaging_init(c.step_size, x.device))


def warmup_update(config: Any, warmup: Warmup, x: Tensor, acceptance: Tensor) -> Warmup:
    """After a step that used ``warmup`` and moved the chains to ``x`` with ``acceptance``
    per chain: the next step's ε, inverse mass and warm-up state. Pooled, ε follows the
    chains' mean acceptance and M⁻¹ their variance together. At the warm-up's end ε is fixed
    at the dual-averaging average ε̄."""
    c, adaptation = config, warmup.adaptation
    if adaptation is None:
        return warmup
    pooled = c.adaptation_scope == "pooled"
    if pooled:
        acceptance = acceptance.mean()
    inv_mass = warmup.inv_mass
    if isinstance(adaptation, WindowAdaptationState):
        adaptation, new_mass = window_update(adaptation, x, acceptance, c.target_accept, pooled=pooled)
        inv_mass = inv_mass if new_mass is None else new_mass
        da, t = adaptation.da, adaptation.t
    else:
        da = adaptation = dual_averaging_update(adaptation, acceptance, c.target_accept)
        t = da.t
    if t < c.adapt_steps:
        return Warmup(da.log_step.exp(), inv_mass, adaptation)
    return Warmup(da.log_step_avg.exp(), inv_mass, None)
