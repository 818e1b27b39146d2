"""``revision``: what the Langevin revision adds to the generator's proposals.

Draws proposals x̂ and their revisions x̃ with the same latents, scores both with the
data's metrics (``generator/<metric>`` and ``revised/<metric>``) and writes one figure with
the two side by side (``revision.png``), each drawn by the data's own picture.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import attrs
from PIL import Image, ImageDraw

from ebm_coop.objectives import Cooperative
from ebmcore import EbmError, Task
from ebmcore import config as cfg
from ebmcore.kit.files import write_via


@attrs.frozen
class RevisionConfig:
    """Generator proposals alone vs revised by Langevin: scores and a side-by-side figure."""

    n: int = cfg.positive("samples of each", default=1000)
    n_steps: int | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.gt(0)),
                                      metadata={"doc": "revision steps (default: the objective's sample_steps)"})
    show: int = cfg.positive("images in each half of the figure (all points for vector data)", default=64)


def side_by_side(pictures: list[tuple[str, Path]], path: Path) -> None:
    """Paste PNGs left to right, each under its caption."""
    images = [Image.open(p).convert("RGB") for _, p in pictures]
    top = 18
    width = sum(im.width for im in images) + 10 * (len(images) - 1)
    canvas = Image.new("RGB", (width, top + max(im.height for im in images)), "white")
    draw, x = ImageDraw.Draw(canvas), 0
    for (caption, _), im in zip(pictures, images):
        canvas.paste(im, (x, top))
        draw.text((x + 4, 3), caption, fill="black")
        x += im.width + 10
    write_via(Path(path), lambda tmp: canvas.save(tmp, format="PNG"))


class Revision(Task):
    def __init__(self, c: RevisionConfig):
        self.c = c

    @classmethod
    def from_config(cls, c: RevisionConfig, ctx) -> "Revision":
        return cls(c)

    def run(self, objective, data, *, rng, out: Path) -> dict[str, float]:
        if not isinstance(objective, Cooperative):
            raise EbmError("task 'revision' needs a cooperative objective ('coop' or 'coop_vae')")
        x_hat, x_rev = objective.sample_with_proposals(self.c.n, rng=rng, n_steps=self.c.n_steps)
        x_hat, x_rev = x_hat.cpu(), x_rev.cpu()
        steps = self.c.n_steps or objective.sample_steps or objective.sampler.n_steps
        metrics: dict[str, float] = {"langevin_steps": float(steps)}
        for name, x in (("generator", x_hat), ("revised", x_rev)):
            metrics.update({f"{name}/{k}": v for k, v in data.evaluate(x).items()})
        show = len(x_hat) if len(data.event_shape) == 1 else self.c.show
        with tempfile.TemporaryDirectory() as tmp:
            parts = []
            for caption, x in ((f"generator alone ({self.c.n})", x_hat),
                               (f"generator + {steps} Langevin steps", x_rev)):
                p = Path(tmp) / f"{len(parts)}.png"
                data.save_samples(x[:show], p)
                parts.append((caption, p))
            side_by_side(parts, out / "revision.png")
        return metrics
