"""scikit-learn's handwritten digits (8×8 grey, 1,797 images, 10 classes), bundled in its wheel."""

import attrs
import torch

from ebm_image.common import Binarize, ImageData, binarize_field, resize, to_unit_range
from ebmcore import Batch, EbmError
from ebmcore import config as cfg
from ebmcore.kit.memory import check_fits, tensor_bytes


@attrs.frozen
class DigitsConfig:
    """scikit-learn's 1,797 handwritten digits (8×8 grey, values 0..16 scaled to [−1, 1])."""

    size: int = cfg.positive("image size; 8 is native, others are resized bilinearly", default=8)
    conditional: bool = cfg.doc("give the labels (0..9) as cond", default=False)
    flip: bool = cfg.doc("append horizontally mirrored copies (doubles the set)", default=False)
    heldout: int = cfg.non_negative("images held out of training for metrics and tasks "
                                    "(a fixed random subset)", default=360)
    batch_size: int = cfg.positive("examples per optimisation step", default=64)
    binarize: Binarize = binarize_field()


def load_digits_tensor() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images).float().unsqueeze(1)  # (1797, 1, 8, 8), values 0..16
    return to_unit_range(x, 16.0), torch.from_numpy(d.target).long()


class DigitsData(ImageData):
    """scikit-learn's digits (tasks that compare with digits know not to compare them with themselves)."""

    @classmethod
    def from_config(cls, c: DigitsConfig, ctx=None) -> "DigitsData":
        x, y = load_digits_tensor()
        check_fits("$.data.size", tensor_bytes(len(x), 1, c.size, c.size),
                   what=f"{len(x):,} images of {c.size}×{c.size} as float32")
        x = resize(x, c.size)
        if c.heldout >= len(x):
            raise EbmError(f"data.digits: heldout = {c.heldout} leaves no training images (of {len(x)})")
        # the split is fixed (seed 0), not the run's seed: metrics stay comparable across runs
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
        test, train = order[:c.heldout], order[c.heldout:]
        heldout = Batch(x[test], y[test]) if c.heldout else None
        return cls(x[train], y[train], batch_size=c.batch_size, conditional=c.conditional,
                   flip=c.flip, num_classes=10, name="digits", heldout=heldout, binarize=c.binarize)
