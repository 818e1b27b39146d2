"""``anomaly``: held-out images of the training classes against those of a class never trained on.

Each image is scored by the latent model's −log p(x, z) at z ~ p(z | x) (Pang et al.
2020): the reconstruction error ‖x − g(z)‖²/(2σ²) plus the prior energy E(z). ``auroc`` is
that score's AUROC (1: every anomalous image scores higher than every normal one; 0.5:
chance); ``auroc/reconstruction`` and ``auroc/prior`` are its two terms alone. The picture
(``anomaly.png``) has four rows: normal images, their reconstructions g(z), anomalous
images, theirs.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import torch
from torch import Tensor

from ebm_latent.objectives import LatentEBM
from ebmcore import EbmError, Task
from ebmcore import config as cfg
from ebmcore.kit.diagnostics import auroc
from ebmcore.kit.pictures import image_grid_png


def _optional_positive(doc: str) -> object:
    return attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.gt(0)),
                       metadata={"doc": doc})


def _classes(_inst, _attr, value):
    if value is not None and (not value or any(k < 0 for k in value) or len(set(value)) != len(value)):
        raise ValueError(f"must be a non-empty list of distinct class labels ≥ 0, got {list(value)}")


@attrs.frozen
class AnomalyConfig:
    """AUROC of the latent model's −log p(x, z) separating held-out normal and anomalous images."""

    n: int = cfg.positive("held-out images of each side (the first n normal, the first n anomalous)",
                          default=1000)
    anomalous: tuple[int, ...] | None = attrs.field(
        default=None, validator=_classes,
        metadata={"doc": "labels of the anomalous classes (default: the data's exclude_classes)"})
    posterior_steps: int | None = _optional_positive("Langevin steps of inference (default: the objective's)")
    batch: int = cfg.positive("images per inference batch", default=500)
    show: int = cfg.positive("images of each row in the picture", default=8)


class Anomaly(Task):
    def __init__(self, c: AnomalyConfig, device):
        self.c, self.device = c, torch.device(device)

    @classmethod
    def from_config(cls, c: AnomalyConfig, ctx) -> "Anomaly":
        return cls(c, ctx.device)

    def scores(self, objective, x: Tensor, rng) -> tuple[Tensor, Tensor, Tensor]:
        """(reconstruction error, prior energy, reconstruction) of every image, on the CPU."""
        parts = [objective.anomaly_scores(chunk.to(self.device), rng=rng, n_steps=self.c.posterior_steps)
                 for chunk in x.split(self.c.batch)]
        return tuple(torch.cat([p[i].float().cpu() for p in parts]) for i in range(3))

    def run(self, objective, data, *, rng, out: Path) -> dict[str, float]:
        if not isinstance(objective, LatentEBM):
            raise EbmError("task 'anomaly' needs a latent-variable objective ('latent_ebm' or 'abp')")
        anomalous = self.c.anomalous or data.excluded_classes
        if not anomalous:
            raise EbmError("task 'anomaly': set `anomalous` (the anomalous labels), or leave classes out "
                           "of training with [data] exclude_classes, which it defaults to")
        held = data.heldout()
        if held is None or held.cond is None:
            raise EbmError("task 'anomaly' needs labelled image data with a held-out split")
        is_anomalous = torch.isin(held.cond, torch.tensor(anomalous))
        normal, odd = held.x[~is_anomalous][: self.c.n], held.x[is_anomalous][: self.c.n]
        if len(normal) == 0 or len(odd) == 0:
            raise EbmError(f"task 'anomaly': the held-out split has {len(normal)} normal and {len(odd)} "
                           f"anomalous images (anomalous = {list(anomalous)}); both are needed")
        rec_in, prior_in, x_rec_in = self.scores(objective, normal, rng)
        rec_out, prior_out, x_rec_out = self.scores(objective, odd, rng)
        show = min(self.c.show, len(normal), len(odd))
        rows = [normal[:show], x_rec_in[:show], odd[:show], x_rec_out[:show]]
        image_grid_png(torch.cat(rows), out / "anomaly.png", columns=show, limit=4 * show)
        return {
            "auroc": auroc(rec_in + prior_in, rec_out + prior_out),
            "auroc/reconstruction": auroc(rec_in, rec_out),
            "auroc/prior": auroc(prior_in, prior_out),
            "score/normal": (rec_in + prior_in).mean().item(),
            "score/anomalous": (rec_out + prior_out).mean().item(),
            "mse/normal": (x_rec_in - normal).pow(2).mean().item(),
            "mse/anomalous": (x_rec_out - odd).pow(2).mean().item(),
        }
