"""The compiled sampling path: ``compile = true`` on a sampler.

:func:`ebmcore.sampling.run_chain` hands a compiling sampler's steps to :class:`CompiledSteps`,
which runs :data:`STEPS_PER_CALL` kernel steps per ``torch.compile`` call, so Python, the
dispatcher and the allocator are paid once per call instead of once per step. Kernels
compile unchanged: :func:`ebmcore.kernel.energy_and_grad` switches to ``torch.func`` while
compiling; the kernel's random draws are made in advance from the chain's ``rng``, in the
eager order (a trial step per shape of x tells what it draws), so a compiled chain equals
the eager one up to rounding; a kernel says when a step must run eagerly
(:meth:`ebmcore.Sampler.compilable`). Where compilation is unavailable or fails, the chain
falls back to eager steps with the same random numbers, after a one-line warning; where
compiled steps time slower than eager ones (:meth:`CompiledSteps._choose`), likewise.
"""

from __future__ import annotations

import statistics
import time
import types
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from ebmcore.kernel import normal_like, uniform_like

#: kernel steps per compiled call. Fewer calls cost less overhead; more steps per call
#: make a larger graph to compile (measured in benchmarks/sampler_speed.py --compile).
STEPS_PER_CALL = 10

#: the one-time choice per energy class and x's shape, dtype and device: after a warm-up,
#: TRIAL_PAIRS pairs of a compiled call and as many eager steps, in alternating order; eager
#: is kept if compiled took over MARGIN × eager's time, both in the median of the pairs'
#: ratios and in the ratio of the fastest of each (1: whichever is faster; a path within
#: noise of the other costs nothing either way); a warning says so where compiled took over
#: WARN_ABOVE × eager's time
TRIAL_PAIRS, MARGIN, WARN_ABOVE = 5, 1.0, 1.05
clock = time.perf_counter  # what the trial times with (tests put in their own)

_DRAW = {"normal": normal_like, "uniform": uniform_like}


class _Recorder:
    """A stand-in for ``rng`` in a trial step: notes what the kernel draws, draws nothing."""

    def __init__(self):
        self.spec = []

    def draw(self, kind: str, like: Tensor) -> Tensor:
        self.spec.append((kind, like))
        return torch.zeros_like(like, memory_format=torch.contiguous_format)


class _Drawn:
    """Random numbers drawn in advance, handed out in order (traced into the compiled graph)."""

    def __init__(self, tensors: list[Tensor]):
        self.tensors, self.i = tensors, 0

    def draw(self, kind: str, like: Tensor) -> Tensor:
        out = self.tensors[self.i]
        if out.shape != like.shape:  # checked while tracing: shapes are static there
            raise RuntimeError(f"the kernel's draws changed between steps: {kind} draw {self.i} has shape "
                               f"{tuple(like.shape)}, the first step drew {tuple(out.shape)}")
        self.i += 1
        return out


class CompiledSteps:
    """One sampler's compiled multi-step calls (kept with the sampler) and its fallback state."""

    def __init__(self, sampler: Any):
        self.sampler = sampler
        self.calls: dict[tuple, Any] = {}  # (steps per call, x's shape, dtype, device) → compiled function
        self.draws: dict[tuple, list[tuple[str, Tensor]]] = {}  # x's shape, dtype, device → one step's draws
        #: (energy class, x's shape, dtype, device) → ("compiled" or "eager", compiled ÷ eager time)
        self.choices: dict[tuple, tuple[str, float]] = {}
        self.failed = None if torch._dynamo.is_dynamo_supported() else "torch.compile is not supported here"
        if self.failed:
            self._warn(self.failed)

    def run(self, state: Any, energy: nn.Module, n: int, *, rng: torch.Generator, cond: Tensor | None,
            mask: Tensor | None) -> tuple[Any, Any, int]:
        """Up to ``n`` steps from ``state``; returns the new state, the last step's info and
        the number of steps taken."""
        sampler = self.sampler
        key = (state.x.shape, state.x.dtype, state.x.device)
        choice = (type(energy), *key)
        if self.failed or not sampler.compilable(state) or self.choices.get(choice, ("",))[0] == "eager":
            return (*sampler.step(state, energy, rng=rng, cond=cond, mask=mask), 1)
        k = min(n, STEPS_PER_CALL)
        spec = self.draws.get(key)
        if spec is None:  # a trial step, thrown away, tells what the kernel draws for this shape
            recorder = _Recorder()
            sampler.step(state, energy, rng=recorder, cond=cond, mask=mask)
            spec = self.draws[key] = recorder.spec
        draws = [_DRAW[kind](like, rng) for _ in range(k) for kind, like in spec]
        try:
            if choice not in self.choices:
                self._choose(choice, k, state, energy, draws, cond, mask)
            eager = self.choices[choice][0] == "eager"  # then this call's draws, eagerly: the same chain
            out = (self._steps(k) if eager else self._compiled(k, key))(state, energy, draws, cond, mask)
        except Exception as error:  # noqa: BLE001 - any compiler failure falls back to eager
            # eager steps with the same draws: the same chain, or the energy's own error
            out = self._steps(k)(state, energy, draws, cond, mask)
            lines = str(error).strip().splitlines()
            self.failed = f"{type(error).__name__}{': ' + lines[0] if lines else ''}"
            self._warn(self.failed)
        return (*out, k)

    def _steps(self, k: int):
        """(state, energy, draws, cond, mask) → (state, info) after ``k`` kernel steps."""
        sampler = self.sampler

        def steps(state, energy, tensors, cond, mask):
            drawn = _Drawn(tensors)
            for _ in range(k):
                state, info = sampler.step(state, energy, rng=drawn, cond=cond, mask=mask)
            return state, info
        return steps

    def _choose(self, choice: tuple, k: int, state: Any, energy: nn.Module, draws: list[Tensor], *args) -> None:
        """Time ``k`` compiled steps against ``k`` eager ones from ``state`` with copies of
        ``draws`` (results thrown away; the first round compiles and warms up), keep the
        faster path for ``choice`` and say so if it is eager. Only here does the device wait."""
        paths, times = [self._compiled(k, choice[1:]), self._steps(k)], [[], []]
        device = state.x.device
        sync = (lambda: torch.accelerator.synchronize(device)) if device.type != "cpu" else lambda: None
        for i in range(1 + TRIAL_PAIRS):
            for j in (0, 1) if i % 2 else (1, 0):
                sync()
                start = clock()
                paths[j](state, energy, [d.clone() for d in draws], *args)
                sync()
                times[j].append(clock() - start)
        compiled, eager = times[0][1:], times[1][1:]
        # noise only adds time: both the median paired ratio and that of the fastest must say "slower"
        ratio = min(statistics.median(c / e for c, e in zip(compiled, eager, strict=True)), min(compiled) / min(eager))
        self.choices[choice] = ("eager" if ratio > MARGIN else "compiled", ratio)
        if ratio > max(MARGIN, WARN_ABOVE):
            self._warn(f"compiled steps took {ratio:.2f}× the time of eager ones for {choice[0].__name__} on x "
                       f"of shape {tuple(choice[1])}", UserWarning)

    def _compiled(self, k: int, key: tuple):
        """The compiled ``k`` steps for states shaped as ``key`` says, each with its own code
        object: Dynamo keeps one cache, and one recompile budget (8), per code object and
        guards on the sampler's settings, so shared, the ninth sampler would fail; and with
        one shape per function the graphs stay static (faster, and energies that branch on
        x's size, like multi-scale ones, trace)."""
        if (k, key) not in self.calls:
            steps = self._steps(k)
            steps = types.FunctionType(steps.__code__.replace(), steps.__globals__, "steps", None, steps.__closure__)
            # Inductor's pattern matcher turns add(x, mm(a, b), alpha=c) into an addmm that drops c
            # (pytorch/pytorch#167313, #196577): x − s·∇E, ∇E ending in a matmul, came out as x + ∇E
            self.calls[k, key] = torch.compile(steps, fullgraph=True, dynamic=False,
                                               options={"pattern_matcher": False})
        return self.calls[k, key]

    def _warn(self, why: str, category: type[Warning] = RuntimeWarning) -> None:
        warnings.warn(f"{self.sampler!r}: compile = true, but {why[:200]}; sampling eagerly", category, stacklevel=5)


def compiled_steps(sampler: Any) -> CompiledSteps:
    """The sampler's :class:`CompiledSteps`, made on first use and kept with the sampler."""
    if sampler.compiled is None:
        sampler.compiled = CompiledSteps(sampler)
    return sampler.compiled
