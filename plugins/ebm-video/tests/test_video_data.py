"""Video as data: files written here (lossless FFV1 in Matroska, an animated GIF, a folder of
PNG frames) read back exactly; time windows, crops, the temporal split; hostile files;
synthetic moving digits; Debian's tree.avi where it is installed."""

import os
import socket

import numpy as np
import pytest
import torch
from ebm_video import VideoConfig, clips, moving_digits, read_video
from ebm_video.data import TREE_AVI, VideoData
from PIL import Image

from ebmcore import EbmError, RecipeError
from ebmcore.build import build

FPS = 10


def square_frames(n=20, size=32, side=6):
    """A white square moving one pixel right per frame over a black ground, (n, size, size, 3)."""
    frames = np.zeros((n, size, size, 3), dtype=np.uint8)
    for t in range(n):
        frames[t, 10:10 + side, t:t + side] = 255
    return frames


def to_unit(frames):
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1


@pytest.fixture
def video(tmp_path, write_mkv):
    return write_mkv(tmp_path / "square.mkv", square_frames(), fps=FPS)


def test_a_lossless_video_reads_back_exactly_with_its_times(video):
    f = read_video(video, channels=3)
    assert torch.allclose(f.x, to_unit(square_frames()), atol=1e-6)
    assert f.times == pytest.approx([t / FPS for t in range(20)])


def test_the_time_window_crop_grey_and_size(video):
    f = read_video(video, seconds=(0.5, 1.0), crop=(8, 4, 12, 16), size=(6, 8), channels=1)
    assert f.x.shape == (5, 1, 6, 8) and f.times == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9])
    exact = read_video(video, seconds=(0.5, 1.0), crop=(8, 4, 12, 16), channels=1).x
    assert torch.allclose(exact, to_unit(square_frames()[5:10, 8:20, 4:20]).mean(1, keepdim=True), atol=1e-5)
    # the square moves right: its brightest column too
    assert exact[:, 0].mean(1).argmax(1).tolist() == sorted(exact[:, 0].mean(1).argmax(1).tolist())


def test_an_animated_gif_and_a_folder_of_frames_read_as_the_same_video(tmp_path):
    frames = square_frames(8)
    pictures = [Image.fromarray(a) for a in frames]
    pictures[0].save(tmp_path / "square.gif", save_all=True, append_images=pictures[1:], duration=100, loop=0)
    folder = tmp_path / "frames"
    folder.mkdir()
    for t, p in enumerate(pictures):
        p.save(folder / f"{t:03d}.png")
    gif, pngs = read_video(tmp_path / "square.gif", channels=3), read_video(folder, channels=3, fps=FPS)
    assert torch.allclose(pngs.x, to_unit(frames), atol=1e-6) and torch.allclose(gif.x, pngs.x, atol=1e-6)
    assert gif.times == pytest.approx(pngs.times)
    pictures[0].resize((16, 32)).save(folder / "004.png")  # one frame of another size
    with pytest.raises(EbmError, match=r"004\.png: 16×32 pixels, but the first frame of .*frames has 32×32"):
        read_video(folder)


def test_clips_are_windows_of_consecutive_frames():
    frames = torch.arange(10.0).view(10, 1, 1, 1).expand(10, 2, 3, 4)
    c = clips(frames, 4, 3)
    assert c.shape == (3, 2, 4, 3, 4)
    assert c[:, 0, :, 0, 0].tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]


def test_the_held_out_split_is_the_last_frames_and_never_trained_on(video):
    d = build("data", "video", path=str(video), clip=4, stride=1, heldout=0.2, size=(32, 32), channels=3)
    assert d.event_shape == (3, 4, 32, 32) and len(d.dataset().x) == 16 - 4 + 1
    frames = to_unit(square_frames())
    held = d.heldout().x
    assert len(held) == 1 and torch.allclose(held[0].transpose(0, 1), frames[16:20], atol=1e-6)
    last_trained = d.dataset().x[-1].transpose(0, 1)
    assert torch.allclose(last_trained, frames[12:16], atol=1e-6)


def test_too_few_frames_for_a_held_out_clip_names_the_key(video):
    with pytest.raises(EbmError, match=r"\$\.data\.clip = 8: .* 20 frames in the window, 16 to train on and 4 held"):
        build("data", "video", path=str(video), clip=8)


@pytest.mark.parametrize("bad", ["corrupt", "text", "empty", "fifo", "directory_without_frames", "missing",
                                 "socket"])
def test_hostile_files_end_in_an_error_naming_the_file(tmp_path, video, bad):
    path = tmp_path / bad
    if bad == "corrupt":
        data = video.read_bytes()
        path.write_bytes(data[:200] + bytes(len(data) - 200))
    elif bad == "text":
        path.write_text("not a video\n" * 100)
    elif bad == "empty":
        path.write_bytes(b"")
    elif bad == "fifo":
        os.mkfifo(path)  # opening it to read must not block
    elif bad == "directory_without_frames":
        path.mkdir()
        (path / "notes.txt").write_text("hi")
    elif bad == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
    with pytest.raises(EbmError, match=rf"^{path}: "):
        read_video(path)


def test_a_symlink_to_a_video_is_read_and_a_window_without_frames_is_an_error(tmp_path, video):
    link = tmp_path / "link.mkv"
    link.symlink_to(video)
    assert len(read_video(link).x) == 20
    with pytest.raises(EbmError, match=r"no frames in the window \$\.data\.seconds = \[5\.0, 6\.0\]"):
        read_video(video, seconds=(5.0, 6.0))


@pytest.mark.parametrize("settings, why", [({"seconds": [2.0, 1.0]}, "start < stop"),
                                           ({"crop": [0, 0, 0, 5]}, r"\[top, left, height, width\]"),
                                           ({"heldout": 1.0}, r"in \(0, 1\)"), ({"size": [0, 4]}, "positive")])
def test_bad_settings_are_refused(video, settings, why):
    with pytest.raises(ValueError, match=why):
        VideoConfig(path=str(video), **settings)


def test_a_crop_outside_the_frames_names_the_key(video):
    with pytest.raises(EbmError, match=r"\$\.data\.crop = \[0, 0, 40, 8\] .* does not fit the 32×32 frames"):
        read_video(video, crop=(0, 0, 40, 8))


def test_exactly_one_of_path_and_name():
    with pytest.raises(ValueError, match="exactly one of path"):
        VideoConfig()
    with pytest.raises(ValueError, match="exactly one of path"):
        VideoConfig(path="x.avi", name="tree")


def test_moving_digits_move_bounce_and_are_reproducible():
    digits = build("data", "digits").dataset().x
    x = moving_digits(digits, 64, clip=12, size=20, speed=3.0, seed=0)
    assert x.shape == (64, 1, 12, 20, 20) and torch.equal(x, moving_digits(digits, 64, clip=12, size=20,
                                                                           speed=3.0, seed=0))
    bright = (x[:, 0] > 0).float()  # (n, t, h, w)
    ys, xs = torch.arange(20.0).view(1, 1, 20, 1), torch.arange(20.0).view(1, 1, 1, 20)
    mass = bright.sum((2, 3)).clamp(min=1)
    centre = torch.stack([(bright * ys).sum((2, 3)) / mass, (bright * xs).sum((2, 3)) / mass], -1)
    step = (centre[:, 1:] - centre[:, :-1]).norm(dim=-1)
    assert step.median() == pytest.approx(3.0, abs=0.8)  # the speed, in pixels per frame
    assert (bright.sum((2, 3)) > 0).all()  # the digit never leaves the frame
    d = build("data", "moving_digits", n=8, heldout=4)
    assert d.event_shape == (1, 8, 24, 24) and not torch.equal(d.x[:4], d.heldout().x)  # other digits


def test_pictures_are_a_frame_grid_and_an_animated_gif(tmp_path):
    d = build("data", "moving_digits", n=8, heldout=4, clip=5)
    d.save_samples(d.x, tmp_path / "samples.png")
    (gif,) = d.report(tmp_path, d.x, None)
    # 5 frames of 24 pixels across, 8 clips down, one-pixel borders, enlarged 4 times
    assert Image.open(tmp_path / "samples.png").size == ((5 * 25 + 1) * 4, (8 * 25 + 1) * 4)
    with Image.open(gif) as g:
        assert g.n_frames == 5


@pytest.mark.skipif(not TREE_AVI.exists(), reason="Debian's opencv-doc is not installed (apt-get install opencv-doc)")
def test_the_tree_video_gives_its_coded_frames():
    f = read_video(TREE_AVI, channels=3, size=(24, 32))
    assert len(f.x) == 68 and f.times[-1] == pytest.approx(29.53, abs=0.01)  # 68 coded in 444 slots
    assert all(b > a for a, b in zip(f.times, f.times[1:], strict=False))
    d = VideoData.from_config(VideoConfig(name="tree", seconds=(0.0, 23.5), size=(16, 16), clip=4))
    assert d.event_shape == (1, 4, 16, 16) and len(d.heldout().x) >= 2


# -- the spatial-temporal ConvNet --------------------------------------------------------------

def _stconvnet(shape, **settings):
    from ebmcore.build import BuildContext

    return BuildContext(event_shape=shape).build("energy", "stconvnet", **settings)


def test_a_stationary_stconvnet_scores_clips_of_any_size_and_its_energy_adds_over_time():
    e = _stconvnet((1, 4, 16, 16), channels=[4, 4], kernels=[[1, 3, 3], [1, 3, 3]], strides=[[1, 1, 1], [1, 1, 1]],
                   reference_std=None)
    x = torch.randn(3, 1, 8, 16, 16)
    assert e(x).shape == (3,) and e(torch.randn(2, 1, 5, 20, 12)).shape == (2,)
    # kernels one frame long: a clip's energy is the sum of its frames' energies (stationary in time)
    assert torch.allclose(e(x), e(x[:, :, :3]) + e(x[:, :, 3:]), atol=1e-4)


def test_the_reference_term_and_the_linear_top():
    e = _stconvnet((1, 4, 8, 8), top="linear", reference_std=2.0)
    x = torch.randn(2, 1, 4, 8, 8)
    without = e.head(e.features(x).flatten(1))[:, 0]
    assert torch.allclose(e(x), without + x.flatten(1).pow(2).sum(1) / 8, atol=1e-5)


def test_stconvnet_refuses_images_and_layer_lists_of_different_lengths():
    with pytest.raises(ValueError, match=r"needs clips \(channels, frames, height, width\)"):
        _stconvnet((1, 8, 8))
    with pytest.raises(EbmError, match=r"\$\.energy: .*one entry per layer"):
        _stconvnet((1, 4, 8, 8), channels=[4])


# -- the video metric ---------------------------------------------------------------------------

def test_clip_statistics_of_known_clips():
    from ebm_video.metrics import clip_statistics

    still = torch.rand(4, 1, 1, 6, 6, generator=torch.Generator().manual_seed(0)).expand(4, 1, 8, 6, 6)
    s = clip_statistics(still)  # every frame the same
    assert torch.allclose(s["autocorr"], torch.ones(3, dtype=torch.float64)) and s["motion"].item() == 0
    # a picture and its negative in turn: all temporal power at the highest frequency, r(1) = −1
    picture = torch.tensor([[1.0, 1.0], [1.0, -1.0]])
    blink = torch.stack([picture * (-1) ** t for t in range(8)]).view(1, 1, 8, 2, 2)
    s = clip_statistics(blink)
    assert s["spectrum"][-1].item() == pytest.approx(1.0) and s["autocorr"][0].item() == pytest.approx(-1.0)
    assert s["histogram"].sum().item() == pytest.approx(1.0)


def test_the_video_metric_puts_real_motion_near_the_floor_and_noise_at_the_ceiling():
    d = build("data", "moving_digits", n=256, heldout=128)
    m = d.evaluate(d.heldout().x)  # the held-out clips themselves: distance 0
    assert m["video"] == 0 and set(m) >= {"video/heldout", "video/shuffled", "video/noise", "video/gaussian"}
    fresh = d.evaluate(build("data", "moving_digits", n=128, heldout=1, seed=7).x)  # the same process
    assert fresh["video"] < 0.5 * m["video/shuffled"]  # motion in the right order: near the floor
    assert m["video/heldout"] < m["video/shuffled"] < m["video/noise"]
    assert m["video/heldout"] < m["video/gaussian"]


# -- recovery ------------------------------------------------------------------------------------

def test_interpolation_and_temporal_mean_baselines_by_hand():
    from ebm_video import interpolated, missing_mask, temporal_mean

    x = torch.tensor([0.0, 9.0, 2.0, 9.0, 9.0, 8.0, 9.0]).view(1, 1, 7, 1, 1)
    gone = torch.tensor([True, False, True, True, False, True, True]).view(1, 1, 7, 1, 1)
    # held before the first observed value and after the last; linear in between
    assert interpolated(x, gone).flatten().tolist() == pytest.approx([9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0])
    x2 = torch.tensor([0.0, 1.0, 5.0, 9.0, 3.0]).view(1, 1, 5, 1, 1)
    gone2 = torch.tensor([False, True, True, False, True]).view(1, 1, 5, 1, 1)
    assert interpolated(x2, gone2).flatten().tolist() == pytest.approx([0.0, 3.0, 6.0, 9.0, 9.0])
    assert temporal_mean(x2, gone2).flatten().tolist() == pytest.approx([0.0, 4.5, 4.5, 9.0, 4.5])
    frames = missing_mask((2, 1, 6, 3, 3), "frames", 0.5, torch.Generator())
    assert frames[0, 0, :, 0, 0].tolist() == [False, True, False, True, False, False]
    pixels = missing_mask((4, 3, 6, 8, 8), "pixels", 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(pixels[:, :1].expand_as(pixels), pixels) and 0.4 < pixels.float().mean() < 0.6


def test_recover_keeps_observed_values_and_reports_the_baselines(tmp_path):
    from ebm_video import Recover, RecoverConfig, missing_mask

    from ebmcore.build import BuildContext

    data = build("data", "moving_digits", n=8, heldout=4, clip=5, size=16, speed=2.0)
    ctx = BuildContext(event_shape=data.event_shape)
    energy = ctx.build("energy", "stconvnet", channels=[4], kernels=[[3, 3, 3]], strides=[[1, 1, 1]])
    sampler = build("sampler", "langevin", n_steps=3, step_size=0.1, clamp=[-1.0, 1.0])
    for how in ("frames", "pixels"):
        task = Recover(RecoverConfig(missing=how, n=4), energy, sampler, "cpu")
        m = task.run(None, data, rng=torch.Generator().manual_seed(0), out=tmp_path)
        assert set(m) == {"mse", "mse_interpolation", "mse_temporal_mean", "mse_noise_fill", "vs_interpolation",
                          "vs_temporal_mean"}
        assert m["mse_interpolation"] < m["mse_noise_fill"] and (tmp_path / "recover.png").exists()
        x = data.heldout().x
        gone = missing_mask(tuple(x.shape), how, 0.5, torch.Generator().manual_seed(1))
        start = torch.where(gone, torch.zeros_like(x), x)
        done = task.recover(None, x, gone, start, rng=torch.Generator().manual_seed(2))
        assert torch.equal(done[~gone], x[~gone]) and not torch.equal(done[gone], start[gone])
    with pytest.raises(EbmError, match="needs clips"):
        BuildContext(event_shape=(1, 8, 8)).build("task", "recover")


def test_recovery_from_the_interpolation_and_the_mean_of_several_chains(tmp_path):
    from ebm_video import Recover, RecoverConfig, interpolated, missing_mask

    from ebmcore.build import BuildContext

    data = build("data", "moving_digits", n=8, heldout=4, clip=5, size=16, speed=2.0)
    energy = BuildContext(event_shape=data.event_shape).build("energy", "stconvnet", channels=[4], kernels=[[3, 3, 3]],
                                                                strides=[[1, 1, 1]])
    # a chain that never moves leaves the interpolation as it was: the baseline's score exactly
    still = build("sampler", "langevin", n_steps=1, step_size=1e-30, noise=1e-30)
    m = Recover(RecoverConfig(missing="pixels", n=4, fill="interpolation"), energy, still, "cpu").run(
        None, data, rng=torch.Generator().manual_seed(0), out=tmp_path)
    assert m["mse"] == pytest.approx(m["mse_interpolation"], rel=1e-6)
    # pure noise around the interpolation: the mean of 16 chains strays 1/16 as far (in MSE)
    x = data.heldout().x
    gone = missing_mask(tuple(x.shape), "pixels", 0.5, torch.Generator().manual_seed(1))
    lerp = interpolated(x, gone)
    walk = build("sampler", "langevin", n_steps=4, step_size=1e-30, noise=0.05)
    spread = {k: (Recover(RecoverConfig(missing="pixels", chains=k), energy, walk, "cpu")
                  .recover(None, x, gone, lerp, rng=torch.Generator().manual_seed(3)) - lerp)[gone]
              .pow(2).mean().item() for k in (1, 16)}
    assert spread[1] == pytest.approx(4 * 0.05**2, rel=0.1)
    assert spread[16] == pytest.approx(spread[1] / 16, rel=0.15)


def test_recovery_chains_by_another_registered_kernel():
    from ebm_video import RecoverConfig

    from ebmcore.build import BuildContext

    ctx = BuildContext(event_shape=(1, 5, 16, 16))
    ctx.built.update(energy=ctx.build("energy", "stconvnet", channels=[4], kernels=[[3, 3, 3]], strides=[[1, 1, 1]]),
                     sampler=build("sampler", "langevin", noise=0.01))
    task = ctx.build("task", "recover", kernel="langevin", kernel_options={"noise": 0.0, "step_size": 2.0})
    assert task.sampler is not ctx.built["sampler"] and task.sampler.config.noise == 0.0
    assert ctx.build("task", "recover").sampler is ctx.built["sampler"]
    with pytest.raises(ValueError, match="kernel_options needs kernel"):
        RecoverConfig(kernel_options={"noise": 0.0})
    with pytest.raises(RecipeError, match=r"kernel_options \(kernel 'langevin'\)\.step_sise: unknown key"):
        ctx.build("task", "recover", kernel="langevin", kernel_options={"step_sise": 2.0})


def test_frames_beyond_memory_are_refused_before_they_are_held(video, monkeypatch):
    from ebmcore.kit import memory

    monkeypatch.setattr("ebm_video.io.CHUNK", 4)  # frames decoded 4 at a time
    # a chunk of full-size frames (4 × 32 × 32 × 3 as bytes and floats: 60 KiB) does not fit
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 50 * 2**10)
    with pytest.raises(EbmError, match=r"^\$\.data\.path: needs an estimated 60\.0 KiB \(4 frames of 32×32 of "
                                       r".*square\.mkv at once\)"):
        read_video(video)
    # the chunks fit, the 20 prepared frames (4 KiB each, grey) do not: refused a chunk before
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 70 * 2**10)
    with pytest.raises(EbmError, match=r"^\$\.data\.seconds: needs an estimated .* \(the frames of .*square\.mkv\)"):
        read_video(video)
