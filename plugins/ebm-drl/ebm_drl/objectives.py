"""Diffusion recovery likelihood (Gao, Song, Poole, Wu & Kingma 2021).

Instead of the marginal p(x), learn at every noise level t (see :mod:`ebm_drl.schedule`)
the conditional of the cleaner sample given the noisier one. In the scaled variable
y_t = a_{t+1}·x_t, with x̃ = x_{t+1} = y_t + σ_{t+1}·ε:

    p(y_t | x̃) ∝ exp(−f(y_t, t)/s_t² − ‖x̃ − y_t‖²/(2σ_{t+1}²)),

f one network shared across levels (told t), s_t² the level's Langevin step. Dividing f by
s_t² is the paper's parametrisation: each Langevin step then moves y by −½∇f whatever the
level, and the quadratic term, which makes the conditional close to unimodal, keeps short
chains from x̃ well behaved. At the top level x_T is pure noise and the chain samples the
marginal of x_{T−1} (no quadratic term, y = x).

Learning maximises the recovery likelihood: each example gets a random level t; the
positive is y_t from the data, the negative is a K-step chain of the recipe's sampler
started at x̃; the loss is Σ w_t·(f(y⁺, t) − f(y⁻, t)) with the paper's level weights
w_t = σ_1/σ_{t+1}. Sampling is progressive: x_T ~ N(0, I), then one chain per level down
to level 0, so a sample costs T × K energy gradients.

The sampler runs in whitened coordinates z = y/s_t, one scale per example, so a single
call serves a batch of mixed levels and any registered kernel can serve: there, Langevin
with step_size 0.5 and its default noise (1) is the paper's update
y ← y − (s_t²/2)·∇_y(f/s_t² + ‖x̃ − y‖²/2σ²) + s_t·ξ. The sampler's ``grad_clamp`` acts on
∇_z, bounding each step's drift in y to ½·s_t·c; ``clamp`` (values) would act on z and is
refused: ``clamp`` of this objective bounds the values of every level's chain ends.
"""

import attrs
import torch
from torch import Tensor, nn

from ebm_drl.schedule import Levels, NoiseSchedule, StepSchedule
from ebmcore import Batch, Condition, EbmError, Objective
from ebmcore import config as cfg
from ebmcore.kit.replicas import one_row_per_chain


def _below_one(_inst, attribute, value):
    if not 0 < value < 1:
        raise ValueError(f"must be in (0, 1), got {value!r}")


@attrs.frozen
class DRLConfig:
    """Diffusion recovery likelihood (Gao et al. 2021): a conditional EBM per noise level, progressive sampling."""

    levels: int = attrs.field(default=6, validator=attrs.validators.ge(2),
                              metadata={"doc": "noise levels T (the paper: 6); a sample costs T × sampler.n_steps gradients"})
    schedule: NoiseSchedule = cfg.doc("noise schedule the levels are taken from: DDPM's 'linear' β (the paper) "
                                      "or 'cosine' (Nichol & Dhariwal 2021)", default="linear")
    beta_start: float = attrs.field(default=1e-4, validator=_below_one,
                                    metadata={"doc": "first β of the linear schedule (sets level 0's noise √β)"})
    beta_end: float = attrs.field(default=0.02, validator=_below_one,
                                  metadata={"doc": "last β of the linear schedule (of 1,000 fine steps)"})
    step_b2: float = cfg.positive("b²: level t's Langevin step is s_t² = b²·σ_{t+1}² (the paper: 2e-4)",
                                  default=2e-4)
    step_schedule: StepSchedule = cfg.doc("'paper': s_t² also grows as σ̄_t/σ̄_0 (noisier levels take larger "
                                          "steps); 'sigma': s_t² = b²·σ_{t+1}² only", default="paper")
    clamp: tuple[float, float] | None = attrs.field(
        default=None, validator=cfg.low_below_high,
        metadata={"doc": "clamp x_t to [low, high] after each level's chain (keeps a blown-up chain finite)"})
    data_noise: float = cfg.non_negative("std of Gaussian noise added to each data batch before it is diffused "
                                         "(the model learns the data smoothed by it, as objective 'mle')",
                                         default=0.0)

    def __attrs_post_init__(self):
        if self.schedule == "linear" and not self.beta_start < self.beta_end:
            raise ValueError(f"beta_start ({self.beta_start}) must be below beta_end ({self.beta_end})")


class _WhitenedConditional(nn.Module):
    """U(z) = f(s·z, t)/s² + r·‖s·z − x̃‖²/(2σ²): level t's recovery conditional in z = y/s
    (s, σ, r per example, shaped to broadcast against y)."""

    def __init__(self, energy: nn.Module, levels: Tensor, x_tilde: Tensor, step: Tensor, sigma: Tensor,
                 recovery: Tensor):
        super().__init__()
        self.energy = energy
        self.levels, self.x_tilde, self.step, self.sigma, self.recovery = levels, x_tilde, step, sigma, recovery

    def forward(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        y = z * self.step
        f = self.energy(y, self.levels) / self.step.flatten().pow(2)
        quad = (y - self.x_tilde).pow(2).flatten(1).sum(1) / (2 * self.sigma.flatten().pow(2))
        return f + self.recovery * quad


class DiffusionRecoveryLikelihood(Objective):
    def __init__(self, energy: nn.Module, sampler, event_shape: tuple[int, ...], levels: Levels,
                 clamp: tuple[float, float] | None = None, data_noise: float = 0.0):
        super().__init__()
        if energy.condition is not Condition.LEVEL:
            raise EbmError(f"objective 'drl' needs an energy conditioned on the noise level (level_mlp, "
                           f"level_cnn: condition = 'level'), got {type(energy).__name__} with condition = "
                           f"'{energy.condition.value}'")
        if sampler.clamp is not None:
            raise EbmError("objective 'drl' runs the sampler in whitened coordinates, where $.sampler.clamp "
                           "means nothing: remove it and set $.objective.clamp (values of x) instead")
        self.energy, self.sampler, self.clamp, self.data_noise = energy, sampler, clamp, data_noise
        self.event_shape, self.levels = tuple(event_shape), levels.levels
        # deterministic from the config: not checkpointed, but moved with the module
        for name, value in levels.as_dict().items():
            self.register_buffer(name, value.float(), persistent=False)

    @classmethod
    def from_config(cls, c: DRLConfig, ctx) -> "DiffusionRecoveryLikelihood":
        who = "objective 'drl'"
        levels = Levels(c.levels, c.schedule, beta_start=c.beta_start, beta_end=c.beta_end, b2=c.step_b2,
                        step_schedule=c.step_schedule)
        return cls(ctx.require("energy", who), one_row_per_chain(ctx.require("sampler", who), who), ctx.need_event_shape(who), levels,
                   clamp=c.clamp, data_noise=c.data_noise)

    def param_groups(self):
        return {"energy": self.energy}

    def _per_example(self, name: str, t: Tensor, like: Tensor) -> Tensor:
        """Coefficient ``name`` of each example's level, shaped to broadcast against ``like``."""
        return self.get_buffer(name)[t].view(-1, *([1] * (like.dim() - 1)))

    def diffuse(self, x: Tensor, t: Tensor, *, rng: torch.Generator) -> tuple[Tensor, Tensor]:
        """A training pair per example: x_t = ā_t·x + σ̄_t·ε and x_{t+1} = a_{t+1}·x_t + σ_{t+1}·ε'."""
        noise = torch.randn((2, *x.shape), generator=rng, device=x.device, dtype=x.dtype)
        x_t = self._per_example("a_cum", t, x) * x + self._per_example("sigma_cum", t, x) * noise[0]
        x_next = self._per_example("a_next", t, x) * x_t + self._per_example("sigma_next", t, x) * noise[1]
        return x_t, x_next

    def recover(self, x_tilde: Tensor, t: Tensor, *, rng: torch.Generator) -> Tensor:
        """Sample y_t given x̃ = x_{t+1} (levels ``t`` per example) with the sampler, from y = x̃."""
        step = self._per_example("step2", t, x_tilde).sqrt()
        target = _WhitenedConditional(self.energy, t, x_tilde, step, self._per_example("sigma_next", t, x_tilde),
                                      self.recovery[t])
        y = self.sampler.run(x_tilde / step, target, rng=rng) * step
        if self.clamp is not None:  # on x_t = y/scale, so the bound means the same at every level
            scale = self._per_example("scale", t, y)
            y = (y / scale).clamp_(*self.clamp) * scale
        return y

    def loss(self, batch: Batch, *, rng):
        x = batch.x
        n = len(x)
        if self.data_noise:
            # modes sharper than level 0's chains can contract to (eight Gaussians: std 0.02)
            # are learned as modes of this width instead; sampling is unchanged
            x = x + self.data_noise * torch.randn(x.shape, generator=rng, device=x.device, dtype=x.dtype)
        t = torch.randint(0, self.levels, (n,), generator=rng, device=x.device)
        x_t, x_next = self.diffuse(x, t, rng=rng)
        y_pos = self._per_example("scale", t, x) * x_t
        y_neg = self.recover(x_next, t, rng=rng)
        f = self.energy(torch.cat([y_pos, y_neg]), torch.cat([t, t]))
        f_pos, f_neg = f[:n], f[n:]
        loss = (self.loss_weight[t] * (f_pos - f_neg)).mean()
        # how far chains move from x̃, per coordinate, relative to the level's noise σ_{t+1}
        moved = (y_neg - x_next).flatten(1).pow(2).mean(1).sqrt() / self.sigma_next[t]
        return {"energy": loss}, {"energy/data": f_pos.mean().detach(), "energy/sample": f_neg.mean().detach(),
                                  "recovery/moved": moved.mean().detach()}

    def sample(self, n, *, rng, cond=None):
        """Progressive denoising: x_T ~ N(0, I), then one chain per level, down to level 0."""
        device = self.step2.device
        x = torch.randn((n, *self.event_shape), generator=rng, device=device)
        for level in reversed(range(self.levels)):
            t = torch.full((n,), level, dtype=torch.long, device=device)
            x = self.recover(x, t, rng=rng) / self._per_example("scale", t, x)
        return x
