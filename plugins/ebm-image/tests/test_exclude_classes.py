"""``exclude_classes`` of data ``idx``: the excluded classes leave the training set, not the held-out split."""

import struct

import numpy as np
import pytest
import torch
from ebm_image import IdxConfig, IdxData

from ebmcore import EbmError
from ebmcore import config as cfg


def _idx(path, array):
    code = {np.uint8: 0x08}[array.dtype.type]
    path.write_bytes(bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
                     + array.tobytes())
    return str(path)


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    out = {}
    for split, labels in (("train", [0, 1, 2, 1, 0, 2]), ("test", [2, 0, 1, 1])):
        out[f"{split}_images"] = _idx(tmp_path / f"{split}-x", rng.integers(0, 256, (len(labels), 4, 4), dtype=np.uint8))
        out[f"{split}_labels"] = _idx(tmp_path / f"{split}-y", np.array(labels, dtype=np.uint8))
    return {"name": "files", "images": out["train_images"], "labels": out["train_labels"],
            "test_images": out["test_images"], "test_labels": out["test_labels"]}


def test_excluded_classes_are_dropped_from_training_and_kept_held_out(files):
    data = IdxData.from_config(IdxConfig(**files, exclude_classes=(1,), flip=True))
    assert data.labels.tolist() == [0, 2, 0, 2] * 2  # flipped copies follow their labels
    assert data.dataset().cond is None and data.num_classes == 3 and data.excluded_classes == (1,)
    assert data.heldout().cond.tolist() == [2, 0, 1, 1]
    full = IdxData.from_config(IdxConfig(**files))
    assert torch.equal(data.x[:4], full.x[[0, 2, 4, 5]])
    assert data.evaluate(data.x) == {}  # FD against a split holding the excluded class would mislead


def test_bad_exclusions_are_named(files):
    with pytest.raises(EbmError, match="no training image has label 7"):
        IdxData.from_config(IdxConfig(**files, exclude_classes=(7,)))
    with pytest.raises(EbmError, match="leaves no training images"):
        IdxData.from_config(IdxConfig(**files, exclude_classes=(0, 1, 2)))
    _, problems = cfg.structure({**files, "exclude_classes": [1, 1]}, IdxConfig, "$.data")
    assert problems == [("$.data.exclude_classes", "must be distinct class labels ≥ 0, got [1, 1]")]
