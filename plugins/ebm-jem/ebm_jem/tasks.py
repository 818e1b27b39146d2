"""Task ``classify``: the energy as a classifier, p(y | x) = softmax(−E(x, ·)).

On the held-out split: accuracy, negative log-likelihood, expected calibration error (15
equal-width bins, Guo et al. 2017) with a reliability diagram, and out-of-distribution
AUROC of two scores against the sets of ebm-image's ``ood`` task (scikit-learn digits
resized, uniform noise, held-out images flipped upside down): the energy E(x) =
−logsumexp f(x) (JEM's p(x) score) and the maximum softmax probability (Hendrycks &
Gimpel 2017, the plain classifier's score). An AUROC of 1 means every OOD image scores
as less in-distribution than every held-out one; 0.5 is chance.

The AUROCs are the ``ood`` task's own, built through the registry twice: once on the
recipe's energy (with no label it is the marginal E(x)), once on :class:`NegMaxSoftmax`,
an energy whose value is −max softmax; both runs draw the same OOD images.
"""

from pathlib import Path

import attrs
import torch
from torch import Tensor

from ebm_jem.calibration import expected_calibration_error, reliability_png
from ebm_jem.objective import class_energies
from ebmcore import Condition, EbmError, Energy, Task, sampling_mode
from ebmcore import config as cfg

WHO = "task 'classify'"


class NegMaxSoftmax(Energy):
    """−max_y p(y | x) of a label-conditional energy, as an energy (lower = more
    in-distribution), so that any task scoring energies scores the max-softmax baseline."""

    def __init__(self, energy: Energy, num_classes: int):
        super().__init__()
        self.energy, self.num_classes = energy, num_classes

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        return -(-class_energies(self.energy, x, self.num_classes)).softmax(1).max(1).values


@attrs.frozen
class ClassifyConfig:
    """The energy as a classifier on the held-out split: accuracy, calibration, OOD AUROC."""

    n: int | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.gt(0)),
                                metadata={"doc": "held-out images to classify (the first n; default all)"})
    bins: int = cfg.positive("equal-width confidence bins of the ECE and the reliability diagram", default=15)
    ood_n: int = cfg.positive("held-out images, and images of each OOD set, for the AUROCs", default=1000)
    sets: tuple[str, ...] = cfg.doc(  # task 'ood' checks the names
        "OOD sets, made as task 'ood' makes them (digits: scikit-learn's, resized; noise: U(−1, 1); "
        "flip: held-out upside down; gaussian; train)", default=("digits", "noise", "flip"))
    batch: int = cfg.positive("images per energy call (each is repeated once per class)", default=200)


class Classify(Task):
    """``accuracy``, ``nll``, ``ece``; ``auroc_logsumexp/<set>`` and ``auroc_max_softmax/<set>``;
    pictures ``reliability.png``."""

    def __init__(self, c: ClassifyConfig, energy, num_classes: int, device, ood_logsumexp: Task,
                 ood_max_softmax: Task):
        self.c, self.energy, self.k, self.device = c, energy, num_classes, torch.device(device)
        self.ood = {"logsumexp": ood_logsumexp, "max_softmax": ood_max_softmax}

    @classmethod
    def from_config(cls, c: ClassifyConfig, ctx) -> "Classify":
        energy = ctx.require("energy", WHO)
        if energy.condition is not Condition.LABEL:
            raise EbmError(f"{WHO} classifies by E(x, y): set energy.condition = \"label\" "
                           f"(the energy's condition is {energy.condition.value!r})")
        if not ctx.num_classes:
            raise EbmError(f"{WHO} needs data with classes (labelled data, num_classes)")
        # the OOD sets and AUROCs are task 'ood''s (ebm-image), never copied here
        keys = {"n": c.ood_n, "sets": list(c.sets), "batch": c.batch}
        by_max_softmax = attrs.evolve(ctx, built={**ctx.built, "energy": NegMaxSoftmax(energy, ctx.num_classes)})
        return cls(c, energy, ctx.num_classes, ctx.device, ctx.build("task", "ood", **keys),
                   by_max_softmax.build("task", "ood", **keys))

    def logits(self, x: Tensor) -> Tensor:
        """f(x) = −E(x, ·), ``(n, num_classes)``, in chunks, without gradients, on the CPU."""
        out = []
        with sampling_mode(self.energy), torch.no_grad():
            for chunk in x.split(self.c.batch):
                out.append(-class_energies(self.energy, chunk.to(self.device), self.k).float().cpu())
        return torch.cat(out)

    def run(self, objective, data, *, rng, out: Path) -> dict[str, float]:
        held = data.heldout()
        if held is None or held.cond is None or len(held.x) == 0:
            raise EbmError(f"{WHO} needs a labelled held-out split (data.heldout() with labels)")
        x, y = held.x[: self.c.n], held.cond[: self.c.n].long()
        logits = self.logits(x)
        if not torch.isfinite(logits).all():
            raise EbmError(f"{WHO}: non-finite logits on the held-out images")
        probs = logits.softmax(1)
        confidence, pred = probs.max(1)
        correct = pred == y
        metrics = {"accuracy": correct.float().mean().item(),
                   "nll": torch.nn.functional.cross_entropy(logits, y).item(),
                   "ece": expected_calibration_error(confidence, correct, self.c.bins)}
        reliability_png(confidence, correct, out / "reliability.png", bins=self.c.bins,
                        title=f"accuracy {100 * metrics['accuracy']:.1f} %,")
        start = rng.get_state()
        for score, task in self.ood.items():
            rng.set_state(start)  # both scores see the same OOD images
            (out / score).mkdir(exist_ok=True)
            for key, value in task.run(objective, data, rng=rng, out=out / score).items():
                if key.startswith("auroc/"):
                    metrics[f"auroc_{score}/{key.removeprefix('auroc/')}"] = value
        return metrics
