import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ebm_image.frame import FrameEnergy, dog_kernel, filter_bank
from ebm_image.texture import TextureConfig, TextureData, gram_distance, load_exemplar, random_crops
from PIL import Image

from ebmcore import EbmError


def test_filter_bank_has_an_intensity_filter_then_zero_mean_unit_norm_filters():
    bank, names = filter_bank(kernel=11, dog_scales=(0.7, 1.4), gabor_scales=(2.0,), orientations=4)
    assert bank.shape == (1 + 2 + 4 * 2, 1, 11, 11) and len(names) == len(bank)
    assert names[0] == "intensity" and bank[0].sum() == 1 and bank[0].abs().max() == 1
    rest = bank[1:].flatten(1)
    assert rest.sum(1).abs().max() < 1e-5  # blind to the mean grey level
    assert torch.allclose(rest.norm(dim=1), torch.ones(len(rest)), atol=1e-5)
    with pytest.raises(ValueError, match="odd"):
        filter_bank(kernel=10)


def test_dog_responds_to_a_blob_of_its_size_and_not_to_a_flat_image():
    k = dog_kernel(1.4, 11).float()[None, None]
    yy, xx = torch.meshgrid(torch.arange(21.0), torch.arange(21.0), indexing="ij")
    blob = torch.exp(-((xx - 10) ** 2 + (yy - 10) ** 2) / (2 * 1.4**2))[None, None]
    at_centre = F.conv2d(blob, k)[0, 0, 5, 5]
    assert at_centre > 0.5 and F.conv2d(torch.full((1, 1, 21, 21), 0.7), k).abs().max() < 1e-5


def test_gabor_filters_prefer_stripes_across_their_orientation():
    bank, names = filter_bank(kernel=11, dog_scales=(), gabor_scales=(2.0,), orientations=4)
    xx = torch.arange(32.0).expand(32, 32)
    stripes = torch.cos(2 * math.pi * xx / 5.0)[None, None]  # varies along x: vertical stripes
    energy = F.conv2d(stripes, bank).pow(2).mean(dim=(0, 2, 3))
    power = {n: float(e) for n, e in zip(names, energy, strict=True)}
    across = power["gabor/2/0/cos"] + power["gabor/2/0/sin"]
    along = power["gabor/2/90/cos"] + power["gabor/2/90/sin"]
    assert across > 20 * along


@pytest.mark.parametrize("padding", ["reflect", "valid"])
def test_frame_responses_by_fft_equal_a_plain_convolution(padding):
    e = FrameEnergy(kernel=7, dog_scales=(1.0,), gabor_scales=(1.5,), orientations=2, padding=padding)
    x = torch.rand(2, 1, 20, 24) * 2 - 1
    ref = F.conv2d(F.pad(x, (3,) * 4, mode="reflect") if padding == "reflect" else x, e.filters)
    assert torch.allclose(e.responses(x), ref, atol=1e-5)


def test_frame_potentials_are_smooth_splines_through_their_coefficients():
    e = FrameEnergy(kernel=5, dog_scales=(), gabor_scales=(), bins=9, response_range=2.0)
    r = torch.linspace(-3, 3, 101).view(1, 1, -1)
    with torch.no_grad():
        e.weights.fill_(1.5)  # B-splines sum to one: a constant potential
        assert torch.allclose(e.potentials(r), torch.full_like(r, 1.5), atol=1e-5)
        e.weights.copy_(torch.linspace(-2, 2, 9))  # and reproduce a straight line inside the range
        inside = r.abs() < 1.5
        assert torch.allclose(e.potentials(r)[inside], r[inside], atol=1e-5)


def test_frame_energy_gradient_is_finite_and_matches_finite_differences():
    torch.manual_seed(0)
    e = FrameEnergy(kernel=7, dog_scales=(1.0,), gabor_scales=(1.5,), orientations=2, reference_std=1.0).double()
    torch.nn.init.normal_(e.weights, std=0.3)
    # responses inside the knot range (φ is flat beyond it, with a kink at ±range)
    x = (torch.rand(3, 1, 16, 16, dtype=torch.float64) - 0.5).requires_grad_(True)
    assert e.responses(x).abs().max() < e.response_range
    energy = e(x)
    assert energy.shape == (3,)
    (g,) = torch.autograd.grad(energy.sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    v, eps = torch.randn_like(x), 1e-6
    with torch.no_grad():
        fd = (e(x + eps * v).sum() - e(x - eps * v).sum()) / (2 * eps)
    assert torch.allclose(fd, (g * v).sum(), rtol=1e-4)
    x.grad = None
    loss = e(x.detach()).mean()
    loss.backward()
    assert e.weights.grad is not None and torch.isfinite(e.weights.grad).all()


@pytest.mark.parametrize("name", ["brick", "grass", "gravel"])
def test_each_bundled_texture_loads_as_grey_crops_in_unit_range(name):
    data = TextureData.from_config(TextureConfig(name=name, scale=96, size=32, n_crops=20))
    assert data.x.shape == (20, 1, 32, 32) and data.event_shape == (1, 32, 32)
    assert data.x.min() >= -1 and data.x.max() <= 1 and data.x.std() > 0.2
    assert data.exemplar.shape == (1, 96, 96)


def test_an_image_file_is_a_texture_and_a_missing_one_is_named(tmp_path):
    path = tmp_path / "tex.png"
    Image.fromarray((np.indices((40, 40)).sum(0) % 8 * 32).astype(np.uint8)).save(path)
    data = TextureData.from_config(TextureConfig(path=str(path), scale=40, size=40, n_crops=3))
    assert data.x.shape == (3, 1, 40, 40) and torch.equal(data.x[0], data.x[1])  # scale = size: the exemplar
    with pytest.raises(EbmError, match="nothere.png: no such file"):
        load_exemplar(path=str(tmp_path / "nothere.png"))
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(EbmError, match="bad.png: cannot read image"):
        load_exemplar(path=str(tmp_path / "bad.png"))
    with pytest.raises(EbmError, match="larger than scale"):
        TextureData.from_config(TextureConfig(scale=32, size=64))


def test_random_crops_are_pieces_of_the_exemplar():
    image = torch.arange(100.0).view(1, 10, 10)
    crops = random_crops(image, 5, 4, rng=torch.Generator().manual_seed(0))
    for c in crops:
        top, left = divmod(int(c[0, 0, 0]), 10)
        assert torch.equal(c, image[:, top:top + 4, left:left + 4])


def test_gram_distance_is_zero_for_the_exemplar_and_large_for_noise():
    data = TextureData.from_config(TextureConfig(name="brick", scale=96, size=48, n_crops=16))
    assert gram_distance(data.exemplar, data.exemplar).item() == 0
    scores = data.evaluate(data.x)
    assert set(scores) == {"texture/gram", "texture/gram_noise", "texture/gram_crops", "texture/gram_gaussian",
                           "texture/gram_vs_gaussian"}
    assert 0 < scores["texture/gram"] < 0.5 * scores["texture/gram_noise"]
    # a Gaussian fitted to the crops has their pixel covariance but not their patch statistics
    assert scores["texture/gram"] < scores["texture/gram_gaussian"] < scores["texture/gram_noise"]
    assert scores["texture/gram_vs_gaussian"] == scores["texture/gram"] / scores["texture/gram_gaussian"]
    grass = TextureData.from_config(TextureConfig(name="grass", scale=96, size=48, n_crops=16))
    assert data.evaluate(grass.x)["texture/gram"] > 2 * scores["texture/gram"]  # another texture is far


@pytest.mark.parametrize("recipe", ["texture-frame", "texture-multigrid"])
def test_texture_recipe_runs_two_steps_and_scores_against_noise(recipe, tmp_path):
    import json

    from support import ROOT, ebm

    out = tmp_path / "run"
    short = ["--set", "objective.sample_steps=3"] if recipe == "texture-frame" else ["--set", "sampler.n_steps=3"]
    r = ebm("run", ROOT / "recipes" / f"{recipe}.toml", "--out", out, "--quiet", "--set", "run.steps=2",
            "--set", "run.eval_samples=4", *short)
    assert r.returncode == 0, r.stderr
    assert (out / "samples.png").exists()
    final = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert final["texture/gram_noise"] > final["texture/gram_crops"] > 0 and "texture/gram" in final
