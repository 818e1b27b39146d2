"""Training-step throughput of the toy and Fashion-MNIST recipes against a hand-written loop.

What it measures: optimisation steps per second of

* ebm: the run that ``ebm run RECIPE`` builds (:meth:`ebmcore.Run.create` on the loaded
  recipe, output in a temporary directory), stepped by the runner's own per-step method
  ``Run._train_step``, which :meth:`Run.train` calls in its loop. Everything a training step
  of ``ebm run`` does is timed: the batch from the data stream, the objective's loss (data
  noise, chain starts, the Langevin chain, replay-buffer update, loss), backward, the
  gradient norm, the optimizer step, the divergence guard, the ``ebm_step_end`` hook and,
  every ``run.log_every`` steps as in the recipe, the metrics record (metrics.jsonl and the
  TensorBoard plugin, as ``ebm run`` does unless ``EBM_TENSORBOARD=0``). Evaluation,
  sample pictures and checkpoints are moved far away (``run.eval_every``,
  ``run.sample_every`` and ``run.checkpoint_every`` set beyond the timed steps, so they
  never happen); building the run and loading the data set are not timed.
* hand: :class:`HandLoop`, a minimal hand-written PyTorch loop of the same algorithm on the
  same network (the energy is built from the recipe's ``[energy]`` section through the
  registry, and the ebm run's initial weights are copied into it), with the same batch
  size, optimizer and settings, data noise, chain starts (replay buffer: gather, reinit
  fraction from uniform noise, scatter the chain ends back; or uniform noise), Langevin
  chain (step, noise, clamp) and loss (E(data) − E(samples) + α·(E⁺² + E⁻²), one forward over
  both). No logging, no guard, no metrics. Its settings are read from the parsed recipe, and
  it refuses a recipe that uses anything it does not implement.

Workloads: ``toy`` = recipes/toy2d-persistent.toml (MLP energy with a Gaussian reference
term, replay buffer of 10,000 with 5 % reinit from U[−3, 3], 60 Langevin steps, MLE with
α = 0.1 and data noise 0.1, Adam betas (0, 0.999), batch 256); ``fmnist`` =
recipes/fmnist-shortrun.toml (swish_cnn energy, chains from U[−1, 1], 40 Langevin steps of
step 5 / noise 0.01 / clamp [−1, 1], MLE with data noise 0.03, Adam betas (0.5, 0.999),
batch 128; needs the Fashion-MNIST files, see ebm_image.idx).

How (as benchmarks/sampler_speed.py): one process, ``torch.set_num_threads(2)``
(``--threads N``); a warm-up block of each, then ``--rounds`` rounds of one block of S steps
of each (S = ``--block``, by default the recipe's log_every, so that every block holds
exactly one metrics record), alternating which goes first. Reported: steps/s of each from
the median block time, ``ratio`` = ebm / hand steps/s (1.0: ebm adds nothing; the target is
≥ 0.95), and ``paired``, the median of the per-round ratios (hand time / ebm time of
back-to-back blocks), which cancels slow drifts of machine load. Both loops keep training
their own copy of the model between blocks (the step's cost does not depend on the
weights' values).

Known, intended differences: ebm draws every random number from its run's explicit
``torch.Generator``, the hand loop from torch's global RNG (the same draws in the same
order, which is what makes tests/test_training_speed_benchmark.py's one-step comparison
exact); ebm's data set lives on the CPU and each batch is copied to the run's device (the
hand loop keeps the data set on the device: the same on a CPU); ebm puts the energy in eval
mode around each chain (no effect on these networks: no dropout or batch norm) and always
computes the gradient norm (clip_grad_norm_ with an infinite limit when no grad_clip).

Usage: ``python benchmarks/training_speed.py [--quick] [--json PATH] [--threads N]
[--workloads toy,fmnist] [--rounds N] [--block S] [--device cpu|cuda|...]``
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # sampler_speed, when imported from elsewhere

from sampler_speed import cpu_model

ROOT = Path(__file__).resolve().parents[1]

# name → recipe, default rounds, quick (rounds, block)
WORKLOADS = {
    "toy": (ROOT / "recipes" / "toy2d-persistent.toml", 9, (2, 5)),
    "fmnist": (ROOT / "recipes" / "fmnist-shortrun.toml", 5, (2, 2)),
}

FAR = 10**9  # run.steps, eval_every, sample_every, checkpoint_every: never reached


# --- ebm: the run `ebm run` builds, stepped by the runner ------------------------------------

def build_run(recipe_path: str | Path, out: str | Path, overrides: list[str] = (), device: str | None = None):
    """The :class:`ebmcore.Run` that ``ebm run RECIPE --out OUT`` builds, with evaluation,
    pictures and checkpoints moved beyond any step this benchmark takes."""
    from ebmcore import default_host
    from ebmcore.train import Run
    from ebmcore.train.recipe import load_recipe

    host = default_host()
    sets = [f"run.out={json.dumps(str(out))}", f"run.steps={FAR}", f"run.eval_every={FAR}",
            f"run.sample_every={FAR}", f"run.checkpoint_every={FAR}"]
    if device is not None:
        sets.append(f"run.device={json.dumps(device)}")
    recipe = load_recipe(recipe_path, host.registry, sets + list(overrides))
    return Run.create(recipe, host=host)


class EbmSteps:
    """Steps a built run exactly as :meth:`Run.train` does, one ``train_step`` at a time."""

    def __init__(self, run):
        from tqdm import tqdm

        self.run = run
        self.bar = tqdm(total=run.recipe.run.steps, disable=True)  # `ebm run` when not on a terminal
        self.received: list[int] = []
        run.notify("ebm_run_start", run=run)  # observers (TensorBoard) as in `ebm run`
        run.guard.reset()
        self.t0 = time.perf_counter()

    def steps(self, k: int) -> None:
        run = self.run
        with run.chains():  # as around Run.train's loop
            for _ in range(k):
                run.train_step(self.t0, self.bar, self.received)

    def close(self) -> None:
        self.run.notify("ebm_run_end", run=self.run, record={})
        self.run.world.leave()


# --- hand: the same algorithm, written out --------------------------------------------------

class HandLoop:
    """Maximum likelihood with Langevin negatives from a replay buffer (or fresh uniform
    noise when ``buffer_size`` is 0), written the way one writes it in a single script.

    ``step(x)`` is one optimisation step on the data batch ``x``; ``steps(k)`` draws ``k``
    batches (epochs of random permutations) and steps on each.
    """

    def __init__(self, energy: nn.Module, data: torch.Tensor, *, batch_size: int, lr: float,
                 betas: tuple[float, float], weight_decay: float, grad_clip: float | None,
                 n_steps: int, step_size: float, noise: float, clamp: tuple[float, float] | None,
                 data_noise: float, alpha: float, low: float, high: float,
                 buffer_size: int = 0, reinit: float = 0.0):
        self.energy = energy
        self.data = data
        self.batch_size = batch_size
        self.opt = torch.optim.Adam(energy.parameters(), lr=lr, betas=betas, weight_decay=weight_decay)
        self.grad_clip = grad_clip
        self.n_steps, self.step_size, self.noise, self.clamp = n_steps, step_size, noise, clamp
        self.data_noise, self.alpha = data_noise, alpha
        self.low, self.high = low, high
        self.reinit = reinit
        self.buffer_size = buffer_size
        self.buffer = torch.zeros(buffer_size, *data.shape[1:], device=data.device) if buffer_size else None
        self.count = 0  # points stored so far (a Python int: no device read)
        self.ptr = 0    # next slot to write
        self.perm = torch.randperm(len(data), device=data.device)
        self.pos = 0

    def next_batch(self) -> torch.Tensor:
        if self.pos + self.batch_size > len(self.data):
            self.perm = torch.randperm(len(self.data), device=self.data.device)
            self.pos = 0
        idx = self.perm[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return self.data[idx]

    def init_chains(self, n: int) -> torch.Tensor:
        x0 = torch.rand(n, *self.data.shape[1:], device=self.data.device) * (self.high - self.low) + self.low
        if self.buffer is not None and self.count > 0:
            idx = torch.randint(0, self.count, (n,), device=x0.device)
            keep = torch.rand(n, device=x0.device) >= self.reinit
            x0 = torch.where(keep.view(n, *[1] * (x0.dim() - 1)), self.buffer[idx], x0)
        return x0

    def langevin(self, x: torch.Tensor) -> torch.Tensor:
        params = list(self.energy.parameters())
        for p in params:
            p.requires_grad_(False)
        for _ in range(self.n_steps):
            x.requires_grad_(True)
            g, = torch.autograd.grad(self.energy(x).sum(), x)
            with torch.no_grad():
                x = x - self.step_size * g + self.noise * torch.randn_like(x)
                if self.clamp is not None:
                    x = x.clamp(*self.clamp)
        for p in params:
            p.requires_grad_(True)
        return x.detach()

    def push(self, x: torch.Tensor) -> None:
        n = len(x)
        pos = (self.ptr + torch.arange(n, device=x.device)) % self.buffer_size
        self.buffer[pos] = x
        self.ptr = (self.ptr + n) % self.buffer_size
        self.count = min(self.count + n, self.buffer_size)

    def step(self, x_pos: torch.Tensor) -> torch.Tensor:
        n = len(x_pos)
        if self.data_noise:
            x_pos = x_pos + self.data_noise * torch.randn_like(x_pos)
        x_neg = self.langevin(self.init_chains(n))
        if self.buffer is not None:
            self.push(x_neg)
        e = self.energy(torch.cat([x_pos, x_neg]))
        e_pos, e_neg = e[:n], e[n:]
        loss = e_pos.mean() - e_neg.mean()
        if self.alpha:
            loss = loss + self.alpha * (e_pos.pow(2) + e_neg.pow(2)).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip:
            nn.utils.clip_grad_norm_(self.energy.parameters(), self.grad_clip)
        self.opt.step()
        return loss.detach()

    def steps(self, k: int) -> None:
        for _ in range(k):
            self.step(self.next_batch())


def hand_from_run(run) -> HandLoop:
    """A :class:`HandLoop` with the run's settings, on a fresh copy of its energy network
    (built from the recipe's ``[energy]`` section, with the run's current weights)."""
    r = run.recipe
    kinds = {k: s.type for k, s in r.sections.items()}
    want = {"sampler": "langevin", "objective": "mle"}
    if any(kinds.get(k) != v for k, v in want.items()) or kinds.get("generator") not in ("replay_buffer", "uniform"):
        raise SystemExit(f"the hand loop implements mle + langevin + replay_buffer/uniform, not {kinds}")
    s, g, o = r.sections["sampler"].config, r.sections["generator"].config, r.sections["objective"].config
    if s.temperature != 1 or s.grad_clamp is not None or s.compile or r.run.precision != "fp32":
        raise SystemExit("the hand loop implements temperature 1, no grad_clamp, no compile, fp32")
    if run.state.stream.cond is not None:
        raise SystemExit("the hand loop implements unconditional data")
    if kinds["generator"] == "replay_buffer" and g.fresh != "uniform":
        raise SystemExit("the hand loop implements a replay buffer refreshed from uniform noise")
    optim = r.optim["energy"]
    if optim.type != "adam":
        raise SystemExit("the hand loop implements Adam")
    energy = run.ctx.make("energy", r.sections["energy"].type, r.sections["energy"].config).to(run.device)
    energy.load_state_dict(run.ctx.built["energy"].state_dict())
    buffer = {"buffer_size": g.size, "reinit": g.reinit} if kinds["generator"] == "replay_buffer" else {}
    return HandLoop(
        energy, run.state.stream.x.to(run.device), batch_size=run.state.stream.batch_size, lr=optim.lr, betas=optim.betas,
        weight_decay=optim.weight_decay, grad_clip=optim.grad_clip, n_steps=s.n_steps, step_size=s.step_size,
        noise=math.sqrt(2 * s.step_size) if s.noise is None else s.noise, clamp=s.clamp,
        data_noise=o.data_noise, alpha=o.alpha, low=g.low, high=g.high, **buffer)


# --- timing ---------------------------------------------------------------------------------

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


def bench(name: str, rounds: int, block: int | None, device: str | None, warmup: int = 1,
          compiled: bool = False) -> dict:
    """Time ``ebm`` (and with ``compiled`` also ``ebm compiled``: the recipe with
    sampler.compile = true) against ``hand``, in rounds of one block each, rotating the order."""
    recipe_path = WORKLOADS[name][0]
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix=f"ebm-training-speed-{name}-") as tmp:
        run = build_run(recipe_path, Path(tmp) / "run", device=device)
        block = block or run.recipe.run.log_every
        stepped = {"ebm": EbmSteps(run)}
        if compiled:
            stepped["ebm compiled"] = EbmSteps(build_run(recipe_path, Path(tmp) / "compiled", ["sampler.compile=true"],
                                                         device=device))
        hand = hand_from_run(run)
        try:
            fns = {k: functools.partial(e.steps, block) for k, e in stepped.items()}
            fns["hand"] = functools.partial(hand.steps, block)
            for _ in range(warmup):  # the compiled run compiles here
                for fn in fns.values():
                    fn()
            times: dict[str, list[float]] = {k: [] for k in fns}
            names = list(fns)
            for i in range(rounds):
                # rotate the order, so that none always follows another
                for k in names[i % len(names):] + names[:i % len(names)]:
                    times[k].append(timed(fns[k], run.device))
        finally:
            for e in stepped.values():
                e.close()
    per_step = {k: statistics.median(v) / block for k, v in times.items()}
    rate = {k: 1 / t for k, t in per_step.items()}
    out = {"recipe": str(recipe_path.relative_to(ROOT)), "rate": rate, "ratio": {}, "paired_ratio": {},
           "batch": run.state.stream.batch_size, "log_every": run.recipe.run.log_every, "block_steps": block,
           "rounds": rounds, "warmup_blocks": warmup, "device": str(run.device), "times_s": times}
    for k in stepped:
        out["ratio"][k] = rate[k] / rate["hand"]
        out["paired_ratio"][k] = statistics.median(h / e for e, h in zip(times[k], times["hand"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="few short blocks (smoke run; numbers not meaningful)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS),
                    help=f"comma-separated subset of {','.join(WORKLOADS)} (default all)")
    ap.add_argument("--rounds", type=int, default=None,
                    help="timed rounds (ebm block + hand block) per workload (default toy 9, fmnist 5; quick 2)")
    ap.add_argument("--block", type=int, default=None,
                    help="training steps per timed block (default the recipe's log_every; quick: toy 5, fmnist 2)")
    ap.add_argument("--device", default="cpu", help="run.device syntax: cpu (default), auto, cuda, cuda:N, mps")
    ap.add_argument("--compile", action="store_true", help="also time the recipe with sampler.compile = true")
    args = ap.parse_args()
    names = [w for w in args.workloads.split(",") if w]
    for w in names:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w!r}; choose from {', '.join(WORKLOADS)}")
    torch.set_num_threads(args.threads)
    from ebmcore.train.devices import resolve_device

    device = resolve_device(args.device)
    machine = {"device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
               "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": cpu_model(),
               "cores": os.cpu_count(), "python": platform.python_version(),
               "loadavg_1min_at_start": os.getloadavg()[0]}
    print(f"device {machine['device']}  torch {machine['torch']}  threads {machine['threads']}  cpu {machine['cpu']} "
          f"({machine['cores']} cores, load {machine['loadavg_1min_at_start']:.1f})" + ("  QUICK (smoke run)" if args.quick else ""))
    print(f"{'workload':<8} {'':<14} {'steps/s':>9} {'ratio':>7} {'paired':>7}")
    results = {}
    for name in names:
        default_rounds, (quick_rounds, quick_block) = WORKLOADS[name][1], WORKLOADS[name][2]
        rounds = args.rounds or (quick_rounds if args.quick else default_rounds)
        block = args.block or (quick_block if args.quick else None)
        r = bench(name, rounds, block, args.device, compiled=args.compile)
        results[name] = r
        for i, (k, rate) in enumerate(r["rate"].items()):
            ratios = f" {r['ratio'][k]:>7.3f} {r['paired_ratio'][k]:>7.3f}" if k in r["ratio"] else " " * 16
            note = (f"   ({r['recipe']}: {r['rounds']} rounds of {r['block_steps']} steps, batch {r['batch']}, "
                    f"log_every {r['log_every']})") if i == 0 else ""
            print(f"{name if i == 0 else '':<8} {k:<14} {rate:>9.2f}{ratios}{note}", flush=True)
    noisy = [n for n, r in results.items() if any(max(t) > 1.5 * min(t) for t in r["times_s"].values())]
    if noisy:
        print(f"note: block times of {', '.join(noisy)} varied more than 1.5x between rounds (busy machine?); "
              "trust `paired` over `ratio`, or rerun with more --rounds")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
