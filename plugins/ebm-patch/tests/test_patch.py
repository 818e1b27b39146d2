"""ebm-patch on a tiny photo written here: loading and hostile files, the patch distance and
its yardsticks, the energy's patch locality, synthesis at other sizes, inpainting, and a
training step."""

import numpy as np
import pytest
import torch
from ebm_patch import (
    PatchMetrics,
    centre_hole,
    load_photo,
    patch_distance,
    patch_terms,
    random_phase,
    shuffled_blocks,
)
from PIL import Image

from ebmcore import Batch, EbmError
from ebmcore.build import BuildContext


@pytest.fixture
def photo_file(tmp_path):
    """A 24×32 RGB photo: diagonal stripes over a horizontal ramp."""
    y, x = np.mgrid[0:24, 0:32]
    grey = 127 + 60 * np.sin((x + y) / 2.0) + 2 * x
    rgb = np.stack([grey, grey[::-1], np.full_like(grey, 90)], axis=-1).clip(0, 255).astype(np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(rgb).save(path)
    return path


def build(photo_file, **sampler):
    """Data, energy, sampler and objective of a tiny PatchGenCN on the photo (grey, 32 wide)."""
    ctx = BuildContext()
    data = ctx.build("data", "photo", path=str(photo_file), size=32)
    ctx.event_shape = data.event_shape
    ctx.built["data"] = data
    ctx.built["energy"] = ctx.build("energy", "patchgencn", scales=3, width=4, layers=2)
    ctx.built["sampler"] = ctx.build("sampler", "patch_pyramid", **{"n_steps": 3, **sampler})
    ctx.built["generator"] = ctx.build("generator", "uniform", low=-1.0, high=1.0)
    ctx.built["objective"] = ctx.build("objective", "mle_patch", chains=2)
    return ctx


def test_a_photo_file_is_read_with_its_aspect_ratio_in_minus_one_one(photo_file):
    x = load_photo(path=str(photo_file), size=16, channels=3)
    assert x.shape == (3, 12, 16) and x.min() >= -1 and x.max() <= 1
    assert load_photo(path=str(photo_file), size=32).shape == (1, 24, 32)  # native size, grey


@pytest.mark.parametrize("kind", ["corrupt", "text", "directory"])
def test_a_corrupt_or_non_image_file_is_an_error_naming_it(tmp_path, photo_file, kind):
    bad = tmp_path / f"bad-{kind}.png"
    if kind == "corrupt":
        bad.write_bytes(photo_file.read_bytes()[:60])
    elif kind == "text":
        bad.write_text("not an image\n")
    else:
        bad.mkdir()
    with pytest.raises(EbmError, match=str(bad)):
        BuildContext().build("data", "photo", path=str(bad))


def test_the_patch_distance_is_zero_for_the_photo_and_orders_its_yardsticks(photo_file):
    photo = load_photo(path=str(photo_file), size=32)
    assert patch_distance(photo, photo) < 1e-12
    assert patch_terms(photo[:, 4:24, 4:28], photo)[0] < 1e-12  # at offsets of 4, every pooled grid aligns
    sticks = PatchMetrics(photo).yardsticks(4)
    assert sticks["patch"]["crops"] < sticks["patch"]["shuffled"] < sticks["patch"]["noise"]
    assert sticks["patch"]["crops"] < sticks["patch"]["gaussian"] < sticks["patch"]["noise"]
    assert sticks["patch_coherence"]["crops"] < sticks["patch_coherence"]["shuffled"]


def test_random_phase_keeps_the_power_spectrum_and_shuffling_keeps_the_pixels(photo_file):
    photo = load_photo(path=str(photo_file), size=32) * 0.3  # no clamping in the draws
    g = torch.Generator().manual_seed(0)
    draw = random_phase(photo, 2, rng=g)
    centred = photo - photo.mean()
    assert torch.allclose(torch.fft.fft2(draw[1] - draw[1].mean()).abs(), torch.fft.fft2(centred).abs(), atol=1e-3)
    assert not torch.allclose(draw[0], draw[1])
    shuffled = shuffled_blocks(photo, 1, rng=g)[0]
    kept = photo[:, :shuffled.shape[1], :shuffled.shape[2]]  # cut to whole blocks (3×3 here)
    assert shuffled.shape == (1, 24, 30) and not torch.equal(shuffled, kept)
    assert torch.equal(shuffled.flatten().sort().values, kept.flatten().sort().values)


def test_the_energy_is_a_sum_of_patch_energies_the_same_at_any_size(photo_file):
    net = build(photo_file).built["energy"].nets[-1]
    big = torch.randn(1, 1, 20, 30)
    crop = big[..., 4:16, 6:24]  # inner patches (radius 2) of the crop are patches of the big image
    inner_big = net.patch_energies(big)[:, 6:14, 8:22]
    inner_crop = net.patch_energies(crop)[:, 2:10, 2:16]
    assert torch.allclose(inner_big, inner_crop, atol=1e-5)
    assert torch.allclose(net(big), net.patch_energies(big).sum((1, 2)))


def test_synthesis_retargets_to_the_requested_size_through_every_scale(photo_file):
    ctx = build(photo_file)
    energy, sampler = ctx.built["energy"], ctx.built["sampler"]
    x0 = torch.rand(2, 1, 24, 48) * 2 - 1
    out = sampler.run_pyramid(x0, energy, rng=torch.Generator().manual_seed(0))
    assert [tuple(x.shape[-2:]) for x in out] == energy.sizes(24, 48) == [(14, 27), (18, 36), (24, 48)]
    assert sampler.run(x0, energy, rng=torch.Generator().manual_seed(0)).shape == (2, 1, 24, 48)
    with pytest.raises(EbmError, match="coarsest"):
        energy.sizes(4, 40)


def test_inpainting_keeps_the_observed_pixels_bit_for_bit(photo_file):
    ctx = build(photo_file)
    task = ctx.build("task", "patch_inpaint", n=2)
    photo = ctx.built["data"].photo
    x = photo.expand(2, *photo.shape)
    missing = centre_hole(tuple(x.shape), 0.25)
    _, filled = task.inpaint(x, missing, rng=torch.Generator().manual_seed(0))
    assert torch.equal(filled[~missing], x[~missing]) and not torch.equal(filled[missing], x[missing])


def test_a_training_step_gives_each_scale_its_own_loss(photo_file):
    ctx = build(photo_file)
    objective, photo = ctx.built["objective"], ctx.built["data"].photo
    losses, metrics = objective.loss(Batch(photo[None]), rng=torch.Generator().manual_seed(0))
    assert set(losses) == set(objective.param_groups()) == {"scale0", "scale1", "scale2"}
    losses["scale1"].backward()
    nets = ctx.built["energy"].nets
    assert nets[1].net[0].weight.grad is not None and nets[0].net[0].weight.grad is None
    assert all(torch.isfinite(v) for v in metrics.values())


def test_the_tasks_write_pictures_and_score_every_size(photo_file, tmp_path):
    ctx = build(photo_file)
    task = ctx.build("task", "patch_synthesis", sizes=[[1.0, 1.0], [1.0, 1.5]], n=2)
    out = tmp_path / "out"
    out.mkdir()
    metrics = task.run(ctx.built["objective"], ctx.built["data"], rng=torch.Generator().manual_seed(0), out=out)
    assert {"patch@24x32", "patch@24x48/crops", "patch_coherence@24x48/gaussian"} <= set(metrics)
    assert (out / "synthesis_24x48.png").exists()
    with pytest.raises(EbmError, match=r"smaller than the patch distance's 20×20 crop"):
        ctx.build("task", "patch_synthesis", sizes=[[0.5, 1.0]])
