"""Effective sample size per gradient evaluation of ebm's samplers on the conformance kit's
targets, and of ebmkit's NUTS and parallel tempering side by side.

    python benchmarks/ess_per_gradient.py [--chains 200] [--steps 10000] [--targets gaussian_10d,banana]
                                          [--samplers mala,nuts,ebmkit-nuts] [--quick] [--json PATH] [--markdown]

The targets are the analytic ones of :mod:`ebmcore.kit.conformance`: the correlated 2-D Gaussian,
the anisotropic Gaussian (condition number 535), the 10-D Gaussian, the 1-D and 2-D
mixtures of ``mixture_targets()`` and the banana. On each, every sampler runs ``--chains``
chains started at exact draws of the target (so no burn-in is needed), with a budget of
about ``--steps`` gradient evaluations per chain (``--samplers`` picks rows by key):

- ``ula``: ULA at the step the conformance tests pass with (``tests/test_conformance.py``
  ``ULA_SETTINGS``; ``test_langevin.py`` for the 2-D Gaussian);
- ``ula-mala-step``: ULA at MALA's step: the same speed of motion without the Metropolis
  correction, to show what the correction buys (ULA's bias);
- ``mala``: MALA at the step of ``plugins/ebm-langevin/tests/test_mala.py``;
- ``hmc``: HMC with 5 leapfrog steps at a fixed step (the initial step of
  ``plugins/ebm-hmc/tests/test_hmc.py``), ``--steps // 5`` transitions;
- ``hmc-adapted``: the same HMC with dual averaging to 0.65 acceptance, from that step;
- ``hmc-window``: the same HMC with Stan's window adaptation (step size and a diagonal
  inverse mass, pooled over the chains) to 0.65, and ``jitter = 0.5`` (each chain's ε drawn
  from [ε/2, 3ε/2] every transition, what breaks the resonance of a fixed trajectory);
- ``nuts``: ebm's NUTS (``max_depth`` 10) with dual averaging of the step size to 0.8 mean
  acceptance, from the HMC step, ``--steps // 10`` transitions: the settings ebmkit's NUTS
  has (identity mass);
- ``nuts-window``: the same with ebm's default warm-up, Stan's windows (step size and a
  diagonal inverse mass);
- ``pt-mala``, ``pt-hmc``: ebm's ``parallel_tempering`` around MALA (the MALA row's step) or
  around the fixed-step HMC (the HMC row's step and 5 leapfrog steps), on ebmkit's default
  ladder T = 1, 2, 4, 8 (``LADDER``; the mixtures' barriers of 7.5-13.5 nats are 1-1.7 at
  T = 8), a swap round after every kernel step, the one step size at every temperature;
  the T = 1 chains are measured. A round costs 4 replicas × (the kernel's gradients, 1 for
  its re-initialisation after the swaps and ⅓ for the swap decision's energy), so
  ``--steps / 9.3`` (MALA) or ``--steps / 25.3`` (HMC) rounds;
- ``ebmkit-nuts``, ``ebmkit-pt-mala``, ``ebmkit-pt-hmc``: ebmkit's ``ebm.NUTS`` and
  ``ebm.ParallelTempering`` with the same settings, transitions and starts (below).

Every adapted sampler warms up for 100 transitions (``ADAPT_STEPS``, 40 with ``--quick``)
from the exact draws; parallel tempering, which has nothing to adapt, runs as many rounds
first, so that its hot replicas, which start as copies of the T = 1 starts, relax to their
wider targets. The warm-up is discarded, and neither its gradients nor its time count.

**Gradients** are counted, not assumed: the energy is wrapped in a module (``Counted``)
that counts the rows it evaluates, those with a gradient wanted (ebm's ``energy_and_grad``
and ebmkit's ``_energy_grad`` ask for one: x requires grad) and those without (parallel
tempering's swap decisions, in both libraries). An energy evaluation without a gradient
counts as ⅓ of a gradient (``ENERGY_COST``): a forward pass without the backward, about a
third of a gradient's work for a network, 0.2-0.4 measured on these energies (the JSON
keeps both counts). ebm's ``init`` (one gradient per chain) comes before the count starts.
The counts per transition and chain are the "grad/trans." column; where they are fixed
they are the samplers' documented costs (the test checks them):

- ebm: ULA and MALA 1, HMC 5 (the state carries E and ∇E); parallel tempering per round
  and replica the kernel's gradients + 1 for the re-initialisation + ⅓: MALA 2⅓, HMC 6⅓;
- ebmkit parallel tempering: the same totals by another route: its MALA computes E and ∇E
  at the current point again every step (2 gradients), its HMC at the start of every
  trajectory (L + 1 = 6), nothing is carried across swaps, and a swap round evaluates each
  replica's energy once: MALA 2⅓, HMC 6⅓ per replica;
- NUTS, both libraries: the B chains advance in lockstep, one batched leapfrog step at a
  time, and a chain whose trajectory has stopped is frozen but still evaluated until every
  chain's has: a transition costs the batch 2^j − 1 gradients per chain for the j
  doublings its longest trajectory took (ebmkit one more: it computes ∇E at the start point
  again). The gradients a chain spends on its own trajectory, frozen steps excluded, are
  what ebm's Info reports (``n_grads``): summed over chains and transitions they give the
  "min ESS/own grad" column and the number in parentheses in "grad/trans.", what the
  chains would cost run one at a time. ebmkit reports no such count.

ESS per gradient is the ESS (of the measured chains, pooled) over the counted gradients of
the chains; "ms/ESS" is the wall time of the measured transitions per effective sample
(of the coordinate with the smallest ESS; on the mixtures of the pooled ESS, that of the
mixture: chains that stay in their mode give about one each), on one thread.

**ebmkit side by side.** ebmkit (``pip install ebmkit``, the top-level package ``ebm``) is
run in the same process on the same targets, from the same starts (same seed), for the
same number of measured transitions after the same warm-up length, its energy counted by
the same module, its draws analysed by the same code. Its rows are skipped when it is not
installed. Its public API is used: ``NUTS(step_size=ε₀, warmup=100, target_accept=0.8,
max_depth=10)``, warmed up by ``sample(energy, x0, steps=0)`` (its dual averaging, after
which it keeps ε̄), and ``ParallelTempering(MALA(step_size=s) or HMC(step_size=ε,
leapfrog_steps=5), temperatures=(1, 2, 4, 8), swap_every=1)``, burnt in by
``sample(energy, x0, steps=100)``; then both are stepped by ``step(energy, x)`` under
``torch.enable_grad()``, what ``sample`` does, to keep every draw and the acceptance rate.
Where the settings cannot be identical:

- NUTS: ebmkit adapts only the step size (identity mass), so ``nuts`` (dual averaging,
  identity mass) is its counterpart, and ``nuts-window`` shows what ebm's mass adaptation
  adds. Both average the acceptance statistic over the chains (ebm's ``pooled`` scope)
  with Stan's constants (γ 0.05, t₀ 10, κ 0.75, μ = log 10ε₀). ebmkit's U-turn test is the
  original one on positions, (x⁺ − x⁻)·p⁻ ≥ 0 and (x⁺ − x⁻)·p⁺ ≥ 0 over the whole span
  and every subtree; ebm's is Stan's generalised criterion on momentum sums, also across
  the halves of each merge. Both draw multinomially (uniform within a subtree, biased
  towards the new subtree at the top) and stop at ΔH > 1000.
- Parallel tempering: same ladder, swap schedule (alternating even and odd pairs), kernel
  type and step; ebm steps all replicas as one batch, ebmkit loops over the temperatures.
  ebmkit's swap rates are those of the measured rounds (from its ``swap_rates()`` after the
  burn-in and at the end); its T = 1 kernel acceptance is not exposed ("accept": ebm's only).
- Random numbers: ebm draws from an explicit generator, ebmkit from torch's global one
  (seeded with the same seed); the chains are therefore different draws of the same law.

Reported per sampler: the ESS of each coordinate pooled over chains (Geyer's initial
monotone estimator, :func:`ebmcore.kit.diagnostics.effective_sample_size`), its minimum and
mean over coordinates divided by the gradient evaluations spent (all chains); the minimum
over coordinates of the ESS per gradient of (x − μ)², the squared deviation from the exact
mean (what variance estimates need: chains that nearly flip sign each transition, as HMC
near half a period of a Gaussian direction does, have a huge ESS for the mean and a small
one for the variance); the mean acceptance; and the error of all measured samples against
the exact answer, in the kit's standardized units: mean error ‖Σ^-1/2 (m̂ − μ)‖₂ and
covariance error ‖Σ^-1/2 Ĉ Σ^-1/2 − I‖₂ (the banana adds the twist error |Ê[x₁² x₂] − 2|).

On the mixtures the modes are separated by energy barriers of 7.5 nats (the two wider
modes of the 2-D mixture) to 13.5 nats (1-D), which local samplers cross rarely, so ESS
pooled over all chains only says that the chains' means differ (it is about one per
chain, whatever the sampler). There the chains start stratified (mode k gets
round(wₖ·chains) chains, each at an exact draw of its component); the ESS columns are
within-mode (per mode, the chains that started there and never left its basin, on their
own; min and mean over modes and coordinates; "—" when no mode kept two chains); and the
table adds what within-mode ESS hides: the pooled min ESS per gradient over all chains
(where parallel tempering shows its point: chains that hop between modes), the largest
rank-normalised split R̂ (:func:`ebmcore.kit.diagnostics.rhat`; near 1 only when the
chains agree on the mode weights), the share of chains that visited more than one mode
(">1 mode": came within 2σⱼ of the centre of a mode other than their own), the error of
the mode weights over all samples (nearest-mode assignment, as
:func:`ebmcore.kit.conformance.check_mixture`: leaking between modes or divergence shows
here), and the per-mode mean and covariance errors (worst mode, in units of σₖ).

ESS is reliable only when the chains are much longer than the autocorrelation time: a
``†`` marks rows where the largest τ̂ (chains·transitions/ESS, of x or (x − μ)²) exceeds
1/20 of the transitions; their ESS is a rough guess (the estimator cannot see correlations
longer than the chain), not a number to rank samplers by. Chains that end non-finite (ULA
beyond its stability limit) are dropped and counted in the "diverged" column.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
from ebm_hmc import HMC, NUTS
from ebm_langevin import MALA, Langevin
from ebm_tempering import ParallelTempering, ParallelTemperingInfo
from torch import Tensor, nn

from ebmcore.kit.conformance import (
    ANISOTROPIC_COV,
    BananaEnergy,
    GaussianEnergy,
    gaussian_10d_target,
    mixture_targets,
    moments,
    standardized_errors,
)
from ebmcore.kit.diagnostics import effective_sample_size, rhat

LEAPFROG = 5
ADAPT_STEPS = 100
NUTS_TARGET = 0.8       # the mean acceptance NUTS adapts to: Stan's and ebmkit's default
MAX_DEPTH = 10          # ebm's and ebmkit's default
NUTS_GRADS = 10         # NUTS transitions: the budget / 10 (a chain's own 2-18 a transition here, the batch's 4-63)
LADDER = (1.0, 2.0, 4.0, 8.0)  # ebmkit's default ladder (barriers of 7.5-13.5 nats are 1-1.7 at T = 8)
JITTER = 0.5
#: an energy evaluation without a gradient, in gradients: the forward pass alone, a third of
#: forward and backward for a network (here measured 0.2-0.4 on the kit's energies)
ENERGY_COST = 1 / 3


def ebmkit():
    """ebmkit's top-level module ``ebm``, or None where ebmkit is not installed (a package
    named ``ebm`` that is not ebmkit's does not count)."""
    try:
        importlib.metadata.version("ebmkit")
        import ebm
    except ImportError:  # PackageNotFoundError is one
        return None
    return ebm


@dataclass
class Target:
    name: str
    title: str
    energy: nn.Module
    kind: str           # "gaussian", "mixture" or "banana"
    mean: Tensor | None  # exact mean and covariance (Gaussians, banana)
    cov: Tensor | None
    ula_step: float     # the steps the plugin and conformance tests pass with
    mala_step: float
    hmc_step: float


def targets() -> dict[str, Target]:
    m10, c10 = gaussian_10d_target()
    mix = mixture_targets()
    m2, c2 = torch.tensor([1.0, -1.0]), torch.tensor([[1.0, 0.6], [0.6, 0.8]])
    banana_cov = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    return {t.name: t for t in [
        Target("gaussian_2d", "correlated 2-D Gaussian (check_gaussian_2d)", GaussianEnergy(m2, c2),
               "gaussian", m2, c2, 0.01, 0.3, 0.3),
        Target("anisotropic", "anisotropic 2-D Gaussian, condition 535 (check_anisotropic_gaussian)",
               GaussianEnergy(torch.zeros(2), ANISOTROPIC_COV), "gaussian", torch.zeros(2), ANISOTROPIC_COV,
               0.0001, 0.003, 0.05),
        Target("gaussian_10d", "10-D Gaussian, condition 8 (check_gaussian_10d)", GaussianEnergy(m10, c10),
               "gaussian", m10, c10, 0.02, 0.3, 0.4),
        Target("mixture_1d", "1-D mixture, 2 modes (check_mixture '1d')", mix["1d"], "mixture", None, None,
               0.01, 0.1, 0.3),
        Target("mixture_2d", "2-D mixture, 3 modes (check_mixture '2d')", mix["2d"], "mixture", None, None,
               0.01, 0.1, 0.3),
        Target("banana", "banana, b = 1 (check_banana)", BananaEnergy(1.0, 1.0), "banana",
               torch.zeros(2), banana_cov, 0.01, 0.05, 0.1),
    ]}


@dataclass
class Row:
    """A sampler to measure: ``warmup`` transitions (discarded, not counted), then
    ``transitions`` measured ones. ``sampler`` is ebm's, or ebmkit's where ``library`` says
    so; ``step`` labels its step size (None: the adapted one, read after the warm-up)."""

    name: str
    sampler: Any
    transitions: int
    warmup: int = 0
    step: str | None = None
    library: str = "ebm"


def rows(t: Target, steps: int, adapt_steps: int = ADAPT_STEPS, kit=None) -> dict[str, Row]:
    """The samplers by key, for a budget of about ``steps`` gradients per chain; ebmkit's
    when ``kit`` (its module) is given."""
    n_hmc = max(steps // LEAPFROG, 2)
    n_nuts = max(steps // NUTS_GRADS, 2)
    # a round: 4 replicas × (the kernel's gradients + the re-initialisation's + the swap energy)
    n_pt = {kind: max(int(steps / (len(LADDER) * (k + 1 + ENERGY_COST))), 2)
            for kind, k in (("mala", 1), ("hmc", LEAPFROG))}
    hmc = {"step_size": t.hmc_step, "n_leapfrog": LEAPFROG}
    nuts = {"step_size": t.hmc_step, "max_depth": MAX_DEPTH, "target_accept": NUTS_TARGET,
            "n_steps": n_nuts + adapt_steps, "adapt_steps": adapt_steps}
    kernels = {"mala": (MALA(step_size=t.mala_step), f"{t.mala_step:g}"), "hmc": (HMC(**hmc), f"{t.hmc_step:g}")}
    out = {
        "ula": Row("ULA", Langevin(step_size=t.ula_step, n_steps=steps), steps, step=f"{t.ula_step:g}"),
        "ula-mala-step": Row("ULA at MALA's step", Langevin(step_size=t.mala_step, n_steps=steps), steps,
                             step=f"{t.mala_step:g}"),
        "mala": Row("MALA", MALA(step_size=t.mala_step, n_steps=steps), steps, step=f"{t.mala_step:g}"),
        "hmc": Row(f"HMC {LEAPFROG} leapfrog", HMC(**hmc, n_steps=n_hmc), n_hmc, step=f"{t.hmc_step:g}"),
        "hmc-adapted": Row(f"HMC {LEAPFROG} leapfrog, adapted",
                           HMC(**hmc, n_steps=n_hmc + adapt_steps, adapt_steps=adapt_steps), n_hmc, adapt_steps),
        "hmc-window": Row(f"HMC {LEAPFROG} leapfrog, window-adapted, jittered",
                          HMC(**hmc, n_steps=n_hmc + adapt_steps, adapt_steps=adapt_steps, adaptation="window",
                              jitter=JITTER), n_hmc, adapt_steps),
        "nuts": Row("NUTS, step adapted", NUTS(**nuts, adaptation="step_size"), n_nuts, adapt_steps),
        "nuts-window": Row("NUTS, window-adapted", NUTS(**nuts, adaptation="window"), n_nuts, adapt_steps),
    }
    for kind, (kernel, label) in kernels.items():
        out[f"pt-{kind}"] = Row(f"PT, {kind.upper()} × {len(LADDER)}",
                                ParallelTempering(kernel, temperatures=LADDER, n_steps=n_pt[kind] + adapt_steps),
                                n_pt[kind], adapt_steps, label)
    if kit is not None:
        out["ebmkit-nuts"] = Row("ebmkit NUTS", kit.NUTS(step_size=t.hmc_step, warmup=adapt_steps,
                                                         target_accept=NUTS_TARGET, max_depth=MAX_DEPTH),
                                 n_nuts, adapt_steps, library="ebmkit")
        kit_kernels = {"mala": kit.MALA(step_size=t.mala_step),
                       "hmc": kit.HMC(step_size=t.hmc_step, leapfrog_steps=LEAPFROG)}
        for kind, kernel in kit_kernels.items():
            out[f"ebmkit-pt-{kind}"] = Row(f"ebmkit PT, {kind.upper()} × {len(LADDER)}",
                                           kit.ParallelTempering(kernel, temperatures=LADDER, swap_every=1),
                                           n_pt[kind], adapt_steps, kernels[kind][1], library="ebmkit")
    return out


#: the rows' keys, in the tables' order (ebmkit's last; run only where it is installed)
KEYS = ("ula", "ula-mala-step", "mala", "hmc", "hmc-adapted", "hmc-window", "nuts", "nuts-window", "pt-mala",
        "pt-hmc", "ebmkit-nuts", "ebmkit-pt-mala", "ebmkit-pt-hmc")


def starts(t: Target, chains: int, rng: torch.Generator) -> tuple[Tensor, Tensor | None]:
    """Exact draws of ``t``; on the mixtures, stratified: mode k gets round(wₖ·chains) chains
    (largest remainders), so that the mode weights start exact and their error measures the
    sampler, not the multinomial noise of the starts. Returns (x0, starting mode or None)."""
    if t.kind != "mixture":
        return t.energy.sample(chains, rng=rng), None
    w = t.energy.weights.double()
    counts = (w * chains).floor().long()
    rest = (w * chains - counts).argsort(descending=True)[: chains - int(counts.sum())]
    counts[rest] += 1
    k = torch.repeat_interleave(torch.arange(len(w)), counts)
    x0 = t.energy.means[k] + t.energy.scales[k, None] * torch.randn(chains, t.energy.means.shape[1], generator=rng)
    return x0, k


# ---------------------------------------------------------------- running

class Counted(nn.Module):
    """``energy``, counting the rows it evaluates: ``grads`` those whose gradient is wanted
    (x requires one, under grad mode), ``evals`` the others."""

    def __init__(self, energy: nn.Module):
        super().__init__()
        self.energy = energy
        self.grads = self.evals = 0

    def forward(self, x: Tensor, *cond: Tensor) -> Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            self.grads += len(x)
        else:
            self.evals += len(x)
        return self.energy(x, *cond)


@dataclass
class Run:
    """The measured transitions of a row: states (n, chains, d); counted energy rows with and
    without gradient; each chain's own gradients (ebm's NUTS) or None; wall seconds; the
    rest for the table (acceptance, adapted step, swap rates, divergences)."""

    x: Tensor
    grads: int
    evals: int
    own: Tensor | None
    seconds: float
    extra: dict


def run_ebm(row: Row, x0: Tensor, energy: nn.Module, rng: torch.Generator) -> Run:
    """The sampler's init and steps, as ``run_chain`` drives them (same random numbers as
    ``sampler.run``), so that the count can restart after the warm-up."""
    s, counted = row.sampler, Counted(energy)
    with torch.no_grad():
        state = s.init(x0, counted, rng=rng)
        for _ in range(row.warmup):
            state, _ = s.step(state, counted, rng=rng)
        counted.grads = counted.evals = 0
        xs, infos = [], []
        start = time.perf_counter()
        for _ in range(row.transitions):
            state, info = s.step(state, counted, rng=rng)
            xs.append(state.x)
            infos.append(info)
        seconds = time.perf_counter() - start
    extra = {}
    kernel = [i.kernel for i in infos] if isinstance(infos[0], ParallelTemperingInfo) else infos
    if hasattr(kernel[0], "acceptance_prob"):  # ULA has none
        extra["acceptance"] = torch.stack([i.acceptance_prob for i in kernel]).float().mean().item()
    if isinstance(infos[0], ParallelTemperingInfo):
        extra["swap_rates"] = torch.stack([i.swap_prob for i in infos]).double().mean((0, 1)).tolist()
    if row.warmup and hasattr(state, "step_size"):  # fixed at ε̄ once the warm-up is over
        extra["adapted_step"] = state.step_size.float().mean().item()
    own = None
    if hasattr(infos[0], "n_grads"):
        own = torch.stack([i.n_grads for i in infos]).sum(0)
        extra["divergent"] = int(torch.stack([i.diverging for i in infos]).sum())
    return Run(torch.stack(xs), counted.grads, counted.evals, own, seconds, extra)


def _swap_rounds(pair: int, rounds: int) -> int:
    """How many of ebmkit's swap rounds 1 … ``rounds`` propose ``pair`` (those of its parity)."""
    return (rounds + pair % 2) // 2


def run_ebmkit(row: Row, x0: Tensor, energy: nn.Module, seed: int) -> Run:
    """ebmkit's warm-up through ``sample``, then its ``step``s, what ``sample`` runs."""
    s, counted = row.sampler, Counted(energy)
    torch.manual_seed(seed)  # ebmkit draws from the global generator
    nuts = hasattr(s, "warmup")
    # NUTS adapts inside sample() (its `warmup` draws) and keeps ε̄; tempering burns in by rounds
    x = s.sample(counted, x0, steps=0 if nuts else row.warmup)
    counted.grads = counted.evals = 0
    rates0 = None if nuts else s.swap_rates()
    xs, accept = [], []
    start = time.perf_counter()
    with torch.enable_grad():
        for _ in range(row.transitions):
            x = s.step(counted, x).detach()
            xs.append(x)
            accept.append(s.last_accept_rate)
    seconds = time.perf_counter() - start
    extra = {}
    if nuts:
        extra.update(acceptance=sum(accept) / len(accept), adapted_step=s.step_size, divergent=s.divergences)
    else:  # the rates of the measured rounds, from those over the burn-in and over all
        n0, n1 = row.warmup, row.warmup + row.transitions
        extra["swap_rates"] = [(r1 * _swap_rounds(k, n1) - r0 * _swap_rounds(k, n0))
                               / max(_swap_rounds(k, n1) - _swap_rounds(k, n0), 1)
                               for k, (r0, r1) in enumerate(zip(rates0, s.swap_rates()))]
    return Run(torch.stack(xs), counted.grads, counted.evals, None, seconds, extra)


# ---------------------------------------------------------------- measuring

def measure(t: Target, row: Row, chains: int, seed: int = 0) -> dict:
    """Run ``row`` from exact draws of ``t`` and measure ESS per gradient and sample errors."""
    rng = torch.Generator().manual_seed(seed)
    x0, start_mode = starts(t, chains, rng)
    run = run_ebm(row, x0, t.energy, rng) if row.library == "ebm" else run_ebmkit(row, x0, t.energy, seed)
    return {**analyse(t, run, chains, start_mode), **run.extra}


def analyse(t: Target, run: Run, chains: int, start_mode: Tensor | None) -> dict:
    """ESS per gradient, errors and the rest of a row's columns from the measured transitions."""
    xs = run.x.double()                                  # (n, chains, d)
    ok = torch.isfinite(xs).all(0).all(-1)               # chains that never left the reals
    xs = xs[:, ok]
    n, m, d = xs.shape
    # every chain's share of the counted work
    work = run.grads + ENERGY_COST * run.evals
    grads = torch.full((chains,), work / chains, dtype=torch.float64)[ok]
    own = None if run.own is None else run.own.double()[ok]
    if start_mode is not None:
        start_mode = start_mode[ok]
    out = {"chains": chains, "diverged": chains - m, "transitions": n, "seconds": run.seconds,
           "gradients": run.grads, "energy_evaluations": run.evals,
           "grads_per_transition": work / (n * chains)}
    if own is not None:
        out["own_grads_per_transition"] = own.mean().item() / n
    if m < 2:
        return {**out, "min_ess_per_grad": math.nan, "mean_ess_per_grad": math.nan}
    # ESS of the coordinates (estimating the mean) and of their squared deviations from the
    # exact centre (estimating variances: antithetic chains, e.g. HMC near half a period,
    # have a huge ESS for the mean and a small one for the variance)
    centre = t.mean.double() if start_mode is None else t.energy.means.double()[start_mode]
    sq = (xs - centre) ** 2
    if start_mode is None:
        groups = [torch.ones(m, dtype=torch.bool)]
    else:  # per mode, the chains that started there and never left its basin (nearest mode)
        mode = torch.cdist(xs.reshape(-1, d), t.energy.means.double()).argmin(1).reshape(n, m)
        stayed = (mode == start_mode).all(0)
        groups = [g for g in (stayed & (start_mode == j) for j in start_mode.unique().tolist()) if g.sum() >= 2]
    if groups:
        # per group (all chains; on the mixtures the chains that stayed in each mode)
        ess = [effective_sample_size(xs[:, g]) for g in groups]
        ess_sq = [effective_sample_size(sq[:, g]) for g in groups]
        per_grad = torch.stack([e / grads[g].sum() for e, g in zip(ess, groups)])
        out.update(min_ess_per_grad=per_grad.min().item(), mean_ess_per_grad=per_grad.mean().item(),
                   min_ess_sq_per_grad=torch.stack([e / grads[g].sum() for e, g in zip(ess_sq, groups)]).min().item())
        if own is not None:
            out["min_ess_per_own_grad"] = torch.stack([e / own[g].sum() for e, g in zip(ess, groups)]).min().item()
        out["tau_max"] = max((n * int(g.sum()) / torch.minimum(e, e2).min()).item()
                             for e, e2, g in zip(ess, ess_sq, groups))
        out["reliable"] = bool(n >= 20 * out["tau_max"])
    else:  # every mode lost its chains (they hop): only the pooled ESS means something
        out.update(min_ess_per_grad=math.nan, mean_ess_per_grad=math.nan)
    if start_mode is not None:
        pooled = effective_sample_size(xs) / grads.sum()
        out.update(pooled_min_ess_per_grad=pooled.min().item(), pooled_mean_ess_per_grad=pooled.mean().item())
    # wall time per effective sample of the target: of the mixture, pooled (chains that stay in
    # their mode give about one per chain: that is what they are worth for the mixture)
    ess_per_grad = out.get("pooled_min_ess_per_grad", out["min_ess_per_grad"])
    out["ms_per_ess"] = 1000 * run.seconds / (ess_per_grad * grads.sum().item())
    if n >= 4:
        out["rhat"] = rhat(xs).max().item()
    flat = xs.reshape(-1, d)
    if t.kind in ("gaussian", "banana"):
        out["mean_error"], out["cov_error"] = standardized_errors(*moments(flat), t.mean, t.cov)
    if t.kind == "banana":
        out["twist_error"] = abs((flat[:, 0] ** 2 * flat[:, 1]).mean().item() - 2.0)
    if t.kind == "mixture":
        mu, sd, w = t.energy.means.double(), t.energy.scales.double(), t.energy.weights.double()
        k = torch.cdist(flat, mu).argmin(1)
        weights = torch.bincount(k, minlength=len(w)).double() / len(k)
        out["weight_error"] = (weights - w).abs().max().item()
        # a chain visited mode j if it came within 2σⱼ of μⱼ (the cores are disjoint; the
        # nearest-mode boundary alone would count brief excursions into the barrier)
        core = (torch.cdist(flat, mu) < 2 * sd).reshape(n, m, len(w))
        out["multi_mode_share"] = (core.any(0).sum(-1) > 1).double().mean().item()
        mean_errs, cov_errs = [], []
        for j in range(len(w)):
            xj = flat[k == j]
            if len(xj) < 2:
                mean_errs.append(math.inf), cov_errs.append(math.inf)
                continue
            me, ce = standardized_errors(*moments(xj), mu[j], sd[j] ** 2 * torch.eye(d, dtype=torch.float64))
            mean_errs.append(me), cov_errs.append(ce)
        out["mean_error"], out["cov_error"] = max(mean_errs), max(cov_errs)
    return out


def run_target(t: Target, chains: int, steps: int, adapt_steps: int = ADAPT_STEPS, seed: int = 0,
               keys: list[str] | None = None, kit=None) -> list[dict]:
    """The rows ``keys`` (all by default) on ``t``; ebmkit's only where ``kit`` is given."""
    available = rows(t, steps, adapt_steps, kit)
    results = []
    for key in keys or list(available):
        if key not in available:  # an ebmkit row without ebmkit
            continue
        row = available[key]
        r = measure(t, row, chains, seed)
        step = row.step
        if step is None:
            step = f"{t.hmc_step:g} → {r['adapted_step']:.3g}"
        results.append({"target": t.name, "key": key, "sampler": row.name, "library": row.library,
                        "step": step, "warmup": row.warmup, **r})
    return results


# ---------------------------------------------------------------- output

def _own_grads(row: dict) -> str:
    g = f"{row['grads_per_transition']:.1f}"
    return g + (f" ({row['own_grads_per_transition']:.1f})" if "own_grads_per_transition" in row else "")


def _swap(row: dict) -> str:
    rates = row.get("swap_rates")
    return "—" if rates is None else f"{sum(rates) / len(rates):.2f}"


COLUMNS = [  # (key, header, format or a function of the row); a column no row has is left out
    ("sampler", "sampler", "{}"), ("step", "step", "{}"),
    ("grads_per_transition", "grad/trans.", _own_grads),
    ("min_ess_per_grad", "min ESS/grad", "{:.4f}"), ("mean_ess_per_grad", "mean ESS/grad", "{:.4f}"),
    ("min_ess_per_own_grad", "min ESS/own grad", "{:.4f}"),
    ("min_ess_sq_per_grad", "min ESS/grad of (x−μ)²", "{:.4f}"),
    ("pooled_min_ess_per_grad", "pooled min ESS/grad", "{:.5f}"), ("rhat", "R̂", "{:.2f}"),
    ("acceptance", "accept", "{:.2f}"), ("swap_rates", "swap", _swap),
    ("mean_error", "mean err", "{:.3f}"), ("cov_error", "cov err", "{:.3f}"),
    ("twist_error", "twist err", "{:.3f}"),
    ("weight_error", "weight err", "{:.3f}"), ("multi_mode_share", ">1 mode", "{:.2f}"),
    ("seconds", "s", "{:.1f}"), ("ms_per_ess", "ms/ESS", "{:.3g}"),
]
#: columns shown only where they mean something: R̂ and the pooled ESS on the mixtures
MIXTURE_ONLY = {"pooled_min_ess_per_grad", "rhat"}


def _cols(t: Target, results: list[dict]):
    return [c for c in COLUMNS if any(c[0] in r for r in results)
            and (t.kind == "mixture" or c[0] not in MIXTURE_ONLY)]


def _cells(row: dict, cols) -> list[str]:
    cells = []
    for key, _, fmt in cols:
        v = row.get(key)
        if callable(fmt):
            cells.append(fmt(row))
        else:
            cells.append("—" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v))
    if not row.get("reliable", True):
        cells[[key for key, _, _ in cols].index("min_ess_per_grad")] += " †"
    cells.append(f"{row['diverged']}/{row['chains']}" if row["diverged"] else "0")
    return cells


def header(t: Target, chains: int, steps: int) -> str:
    return (f"{t.title}: {chains} chains from exact draws, about {steps} gradient evaluations per chain"
            + (" (ESS within modes, over the chains that stayed in theirs; per-mode errors in σₖ)" if t.kind == "mixture" else ""))


def text_table(t: Target, results: list[dict]) -> str:
    cols = _cols(t, results)
    heads = [h for _, h, _ in cols] + ["diverged"]
    body = [_cells(r, cols) for r in results]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(heads)]
    line = lambda cs: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cs, widths)))
    return "\n".join([line(heads), *(line(b) for b in body)])


def markdown_table(t: Target, results: list[dict]) -> str:
    cols = _cols(t, results)
    heads = [h for _, h, _ in cols] + ["diverged"]
    out = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    out += ["| " + " | ".join(_cells(r, cols)) + " |" for r in results]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chains", type=int, default=None, help="chains per sampler (default 200; 32 with --quick)")
    p.add_argument("--steps", type=int, default=None,
                   help="gradient evaluations per chain (default 10000; 200 with --quick)")
    p.add_argument("--targets", default="all", help="comma-separated, from: " + ", ".join(targets()) + " (or all)")
    p.add_argument("--samplers", default="all", help="comma-separated, from: " + ", ".join(KEYS) + " (or all)")
    p.add_argument("--quick", action="store_true", help="smoke run: few chains, short chains, short warm-up (40)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--json", metavar="PATH", help="also write every row as JSON")
    p.add_argument("--markdown", action="store_true", help="print the tables as markdown (for docs/performance.md)")
    args = p.parse_args(argv)
    chains = args.chains or (32 if args.quick else 200)
    steps = args.steps or (200 if args.quick else 10000)
    adapt_steps = 40 if args.quick else ADAPT_STEPS
    torch.set_num_threads(args.threads)
    all_targets = targets()
    names = list(all_targets) if args.targets == "all" else [s.strip() for s in args.targets.split(",") if s.strip()]
    unknown = [n for n in names if n not in all_targets]
    if unknown:
        p.error(f"unknown target(s) {unknown}; choose from {list(all_targets)}")
    keys = list(KEYS) if args.samplers == "all" else [s.strip() for s in args.samplers.split(",") if s.strip()]
    unknown = [k for k in keys if k not in KEYS]
    if unknown:
        p.error(f"unknown sampler(s) {unknown}; choose from {list(KEYS)}")
    kit = ebmkit()
    if kit is None and any(k.startswith("ebmkit-") for k in keys):
        print("ebmkit is not installed (pip install ebmkit): its rows are skipped\n")
    results = []
    for name in names:
        t = all_targets[name]
        rs = run_target(t, chains, steps, adapt_steps, args.seed, keys, kit)
        if not rs:  # only ebmkit's rows asked for, without ebmkit
            continue
        results += rs
        print(("### " if args.markdown else "") + header(t, chains, steps) + "\n")
        print(markdown_table(t, rs) if args.markdown else text_table(t, rs))
        print(flush=True)
    print(f"ESS/grad: ESS pooled over chains (mixtures: per mode, over the chains that stayed in it) / the "
          f"gradients counted after the warm-up ({adapt_steps} transitions, discarded), an energy evaluation "
          "without one as ⅓; grad/trans.: those per transition and chain (NUTS: the lockstep batch's; in parentheses "
          "the chain's own, Info's n_grads, which min ESS/own grad divides by). PT: the T = 1 chains, ladder "
          f"{', '.join(f'{x:g}' for x in LADDER)}; swap: mean exchange rate of neighbouring temperatures. "
          "ms/ESS: wall time of the measured transitions per effective sample (smallest ESS; mixtures: pooled). "
          "Errors over all measured samples, standardized (‖Σ^-1/2 (m̂ − μ)‖, ‖Σ^-1/2 Ĉ Σ^-1/2 − I‖₂). "
          "† chain shorter than 20 τ̂: ESS unreliable.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"chains": chains, "steps": steps, "adapt_steps": adapt_steps, "seed": args.seed,
                       "ladder": LADDER, "rows": results}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
