"""Task ``generator_chains``: samples by chains continued from the generator's proposals —
a replay buffer's chains, the IGEBM convention — scored by the data's own metric beside its
yardsticks. A recipe whose objective evaluates fresh chains (``eval_chains = "fresh"``)
adds this task to be scored both ways in one run (issue 24's persistent models)."""

from pathlib import Path

import attrs
import torch

from ebmcore import Condition, EbmError, Task
from ebmcore import config as cfg
from ebmcore.kit.replicas import one_row_per_chain


@attrs.frozen
class GeneratorChainsConfig:
    """Chains continued from the generator's proposals (a replay buffer), scored by the data's metric."""

    n: int = cfg.positive("chains per draw (the objective's evaluation uses run.eval_samples)", default=1000)
    n_steps: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0)),
        metadata={"doc": "sampler steps from the proposals (default: the sampler's n_steps)"})
    draws: int = cfg.positive("independent draws of n chains; every metric is their mean (one draw of "
                              "1,000 images spans several FD points)", default=1)


class GeneratorChains(Task):
    """``draws`` times: ``n`` proposals of the generator (read, never written back), run
    ``n_steps`` by the recipe's sampler, scored by ``data.evaluate``; the metrics' means, and
    the first draw's picture (``samples.png``)."""

    def __init__(self, c: GeneratorChainsConfig, energy, sampler, generator):
        self.c, self.energy, self.sampler, self.generator = c, energy, sampler, generator

    @classmethod
    def from_config(cls, c: GeneratorChainsConfig, ctx) -> "GeneratorChains":
        who = "task 'generator_chains'"
        generator = ctx.require("generator", who)
        if generator.condition is not Condition.NONE:
            raise EbmError(f"{who} scores unconditional samples; the generator takes cond "
                           f"({generator.condition.value})")
        return cls(c, ctx.require("energy", who), one_row_per_chain(ctx.require("sampler", who), who), generator)

    def run(self, objective, data, *, rng, out: Path) -> dict[str, float]:
        per_draw = []
        for draw in range(self.c.draws):
            x0 = self.generator.sample(self.c.n, rng=rng)
            x = self.sampler.run(x0, self.energy, self.c.n_steps, rng=rng).cpu()
            if not torch.isfinite(x).all():
                raise EbmError("task 'generator_chains': the chains from the generator's proposals are non-finite")
            if draw == 0:
                data.save_samples(x, out / "samples.png")
            per_draw.append(data.evaluate(x))
        return {k: sum(m[k] for m in per_draw) / len(per_draw) for k in per_draw[0]}
