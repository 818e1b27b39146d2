"""Effective sample size per gradient evaluation of ULA, MALA and HMC on the conformance kit's targets.

    python benchmarks/ess_per_gradient.py [--chains 200] [--steps 10000] [--targets gaussian_10d,banana]
                                          [--quick] [--json PATH] [--markdown]

The targets are the analytic ones of :mod:`ebmcore.kit.conformance`: the correlated 2-D Gaussian,
the anisotropic Gaussian (condition number 535), the 10-D Gaussian, the 1-D and 2-D
mixtures of ``mixture_targets()`` and the banana. On each, every sampler runs ``--chains``
chains started at exact draws of the target (so no burn-in is needed) for ``--steps``
gradient evaluations per chain, with ``trace=True``:

- ULA at the step the conformance tests pass with (``tests/test_conformance.py``
  ``ULA_SETTINGS``; ``test_langevin.py`` for the 2-D Gaussian);
- ULA at MALA's step: the same speed of motion without the Metropolis correction, to show
  what the correction buys (ULA's bias);
- MALA at the step of ``plugins/ebm-langevin/tests/test_mala.py``;
- HMC with 5 leapfrog steps at a fixed step (the initial step of
  ``plugins/ebm-hmc/tests/test_hmc.py``), ``--steps // 5`` transitions;
- the same HMC with dual averaging to 0.65 acceptance, from that step, over 100 extra
  transitions that are discarded and not counted as gradients.

Reported per sampler: the ESS of each coordinate pooled over chains (Geyer's initial
monotone estimator, :func:`ebmcore.kit.diagnostics.effective_sample_size`), its minimum and
mean over coordinates divided by the gradient evaluations spent (all chains); the minimum
over coordinates of the ESS per gradient of (x − μ)², the squared deviation from the exact
mean (what variance estimates need: chains that nearly flip sign each transition, as HMC
near half a period of a Gaussian direction does, have a huge ESS for the mean and a small
one for the variance); the mean acceptance; and the error of all traced samples against
the exact answer, in the kit's standardized units: mean error ‖Σ^-1/2 (m̂ − μ)‖₂ and
covariance error ‖Σ^-1/2 Ĉ Σ^-1/2 − I‖₂ (the banana adds the twist error |Ê[x₁² x₂] − 2|).

On the mixtures the modes are separated by energy barriers of 7.5 nats (the two wider
modes of the 2-D mixture) to 13.5 nats (1-D), which local samplers cross rarely, so ESS
pooled over all chains only says that the chains' means differ (it is about one per
chain, whatever the sampler). There the chains start stratified (mode k gets
round(wₖ·chains) chains, each at an exact draw of its component); the ESS columns are
within-mode (per mode, the chains that started there and never left its basin, on their
own; min and mean over modes and coordinates; the pooled values are in the JSON); and the
table adds what within-mode ESS hides: the share of chains that visited more than one
mode (">1 mode": came within 2σⱼ of the centre of a mode other than their own), the
error of the mode weights over all samples (nearest-mode assignment, as
:func:`ebmcore.kit.conformance.check_mixture`: leaking between modes or divergence shows here),
and the per-mode mean and covariance errors (worst mode, in units of σₖ).

ESS is reliable only when the chains are much longer than the autocorrelation time: a
``†`` marks rows where the largest τ̂ (chains·transitions/ESS, of x or (x − μ)²) exceeds
1/20 of the transitions; their ESS is a rough guess (the estimator cannot see correlations
longer than the chain), not a number to rank samplers by. Chains that end non-finite (ULA
beyond its stability limit) are dropped and counted in the "diverged" column.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass

import torch
from ebm_hmc import HMC
from ebm_langevin import MALA, Langevin
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
from ebmcore.kit.diagnostics import effective_sample_size

LEAPFROG = 5
ADAPT_STEPS = 100


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


def samplers(t: Target, steps: int, adapt_steps: int = ADAPT_STEPS) -> dict[str, tuple]:
    """name -> (sampler, gradients per transition, discarded warm-up transitions, step label)."""
    n_hmc = max(steps // LEAPFROG, 2)
    return {
        "ULA": (Langevin(step_size=t.ula_step, n_steps=steps), 1, 0, f"{t.ula_step:g}"),
        "ULA at MALA's step": (Langevin(step_size=t.mala_step, n_steps=steps), 1, 0, f"{t.mala_step:g}"),
        "MALA": (MALA(step_size=t.mala_step, n_steps=steps), 1, 0, f"{t.mala_step:g}"),
        f"HMC {LEAPFROG} leapfrog": (HMC(step_size=t.hmc_step, n_leapfrog=LEAPFROG, n_steps=n_hmc),
                                     LEAPFROG, 0, f"{t.hmc_step:g}"),
        f"HMC {LEAPFROG} leapfrog, adapted": (
            HMC(step_size=t.hmc_step, n_leapfrog=LEAPFROG, n_steps=n_hmc + adapt_steps, adapt_steps=adapt_steps),
            LEAPFROG, adapt_steps, None),
    }


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


def measure(t: Target, sampler, grads_per_step: int, burn: int, chains: int, seed: int = 0) -> dict:
    """Run ``sampler`` from exact draws of ``t`` and measure ESS per gradient and sample errors."""
    rng = torch.Generator().manual_seed(seed)
    x0, start_mode = starts(t, chains, rng)
    start = time.perf_counter()
    _, trace = sampler.run(x0, t.energy, rng=rng, trace=True)
    seconds = time.perf_counter() - start
    xs = trace["x"][burn:].double()                      # (n, chains, d)
    ok = torch.isfinite(xs).all(0).all(-1)               # chains that never left the reals
    xs = xs[:, ok]
    n, m, d = xs.shape
    if start_mode is not None:
        start_mode = start_mode[ok]
    out = {"chains": chains, "diverged": chains - m, "transitions": n, "gradients_per_chain": n * grads_per_step,
           "seconds": seconds}
    if "acceptance_prob" in trace:
        out["acceptance"] = trace["acceptance_prob"][burn:][:, ok].mean().item()
    if "step_size" in trace:
        out["adapted_step"] = trace["step_size"][burn:].float().mean().item()
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
    # per group (all chains; on the mixtures the chains that stayed in each mode), per gradient
    ess = torch.stack([effective_sample_size(xs[:, g]) / (n * grads_per_step * int(g.sum())) for g in groups])
    ess_sq = torch.stack([effective_sample_size(sq[:, g]) / (n * grads_per_step * int(g.sum())) for g in groups])
    out.update(min_ess_per_grad=ess.min().item(), mean_ess_per_grad=ess.mean().item(),
               min_ess_sq_per_grad=ess_sq.min().item())
    if start_mode is not None:
        pooled = effective_sample_size(xs) / (n * grads_per_step * m)
        out.update(pooled_min_ess_per_grad=pooled.min().item(), pooled_mean_ess_per_grad=pooled.mean().item())
    out["tau_max"] = 1 / (grads_per_step * min(out["min_ess_per_grad"], out["min_ess_sq_per_grad"]))
    out["reliable"] = bool(n >= 20 * out["tau_max"])
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


def run_target(t: Target, chains: int, steps: int, adapt_steps: int = ADAPT_STEPS, seed: int = 0) -> list[dict]:
    rows = []
    for name, (sampler, gps, burn, step) in samplers(t, steps, adapt_steps).items():
        r = measure(t, sampler, gps, burn, chains, seed)
        if step is None:
            step = f"{t.hmc_step:g} → {r['adapted_step']:.3g}"
        rows.append({"target": t.name, "sampler": name, "step": step, **r})
    return rows


# ---------------------------------------------------------------- output

COLUMNS = [  # (key, header, format)
    ("sampler", "sampler", "{}"), ("step", "step", "{}"),
    ("min_ess_per_grad", "min ESS/grad", "{:.4f}"), ("mean_ess_per_grad", "mean ESS/grad", "{:.4f}"),
    ("min_ess_sq_per_grad", "min ESS/grad of (x−μ)²", "{:.4f}"),
    ("acceptance", "accept", "{:.2f}"), ("mean_error", "mean err", "{:.3f}"), ("cov_error", "cov err", "{:.3f}"),
]
EXTRA = {
    "banana": [("twist_error", "twist err", "{:.3f}")],
    "mixture": [("weight_error", "weight err", "{:.3f}"), ("multi_mode_share", ">1 mode", "{:.2f}")],
    "gaussian": [],
}


def _cells(row: dict, cols) -> list[str]:
    cells = []
    for key, _, fmt in cols:
        v = row.get(key)
        cells.append("—" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v))
    if not row.get("reliable", True):
        cells[2] += " †"
    cells.append(f"{row['diverged']}/{row['chains']}" if row["diverged"] else "0")
    return cells


def _cols(t: Target):
    return COLUMNS + EXTRA[t.kind]


def header(t: Target, rows: list[dict], chains: int, steps: int) -> str:
    return (f"{t.title}: {chains} chains from exact draws, {steps} gradient evaluations per chain"
            + (" (ESS within modes, over the chains that stayed in theirs; per-mode errors in σₖ)" if t.kind == "mixture" else ""))


def text_table(t: Target, rows: list[dict]) -> str:
    cols = _cols(t)
    heads = [h for _, h, _ in cols] + ["diverged"]
    body = [_cells(r, cols) for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(heads)]
    line = lambda cs: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cs, widths)))
    return "\n".join([line(heads), *(line(b) for b in body)])


def markdown_table(t: Target, rows: list[dict]) -> str:
    cols = _cols(t)
    heads = [h for _, h, _ in cols] + ["diverged"]
    out = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    out += ["| " + " | ".join(_cells(r, cols)) + " |" for r in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chains", type=int, default=None, help="chains per sampler (default 200; 32 with --quick)")
    p.add_argument("--steps", type=int, default=None,
                   help="gradient evaluations per chain (default 10000; 200 with --quick)")
    p.add_argument("--targets", default="all", help="comma-separated, from: " + ", ".join(targets()) + " (or all)")
    p.add_argument("--quick", action="store_true", help="smoke run: few chains, short chains, short adaptation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--json", metavar="PATH", help="also write every row as JSON")
    p.add_argument("--markdown", action="store_true", help="print the tables as markdown (for docs/performance.md)")
    args = p.parse_args(argv)
    chains = args.chains or (32 if args.quick else 200)
    steps = args.steps or (200 if args.quick else 10000)
    adapt_steps = 20 if args.quick else ADAPT_STEPS
    torch.set_num_threads(args.threads)
    all_targets = targets()
    names = list(all_targets) if args.targets == "all" else [s.strip() for s in args.targets.split(",") if s.strip()]
    unknown = [n for n in names if n not in all_targets]
    if unknown:
        p.error(f"unknown target(s) {unknown}; choose from {list(all_targets)}")
    results = []
    for name in names:
        t = all_targets[name]
        rows = run_target(t, chains, steps, adapt_steps, args.seed)
        results += rows
        print(("### " if args.markdown else "") + header(t, rows, chains, steps) + "\n")
        print(markdown_table(t, rows) if args.markdown else text_table(t, rows))
        print(flush=True)
    print(f"ESS/grad: ESS pooled over chains (mixtures: per mode, over the chains that stayed in it) "
          f"/ (gradient evaluations × chains); HMC {LEAPFROG} leapfrog "
          f"= {LEAPFROG} gradients per transition, adaptation ({adapt_steps} transitions) discarded and not counted. "
          "Errors over all traced samples, standardized (‖Σ^-1/2 (m̂ − μ)‖, ‖Σ^-1/2 Ĉ Σ^-1/2 − I‖₂). "
          "† chain shorter than 20 τ̂: ESS unreliable.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"chains": chains, "steps": steps, "adapt_steps": adapt_steps, "seed": args.seed,
                       "rows": results}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1:])
