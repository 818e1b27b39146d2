"""``binarize``: images as {0, 1} for binary models, thresholded or drawn afresh per batch."""

import struct

import numpy as np
import pytest
import torch
from ebm_image import DigitsConfig, DigitsData, IdxConfig, IdxData
from PIL import Image

from ebmcore import RecipeError, build


def test_threshold_maps_training_and_heldout_images_to_zero_or_one_at_mid_grey():
    grey = DigitsData.from_config(DigitsConfig(heldout=100))
    data = DigitsData.from_config(DigitsConfig(binarize="threshold", heldout=100))
    assert torch.equal(data.dataset().x, (grey.dataset().x > 0).float())
    assert torch.equal(data.heldout().x, (grey.heldout().x > 0).float())
    batch = data.stream(torch.Generator().manual_seed(0)).next().x
    assert bool(((batch == 0) | (batch == 1)).all())


def test_stochastic_batches_are_fresh_bernoulli_draws_of_the_grey_levels_and_resume_exactly(tmp_path):
    data = DigitsData.from_config(DigitsConfig(binarize="stochastic", heldout=100, batch_size=1697))
    grey = (DigitsData.from_config(DigitsConfig(heldout=100)).dataset().x + 1) / 2
    fixed = data.dataset().x
    assert bool(((fixed == 0) | (fixed == 1)).all()) and bool(((data.heldout().x == 0) | (data.heldout().x == 1)).all())
    stream = data.stream(torch.Generator().manual_seed(0))
    first = stream.next().x
    saved = stream.state()
    second = stream.next().x
    # every batch is the whole set, reshuffled: sort both by the permutation to compare draws
    assert bool(((second == 0) | (second == 1)).all()) and not torch.equal(first.sort(0).values, second.sort(0).values)
    # a pixel's frequency over draws is its grey level: 20 draws of all 1,697 images
    draws = torch.stack([stream.next().x.mean(0) for _ in range(20)]).mean(0)
    assert abs(float(draws.mean() - grey.mean())) < 0.005
    resumed = data.stream(torch.Generator().manual_seed(99))
    resumed.restore(saved)
    assert torch.equal(resumed.next().x, second)


def test_binary_samples_are_drawn_black_to_white(tmp_path):
    data = DigitsData.from_config(DigitsConfig(binarize="threshold", heldout=100))
    data.save_samples(torch.stack([torch.zeros(1, 8, 8), torch.ones(1, 8, 8)]), tmp_path / "s.png")
    pixels = np.asarray(Image.open(tmp_path / "s.png"))
    assert pixels.min() == 0 and pixels.max() == 255


def test_idx_images_binarize_too(tmp_path):
    # one 2×2 uint8 image: magic (type 0x08, 3 dimensions), the dimensions, the pixels
    (tmp_path / "images").write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 1, 2, 2) + bytes([0, 127, 128, 255]))
    x = IdxData.from_config(IdxConfig(images=str(tmp_path / "images"), binarize="threshold")).dataset().x
    assert x.flatten().tolist() == [0, 0, 1, 1]


def test_an_unknown_binarize_value_is_named_with_its_choices():
    with pytest.raises(RecipeError, match=r"\$\.data\.binarize: .*'threshold'"):
        build("data", "digits", binarize="thresh")
