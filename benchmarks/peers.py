"""The sampling workloads of ``sampler_speed.py`` through the peer EBM libraries, when installed.

Each peer gets a ``"langevin"`` (ULA) and an ``"hmc"`` loop with the signature every loop in
``sampler_speed.py`` has, ``fn(x0, energy, n_steps, rng) -> samples``, that runs the peer's
*own* sampler class with the hand loops' settings: step s = ``STEP`` and noise σ = ``NOISE``
for ULA (x ← x − s·∇E(x) + σ·ξ); ε = ``STEP``, ``LEAPFROG`` leapfrog steps, unit mass and a
per-chain Metropolis accept for HMC. ``n_steps`` is the number of chain steps (HMC
trajectories for ``"hmc"``), as for the hand loops. ``tests/test_peers.py`` checks, without
timing anything, that each loop draws the same chains as the hand loop fed the same random
numbers.

Peers (``installed()`` lists the importable ones):

* ``torchebm`` (``import torchebm``):
  ``torchebm.samplers.LangevinDynamics(model, step_size=s, noise_scale=σ/sqrt(2s))`` and
  ``torchebm.samplers.HamiltonianMonteCarlo(model, step_size=ε, n_leapfrog_steps=L,
  mass=None)``, run as ``sampler.sample(x=x0, n_steps=K, generator=rng)``.
  Its Langevin update is Euler–Maruyama of dx = −∇E dt + sqrt(2·noise_scale²) dW, i.e.
  x ← x − s·∇E + noise_scale·sqrt(2s)·ξ, so σ = noise_scale·sqrt(2s): our σ = sqrt(2s)
  is ``noise_scale=1.0`` (the value its README uses); another σ converts the same way.
  ``mass=None`` is unit mass (K = ½‖p‖²).
* ``ebmkit`` (installs the top-level package ``ebm``; ``import ebm``):
  ``ebm.LangevinDynamics(step_size=s, noise_scale=σ)`` (update x ← x − s·∇E + σ·ξ, the
  hand loop's convention, no conversion) and ``ebm.HMC(step_size=ε, leapfrog_steps=L)``
  (unit mass), run as ``sampler.sample(energy, x0, steps=K)``.

How they are called, and why:

* torchebm's samplers are ``nn.Module``s built around one model and reused for many
  ``sample`` calls (README), so they are built once per (energy, device, event shape) and
  cached. ebmkit's samplers hold only settings and take the energy per call, so they are
  built per call (a few attribute stores).
* torchebm wants a ``torchebm.core.BaseModel`` (it calls ``model.gradient(x)``); the energy
  is wrapped in the thin subclass its README shows (``forward`` calls the net): one extra
  Python-level call per energy evaluation. ebmkit takes any callable ``(B, *shape) -> (B,)``,
  so the energy module is passed as is.
* Defaults otherwise: no trajectories, no diagnostics, no clamps, no mixed precision,
  default integrators (Euler–Maruyama, leapfrog). Neither library has a ``torch.compile``
  option for its sampler loop (the energy module can still be compiled by the user).

Differences (what a peer cannot do exactly like the hand loops):

* ebmkit HMC recomputes E and ∇E at the start point of every trajectory instead of carrying
  them from the previous one: L + 1 = 6 gradients per HMC step where the hand loop and ebm
  spend 5 (20 % more network work, by design, not switchable).
* torchebm HMC evaluates the force at both ends of every leapfrog step (2L = 10 gradients
  per HMC step), plus two gradient-free energy passes (E at the start and at the proposal)
  for the Metropolis ratio: about 2.2× the hand loop's network work per HMC step.
* torchebm HMC always runs its integrator in "safe" mode (forces clamped to ±1e6 and
  ``nan_to_num_`` on x and p after every leapfrog step), clamps energies to ±1e10 and
  ΔH to [−50, 50]. None of this changes a chain with finite, moderate values (the tests
  check it), but it is extra kernels per step.
* torchebm HMC only takes (batch, dim) states (its kinetic energy sums the last axis), so
  image-shaped states are flattened for it and the wrapper views them back to
  (batch, *shape) before the net (views, no copies).
* ebmkit draws every random number from the global RNG (it has no generator argument), as
  the hand loops do; the ``rng`` argument is ignored for it. torchebm takes
  ``generator=rng`` like ebm does.
* Neither peer switches the energy to eval mode (no effect on these nets). ebmkit turns
  parameter gradients off around every chain itself, as ebm and the hand loop do;
  torchebm does not, so these loops do it for it (same cost as the hand loop's toggle),
  keeping the weights out of the autograd graph for all contenders alike.
* Host syncs inside the loops (from reading the code, not measured here): none per step in
  ebmkit's Langevin/HMC (the accept rate stays a device tensor until read) or in
  torchebm's Langevin (its step size stays a Python float); torchebm HMC builds
  ``torch.tensor(step_size, device=x.device)`` once per HMC step (``_unpack_state`` in
  ``torchebm/core/base_integrator.py``), a blocking host-to-device copy on CUDA.
  torchebm also allocates a zero time tensor per step and walks the sampler's module tree
  (energy net included) once per step to advance its step-size schedulers.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import math

from sampler_speed import LEAPFROG, NOISE, STEP, _frozen_parameters

# name → (distribution, top-level module)
PEERS = {"torchebm": ("torchebm", "torchebm"), "ebmkit": ("ebmkit", "ebm")}


def installed() -> dict[str, str]:
    """The peer libraries importable here, name → version; missing (or broken) ones left out."""
    found = {}
    for name, (dist, module) in PEERS.items():
        try:
            version = importlib.metadata.version(dist)  # also tells ebmkit's `ebm` from another
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - a peer that fails to import is just not compared
            continue
        found[name] = version
    return found


# ---------------------------------------------------------------- torchebm

@functools.lru_cache(maxsize=32)  # strong refs to a few energies: fine for a benchmark
def _torchebm_sampler(kind, energy, device, event_shape, **settings):
    from torchebm.core import BaseModel
    from torchebm.samplers import HamiltonianMonteCarlo, LangevinDynamics

    class Wrapped(BaseModel):
        """The README's pattern: a BaseModel whose forward is the net. HMC states arrive
        flattened, so view them back to the net's event shape (a no-op view otherwise)."""

        def __init__(self):
            super().__init__(device=device)
            self.net = energy

        def forward(self, x):
            return self.net(x.view(x.shape[0], *event_shape))

    # device given explicitly: torchebm infers it from parameters, and a parameter-less
    # energy would otherwise leave the sampler's integrator on the CPU
    if kind == "langevin":
        s, sigma = settings["s"], settings["sigma"]
        return LangevinDynamics(Wrapped(), step_size=s, noise_scale=sigma / math.sqrt(2 * s), device=device)
    return HamiltonianMonteCarlo(Wrapped(), step_size=settings["eps"], n_leapfrog_steps=settings["n_leapfrog"],
                                 mass=None, device=device)


@_frozen_parameters  # torchebm leaves the weights' gradients on: keep them off the graph, as the hand loops
def torchebm_langevin(x, energy, n_steps, rng, s=STEP, sigma=NOISE):
    ula = _torchebm_sampler("langevin", energy, x.device, tuple(x.shape[1:]), s=s, sigma=sigma)
    return ula.sample(x=x, n_steps=n_steps, generator=rng)


@_frozen_parameters
def torchebm_hmc(x, energy, n_steps, rng, eps=STEP, n_leapfrog=LEAPFROG):
    hmc = _torchebm_sampler("hmc", energy, x.device, tuple(x.shape[1:]), eps=eps, n_leapfrog=n_leapfrog)
    # (batch, dim) states only: flatten in, view back out
    return hmc.sample(x=x.flatten(1), n_steps=n_steps, generator=rng).view_as(x)


# ---------------------------------------------------------------- ebmkit (module `ebm`)

def ebmkit_langevin(x, energy, n_steps, rng, s=STEP, sigma=NOISE):
    import ebm

    # global RNG: ebmkit has no generator argument (rng unused, as in the hand loops)
    return ebm.LangevinDynamics(step_size=s, noise_scale=sigma).sample(energy, x, steps=n_steps)


def ebmkit_hmc(x, energy, n_steps, rng, eps=STEP, n_leapfrog=LEAPFROG):
    import ebm

    return ebm.HMC(step_size=eps, leapfrog_steps=n_leapfrog).sample(energy, x, steps=n_steps)


_LOOPS = {"torchebm": {"langevin": torchebm_langevin, "hmc": torchebm_hmc},
          "ebmkit": {"langevin": ebmkit_langevin, "hmc": ebmkit_hmc}}


def samplers() -> dict[str, dict[str, callable]]:
    """For each installed peer, its ``"langevin"`` and ``"hmc"`` loops."""
    return {name: _LOOPS[name] for name in installed()}


SAMPLERS = samplers()


if __name__ == "__main__":
    for name, version in installed().items():
        print(f"{name} {version}: {', '.join(SAMPLERS[name])}")
