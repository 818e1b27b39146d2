"""Speed of ebm's samplers (Langevin, MALA, HMC, adapted HMC, NUTS) against minimal hand-written torch loops.

What it measures, first for Langevin: chain-steps per second (batch × steps / seconds) of

* ebm:  ``ebm_langevin.Langevin(step_size=s, n_steps=K, noise=σ).run(x0, energy, rng=rng)``
* hand: parameters ``requires_grad_(False)``; per step ``x.requires_grad_(True)``,
  ``g, = torch.autograd.grad(E(x).sum(), x)``, then under ``no_grad``
  ``x = x − s·g + σ·randn_like(x)``

on the same energy module, with the same s and σ, for four workloads (a wide and a narrow
batch through a small MLP, and two small stride-2 conv nets on 1×28×28: 1→16→32→64 and
1→32→64→64 channels, the second from issue 19, where compilation had lost to eager).

``--device cuda`` (``run.device`` syntax: ``auto``, ``cuda:N``, ``mps``) runs every workload
on that device, the conv one included; each timing then waits for the device to finish.

How: one process, ``torch.set_num_threads(2)`` (``--threads N`` to change it). All loops
are warmed up, then run in turn (ABAB…) from a fresh x0 of the same shape each repeat;
the median time of each is reported. Interleaving makes the *ratio* robust to a busy
machine even when the absolute numbers are not. ``ratio`` = ebm / hand steps/s from the
medians: 1.0 means ebm adds no overhead, below 1 means ebm is slower. ``paired`` is the
median of the per-pair ratios (hand time / ebm time of back-to-back runs), which also
cancels slow drifts in load; if the two columns disagree a lot the machine was too noisy,
so rerun with more ``--repeats``.
On a machine whose cores are shared with other work, multi-threaded timings can jump
between a fast and a many-times-slower regime (threads waiting on a descheduled sibling);
``--threads 1`` then gives a much steadier comparison of the per-step overhead.
The target is ratio ≥ 0.97 on every workload.

Then the same for the Metropolis-adjusted samplers, against hand loops of the same
algorithms (target ratio ≥ 0.95):

* MALA (``ebm_langevin.MALA``, step 0.01): the hand loop computes E and ∇E at x0 once, then
  per step proposes x' = x − s·g + sqrt(2s)·ξ, computes E(x') and ∇E(x') (one gradient),
  the log MH ratio with both proposal densities, and keeps x, E, ∇E of the accepted
  proposals with ``torch.where``;
* HMC (``ebm_hmc.HMC``, 5 leapfrog steps of 0.01, unit mass, no adaptation): the hand loop
  likewise carries ∇E from one HMC step to the next, so an HMC step costs 5 gradients.
  The chain is K/5 HMC steps long, so both samplers spend K gradients per chain as Langevin
  does; their rates count gradient evaluations (batch × K / seconds).
* HMC with window adaptation (``hmc_window``: ``adaptation = "window"``, pooled, a warm-up of
  30 steps: Stan's schedule for it, 4 fast steps, one slow window of 23 that estimates the
  diagonal inverse mass, 3 fast steps; then ε̄ fixed): the hand loop runs the same warm-up,
  dual averaging on 0-d tensors and the window's variance from running sums. The chain is
  K HMC steps (5K gradients), so that every workload has a slow window.

Then NUTS (``ebm_hmc.NUTS``, ε 0.05, at most 5 doublings, no adaptation), for which no hand
loop of the same algorithm is short: its rate counts the gradients its chains used (Info's
``n_grads``) per second, and ``ratio`` is that against the hand HMC loop's gradients per
second: the overhead per gradient of building trees (a chain that has made its U-turn
waits, frozen, for the rest of the batch, and its share of the batched gradients is lost).

Known, intended differences: ebm draws its noise from an explicit ``rng`` (the numbers of
``torch.randn(x.shape, generator=rng)``, so chains are reproducible and the global RNG is
untouched); the hand loop uses ``randn_like`` on the global RNG. ebm also puts the energy in
eval mode (no effect on these nets, which have no dropout or batch norm) and turns parameter
gradients off and back on around every chain; the hand loop toggles ``requires_grad``
likewise, inside its timing.

``--compile`` adds ebm's samplers built with ``compile=True`` (:mod:`ebmcore.compiled`;
the first runs, untimed, compile and time compiled against eager steps to choose the path),
``--steps-per-call N`` tries another number of steps per compiled call. Then ``÷ eager``
is each contender's paired ratio to ebm's eager sampler (above 1: faster than eager), and
the line under each workload says which path the compiled sampler chose and the compiled ÷
eager time its trial measured. ``--peers`` adds the installed peer libraries' samplers with the same
settings (``pip install "ebmcore[bench]"``; the adapters and what differs are in
``benchmarks/peers.py``). Every contender is timed against the same hand loop, in rotating
order within each repeat; ``ratio`` and ``paired`` are relative to the hand loop.

Usage: ``python benchmarks/sampler_speed.py [--quick] [--json PATH] [--threads N] [--repeats N]
[--samplers langevin,mala,hmc] [--workloads TEXT] [--compile] [--steps-per-call N] [--peers]``
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import torch
from ebm_hmc import HMC, NUTS
from ebm_hmc.adaptation import window_schedule
from ebm_langevin import MALA, Langevin
from torch import nn

STEP = 0.01
NOISE = math.sqrt(2 * STEP)
LEAPFROG = 5


class Energy(nn.Module):
    """A network with a scalar head; E(x) of shape (batch,)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x, cond=None):
        return self.net(x).squeeze(-1)


def mlp() -> Energy:
    return Energy(nn.Sequential(nn.Linear(2, 128), nn.SiLU(), nn.Linear(128, 128), nn.SiLU(),
                                nn.Linear(128, 1)))


def conv() -> Energy:
    return Energy(nn.Sequential(
        nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.SiLU(),   # 14×14
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.SiLU(),  # 7×7
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.SiLU(),  # 4×4
        nn.Flatten(), nn.Linear(64 * 4 * 4, 1)))


def conv_stride2() -> Energy:
    """Issue 19's energy: wider than :func:`conv`, so the convolutions weigh more."""
    return Energy(nn.Sequential(
        nn.Conv2d(1, 32, 3, stride=2, padding=1), nn.SiLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.SiLU(),
        nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.SiLU(),
        nn.Flatten(), nn.Linear(64 * 4 * 4, 1)))


# name, energy factory, event shape, batch, steps
WORKLOADS = [
    ("mlp b4096 k100", mlp, (2,), 4096, 100),
    ("mlp b64 k200", mlp, (2,), 64, 200),
    ("conv28 b128 k60", conv, (1, 28, 28), 128, 60),
    ("conv_stride2 b128 k60", conv_stride2, (1, 28, 28), 128, 60),
]


def _frozen_parameters(loop):
    """The hand loops' setup: energy parameters need no gradient while sampling (restored after)."""
    @functools.wraps(loop)
    def run(x, energy, *args, **kwargs):
        params = list(energy.parameters())
        for p in params:
            p.requires_grad_(False)
        try:
            return loop(x, energy, *args, **kwargs)
        finally:
            for p in params:
                p.requires_grad_(True)
    return run


@_frozen_parameters
def hand_loop(x, energy, n_steps, s=STEP, sigma=NOISE):
    for _ in range(n_steps):
        x.requires_grad_(True)
        g, = torch.autograd.grad(energy(x).sum(), x)
        with torch.no_grad():
            x = x - s * g + sigma * torch.randn_like(x)
    return x


def ebm_langevin(compile=False):
    return Langevin(step_size=STEP, noise=NOISE, compile=compile)


def _energy_and_grad(energy, x):
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        e = energy(x)
        g, = torch.autograd.grad(e.sum(), x)
    return e.detach(), g


@_frozen_parameters
def hand_mala(x, energy, n_steps, s=STEP):
    with torch.no_grad():
        e, g = _energy_and_grad(energy, x)
        for _ in range(n_steps):
            xi = torch.randn_like(x)
            xp = x - s * g + math.sqrt(2 * s) * xi
            ep, gp = _energy_and_grad(energy, xp)
            log_ratio = (e - ep + 0.5 * xi.square().flatten(1).sum(1)
                         - (x - xp + s * gp).square().flatten(1).sum(1) / (4 * s))
            x, e, g = _metropolis(log_ratio, (x, e, g), (xp, ep, gp))
    return x


def ebm_mala(compile=False):
    return MALA(step_size=STEP, compile=compile)


def _metropolis(log_ratio, current, proposal):
    """The hand loops' accept step: per chain, keep the proposal with probability min(1, ratio)."""
    acc = torch.rand_like(log_ratio) < log_ratio.exp()
    keep = acc.view(-1, *(1,) * (current[0].dim() - 1))
    return tuple(torch.where(keep if t.dim() > 1 else acc, new, t) for t, new in zip(current, proposal, strict=True))


@_frozen_parameters
def hand_hmc(x, energy, n_steps, eps=STEP, n_leapfrog=LEAPFROG):
    with torch.no_grad():
        e, g = _energy_and_grad(energy, x)
        for _ in range(n_steps):
            p = torch.randn_like(x)
            k0 = 0.5 * p.square().flatten(1).sum(1)
            p = p - 0.5 * eps * g
            xp = x
            for i in range(n_leapfrog):
                xp = xp + eps * p
                ep, gp = _energy_and_grad(energy, xp)
                p = p - (eps if i < n_leapfrog - 1 else 0.5 * eps) * gp
            log_ratio = e - ep + k0 - 0.5 * p.square().flatten(1).sum(1)
            x, e, g = _metropolis(log_ratio, (x, e, g), (xp, ep, gp))
    return x


def ebm_hmc(compile=False):
    return HMC(step_size=STEP, n_leapfrog=LEAPFROG, compile=compile)


WARMUP, TARGET_ACCEPT = 30, 0.65
GAMMA, T0, KAPPA = 0.05, 10.0, 0.75  # dual averaging's constants (Stan's)


def _twice_kinetic(p, inv_mass):
    """pᵀM⁻¹p per chain (unit mass before the window's estimate)."""
    return (p.square() if inv_mass is None else p.square() * inv_mass).flatten(1).sum(1)


@_frozen_parameters
def hand_hmc_window(x, energy, n_steps, eps=STEP, n_leapfrog=LEAPFROG):
    """HMC whose first WARMUP steps adapt ε (dual averaging on the chains' mean acceptance)
    and, in Stan's slow window, a diagonal inverse mass from all chains' positions."""
    sched = window_schedule(WARMUP)
    window = range(sched.init_buffer, sched.ends[-1])
    with torch.no_grad():
        e, g = _energy_and_grad(energy, x)
        inv_mass, s1, s2, n = None, 0, 0, 0
        log_eps, mu, t = torch.tensor(math.log(eps)), math.log(10 * eps), 0
        h_bar, log_eps_bar = torch.zeros(()), torch.zeros(())
        for i in range(n_steps):
            step = log_eps.exp() if i < WARMUP else log_eps_bar.exp()
            p = torch.randn_like(x)
            if inv_mass is not None:
                p = p * inv_mass.rsqrt()
            k0 = _twice_kinetic(p, inv_mass)
            p = p - 0.5 * step * g
            xp = x
            for j in range(n_leapfrog):
                xp = xp + step * (p if inv_mass is None else inv_mass * p)
                ep, gp = _energy_and_grad(energy, xp)
                p = p - (step if j < n_leapfrog - 1 else 0.5 * step) * gp
            log_ratio = e - ep + 0.5 * (k0 - _twice_kinetic(p, inv_mass))
            prob = torch.nan_to_num(log_ratio, nan=-math.inf).clamp(max=0).exp()
            accepted = torch.rand_like(prob) < prob
            keep = accepted.view(-1, *(1,) * (x.dim() - 1))
            x, e, g = torch.where(keep, xp, x), torch.where(accepted, ep, e), torch.where(keep, gp, g)
            if i >= WARMUP:
                continue
            t += 1  # dual averaging
            h_bar = (1 - 1 / (t + T0)) * h_bar + (TARGET_ACCEPT - prob.mean()) / (t + T0)
            log_eps = mu - math.sqrt(t) / GAMMA * h_bar
            log_eps_bar = t ** -KAPPA * log_eps + (1 - t ** -KAPPA) * log_eps_bar
            if i in window:
                s1, s2, n = s1 + x.sum(0, keepdim=True), s2 + x.square().sum(0, keepdim=True), n + len(x)
            if i + 1 == window.stop:  # Stan's regularised variance; dual averaging restarts from ε̄
                var = (s2 - s1.square() / n) / (n - 1)
                inv_mass = var * (n / (n + 5)) + 1e-3 * 5 / (n + 5)
                log_eps, mu, t = log_eps_bar.clone(), float(log_eps_bar) + math.log(10), 0
                h_bar, log_eps_bar = torch.zeros(()), torch.zeros(())
    return x


def ebm_hmc_window(compile=False):
    return HMC(step_size=STEP, n_leapfrog=LEAPFROG, adapt_steps=WARMUP, adaptation="window",
               target_accept=TARGET_ACCEPT, n_steps=WARMUP + 1, compile=compile)


NUTS_STEP, NUTS_DEPTH = 0.05, 5


def ebm_nuts(compile=False):
    return NUTS(step_size=NUTS_STEP, max_depth=NUTS_DEPTH)


class Spec(NamedTuple):
    """A sampler's benchmark: ebm's sampler (a factory taking ``compile``), the hand loop it
    is timed against, the gradients per step of that loop, the chain's steps per gradient of
    the workload's K, and whether ``--compile`` adds a compiled contender."""

    make: Callable
    hand: Callable
    grads_per_step: int
    steps_per_k: float
    compiles: bool = True


SAMPLERS = {
    "langevin": Spec(ebm_langevin, hand_loop, 1, 1),
    "mala": Spec(ebm_mala, hand_mala, 1, 1),
    "hmc": Spec(ebm_hmc, hand_hmc, LEAPFROG, 1 / LEAPFROG),
    "hmc_window": Spec(ebm_hmc_window, hand_hmc_window, LEAPFROG, 1),
    # NUTS always runs eagerly; its hand reference is HMC's loop, its work the gradients it used
    "nuts": Spec(ebm_nuts, hand_hmc, LEAPFROG, 1 / LEAPFROG, compiles=False),
}


DEVICE = torch.device("cpu")  # --device


def _sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def timed(fn):
    """Seconds ``fn()`` took, and what it returned."""
    _sync()
    t = time.perf_counter()
    result = fn()
    _sync()
    return time.perf_counter() - t, result


def _ebm_loop(sampler):
    """ebm's sampler as a loop; one sampler object per benchmark, so a compiled one compiles once."""
    def loop(x, energy, n_steps, rng):
        return sampler.run(x, energy, n_steps, rng=rng)
    loop.sampler = sampler  # for its compiled path's choice
    return loop


def _counting_loop(sampler):
    """A sampler whose steps spend a varying number of gradients (NUTS), as its ``run`` does
    it, init then steps; returns the samples and the gradients its chains used."""
    def loop(x, energy, n_steps, rng):
        with torch.no_grad():
            state, grads = sampler.init(x, energy, rng=rng), 0
            for _ in range(n_steps):
                state, info = sampler.step(state, energy, rng=rng)
                grads = grads + info.n_grads.sum()
        return state.x, int(grads)
    return loop


def contenders(sampler: str, compiled: bool, peers: dict) -> dict:
    """name → loop ``fn(x0, energy, n_steps, rng)``; "hand" is the reference. A loop returns
    the samples, or (samples, gradients used) where that varies."""
    spec = SAMPLERS[sampler]
    ebm = _counting_loop(spec.make()) if sampler == "nuts" else _ebm_loop(spec.make())
    out = {"hand": lambda x, energy, n_steps, rng: spec.hand(x, energy, n_steps), "ebm": ebm}
    if compiled and spec.compiles:
        out["ebm compiled"] = _ebm_loop(spec.make(compile=True))
    for peer, loops in peers.items():
        if sampler in loops:
            out[peer] = loops[sampler]
    return out


def bench(make_energy, shape, batch, steps, repeats, warmup, sampler="langevin", compiled=False, peers=None):
    torch.manual_seed(0)
    energy = make_energy().to(DEVICE)
    rng = torch.Generator(device=DEVICE).manual_seed(0)
    x0 = lambda: torch.randn(batch, *shape, device=DEVICE)
    spec = SAMPLERS[sampler]
    chain = round(steps * spec.steps_per_k)
    grads = batch * chain * spec.grads_per_step  # a hand loop's gradients per run
    loops = contenders(sampler, compiled, peers or {})
    runs = {k: functools.partial(fn, energy=energy, n_steps=chain, rng=rng) for k, fn in loops.items()}
    for _ in range(warmup):  # the first run of a compiled sampler compiles
        for fn in runs.values():
            fn(x0())
    times, work = {k: [] for k in runs}, {k: [] for k in runs}
    names = list(runs)
    for i in range(repeats):
        # rotate the order, so that none always follows another
        for k in names[i % len(names):] + names[:i % len(names)]:
            t, result = timed(functools.partial(runs[k], x0()))
            times[k].append(t)
            work[k].append(result[1] if isinstance(result, tuple) else grads)
    rates = {k: [w / t for w, t in zip(work[k], times[k])] for k in runs}
    rate = {k: statistics.median(v) for k, v in rates.items()}
    out = {"batch": batch, "steps": steps, "chain": chain, "repeats": repeats, "times_s": times,
           "gradients": work, "rate": rate, "ratio": {}, "paired_ratio": {}, "paired_vs_eager": {}}
    for k in runs:
        if k != "hand":
            out["ratio"][k] = rate[k] / rate["hand"]
            # ratio within each repeat's pair, which cancels slow drifts in machine load
            out["paired_ratio"][k] = statistics.median(e / h for e, h in zip(rates[k], rates["hand"]))
        if k not in ("hand", "ebm"):
            out["paired_vs_eager"][k] = statistics.median(e / c for c, e in zip(times[k], times["ebm"]))
    if compiled:  # what the compiled sampler's trial chose: (path, its compiled ÷ eager time)
        out["compiled_choice"] = list(loops["ebm compiled"].sampler.compiled.choices.values())
    return out


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="few repeats (smoke run)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--repeats", type=int, default=None,
                    help="repeats per loop (default 9, quick 3)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--samplers", default=",".join(SAMPLERS),
                    help=f"comma-separated subset of {','.join(SAMPLERS)} (default all)")
    ap.add_argument("--workloads", default="",
                    help="only the workloads whose name contains this text (e.g. conv28)")
    ap.add_argument("--device", default="cpu",
                    help="run.device syntax: cpu (default), auto, cuda, cuda:N, mps")
    ap.add_argument("--compile", action="store_true", help="also time ebm's samplers with compile=True")
    ap.add_argument("--steps-per-call", type=int, default=None,
                    help="compiled steps per call (ebmcore.compiled.STEPS_PER_CALL) to try")
    ap.add_argument("--peers", action="store_true",
                    help="also time the peer libraries that are installed (pip install 'ebmcore[bench]')")
    args = ap.parse_args()
    if args.steps_per_call:
        import ebmcore.compiled

        ebmcore.compiled.STEPS_PER_CALL = args.steps_per_call
    peers = {}
    if args.peers:
        import peers as peer_loops

        peers = peer_loops.samplers()
        print("peers: " + (", ".join(f"{k} {v}" for k, v in peer_loops.installed().items()) or "none installed"))
    global DEVICE
    from ebmcore.train.devices import resolve_device

    DEVICE = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 9)
    warmup = 1 if args.quick else 2

    machine = {"device": str(DEVICE) + (f" ({torch.cuda.get_device_name(DEVICE)})" if DEVICE.type == "cuda" else ""),
               "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": cpu_model(),
               "cores": os.cpu_count(), "python": platform.python_version(),
               "loadavg_1min_at_start": os.getloadavg()[0]}
    print(f"device {machine['device']}  torch {machine['torch']}  threads {machine['threads']}  cpu {machine['cpu']} "
          f"({machine['cores']} cores, load {machine['loadavg_1min_at_start']:.1f})  "
          f"repeats {repeats}  (s={STEP}, sigma={NOISE:.4f})")
    results = {}
    for sampler in args.samplers.split(","):
        if sampler not in SAMPLERS:
            ap.error(f"unknown sampler {sampler!r}; choose from {', '.join(SAMPLERS)}")
        spec = SAMPLERS[sampler]
        unit = "steps/s" if spec.grads_per_step == 1 else "grads/s"
        print(f"\n{sampler}" + {
            "hmc": f" ({LEAPFROG} leapfrog steps; K/{LEAPFROG} HMC steps, rates in gradient evaluations)",
            "hmc_window": f" ({LEAPFROG} leapfrog steps; K HMC steps, the first {WARMUP} a window warm-up)",
            "nuts": f" (ε {NUTS_STEP}, ≤ {NUTS_DEPTH} doublings, K/{LEAPFROG} steps; gradients used per second "
                    "against the hand HMC loop's)"}.get(sampler, ""))
        print(f"{'workload':<22} {'':<14} {unit:>12} {'ratio':>7} {'paired':>7}"
              + (f" {'÷ eager':>8}" if args.compile or peers else ""))
        for name, make_energy, shape, batch, steps in WORKLOADS:
            if args.workloads not in name:
                continue
            r = bench(make_energy, shape, batch, steps, repeats, warmup, sampler, args.compile, peers)
            results[f"{sampler}: {name}"] = r
            for i, (k, rate) in enumerate(r["rate"].items()):
                ratios = "" if k == "hand" else f" {r['ratio'][k]:>7.3f} {r['paired_ratio'][k]:>7.3f}"
                ratios += f" {r['paired_vs_eager'][k]:>8.3f}" if k in r["paired_vs_eager"] else ""
                print(f"{name if i == 0 else '':<22} {k:<14} {rate:>12,.0f}{ratios}", flush=True)
            for path, trial in r.get("compiled_choice", []):
                print(f"{'':<22} compiled sampler chose {path} steps (its trial: compiled ÷ eager time {trial:.2f})")
    noisy = [n for n, r in results.items()
             if any(max(t) > 1.5 * min(t) for t in r["times_s"].values())]
    if noisy:
        print(f"note: timings of {', '.join(noisy)} varied more than 1.5x between repeats (busy "
              "machine?); trust `paired` over `ratio`, or rerun with more --repeats")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "repeats": repeats, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
