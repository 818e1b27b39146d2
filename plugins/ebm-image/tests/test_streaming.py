"""An image folder beyond ``memory_mb`` streams from disk: the same batches as in memory,
disjoint shards per rank, an exact resume mid-epoch (after SIGKILL too), bad files stopped
or skipped and counted, and peak memory that does not grow with the folder (slow)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tomli_w
import torch
from ebm_image.streaming import StreamedFolder
from PIL import Image
from support import killed_and_resumed

import ebmcore
from ebmcore import EbmError


def make_folder(root, n, size=8, classes=2):
    """``n`` grey images in class subfolders; image i has a distinct pattern."""
    for i in range(n):
        folder = root / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (np.arange(size * size).reshape(size, size) * 7 + i * 13) % 256
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i:06d}.png")
    return root


def folder_data(root, **keys):
    return ebmcore.build("data", "image_folder", root=str(root), size=8, batch_size=16, **keys)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("folder"), 90)


def batches(stream, k):
    return [stream.next() for _ in range(k)]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_streamed_folder_gives_the_batches_the_folder_in_memory_gives(folder, workers):
    keys = dict(conditional=True, flip=True)
    memory = folder_data(folder, **keys)
    streamed = folder_data(folder, memory_mb=0.001, workers=workers, **keys)
    assert isinstance(streamed, StreamedFolder) and not isinstance(memory, StreamedFolder)
    assert streamed.event_shape == memory.event_shape and streamed.num_classes == 2
    with pytest.raises(EbmError, match="streams its data"):
        streamed.dataset()
    # three epochs of 180 images (with the mirrored copies) in batches of 16
    a = batches(memory.stream(torch.Generator().manual_seed(3)), 35)
    b = batches(streamed.stream(torch.Generator().manual_seed(3)), 35)
    assert all(torch.equal(x.x, y.x) and torch.equal(x.cond, y.cond) for x, y in zip(a, b, strict=True))


def test_two_ranks_take_disjoint_shards_of_every_epoch(folder):
    data = folder_data(folder, memory_mb=0.001, workers=0)
    ranks = [data.stream(torch.Generator().manual_seed(5), rank=r, world=2) for r in range(2)]
    per_epoch = 90 // 32  # global batches of 2 × 16 in an epoch (the remainder is dropped)
    seen = [torch.cat([s.next().x.flatten(1) for _ in range(per_epoch)]) for s in ranks]
    rows = torch.cat(seen)
    assert len(rows) == per_epoch * 32 and len(torch.unique(rows, dim=0)) == len(rows)  # no image twice


def test_the_stream_resumes_mid_epoch_from_its_state(folder):
    data = folder_data(folder, memory_mb=0.001, workers=2)
    first = data.stream(torch.Generator().manual_seed(1))
    batches(first, 4)  # mid-epoch (5 batches of 16 in 90 images), with batches decoded ahead
    saved = {k: v.clone() for k, v in first.state().items()}
    expected = batches(first, 6)  # across the epoch's end
    again = data.stream(torch.Generator().manual_seed(99))
    batches(again, 2)
    again.restore(saved)
    assert all(torch.equal(x.x, y.x) for x, y in zip(expected, batches(again, 6), strict=True))


def test_a_bad_file_stops_naming_it_or_is_skipped_and_counted(tmp_path):
    root = make_folder(tmp_path / "f", 40)
    (root / "class0" / "000004.png").write_bytes(b"not a png")
    with pytest.raises(EbmError, match=r"000004\.png.*on_bad_file = \"skip\""):
        batches(folder_data(root, memory_mb=0.001, workers=0).stream(torch.Generator().manual_seed(0)), 3)
    for memory_mb in (0.001, 100.0):  # streamed and in memory
        stream = folder_data(root, memory_mb=memory_mb, workers=0, on_bad_file="skip").stream(
            torch.Generator().manual_seed(0))
        assert all(b.x.shape == (16, 1, 8, 8) for b in batches(stream, 6))
        assert stream.metrics()["data/skipped_files"] >= 1


def _recipe(path, root, **run):
    recipe = {"run": {"seed": 0, "steps": 40, "log_every": 1, "checkpoint_every": 7, "eval_samples": 16, **run},
              "data": {"type": "image_folder", "root": str(root), "size": 8, "batch_size": 16, "memory_mb": 0.001,
                       "on_bad_file": "skip"},
              "energy": {"type": "swish_cnn", "hidden": 8},
              "sampler": {"type": "langevin", "n_steps": 3, "step_size": 1.0, "noise": 0.01},
              "generator": {"type": "uniform", "low": -1.0, "high": 1.0},
              "objective": {"type": "mle"},
              "optim": {"energy": {"type": "adam", "lr": 1e-3}}}
    path.write_text(tomli_w.dumps(recipe))
    return path


#: one thread in every run compared: another thread count sums in another order
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def test_a_run_killed_mid_epoch_resumes_exactly(tmp_path):
    root = make_folder(tmp_path / "f", 100)
    (root / "class1" / "000011.png").write_bytes(b"broken")
    full, resumed = killed_and_resumed(_recipe(tmp_path / "r.toml", root), tmp_path)  # 6 batches an epoch
    assert resumed == full and len(full) == 40
    assert full[-1]["data/skipped_files"] >= 1


def test_two_ranks_train_a_streamed_folder_under_torchrun(tmp_path):
    root = make_folder(tmp_path / "f", 100)
    recipe = _recipe(tmp_path / "r.toml", root, steps=6, checkpoint_every=3)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        "-m", "ebmcore", "run", str(recipe), "--out", str(tmp_path / "run"), "--quiet"],
                       capture_output=True, text=True, timeout=300, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    meta = json.loads((tmp_path / "run" / "checkpoints" / "step-000006.json").read_text())
    assert meta["world_size"] == 2 and len(set(meta["parameter_sha256"])) == 1


RSS_SCRIPT = """
import resource, sys
from ebmcore.kit.streaming import stop_workers
from ebmcore.train.cli import main
code = main(sys.argv[1:])
stop_workers()  # joined: their peak counts among the children's
print("peak", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(code)
"""


@pytest.mark.slow
def test_a_100k_folder_trains_on_two_ranks_in_the_memory_of_10k_and_resumes_after_sigkill(tmp_path):
    """10,000 and 100,000 images of 32×32 (40 and 400 MB as float32, both streamed) train on
    two torchrun ranks in the same memory: each rank's and a decoding worker's peaks within
    10 %; the 100,000-image run, killed mid-epoch, resumes exactly."""
    script = tmp_path / "rss.py"
    script.write_text(RSS_SCRIPT)
    peaks = {}
    for n in (10_000, 100_000):
        root = make_folder(tmp_path / f"f{n}", n, size=32, classes=10)
        recipe = _recipe(tmp_path / f"r{n}.toml", root, steps=30, checkpoint_every=10)
        text = recipe.read_text().replace("size = 8", "size = 32").replace("memory_mb = 0.001", "memory_mb = 16.0")
        recipe.write_text(text)
        r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                            str(script), "run", str(recipe), "--out", str(tmp_path / f"run{n}"), "--quiet"],
                           capture_output=True, text=True, timeout=1800, env=ENV)
        assert r.returncode == 0, r.stderr[-3000:]
        ranks = [[int(v) for v in line.split()[1:]] for line in r.stdout.splitlines() if line.startswith("peak")]
        assert len(ranks) == 2, r.stdout
        peaks[n] = [max(column) for column in zip(*ranks, strict=True)]
        meta = json.loads((tmp_path / f"run{n}" / "checkpoints" / "step-000030.json").read_text())
        assert meta["world_size"] == 2 and len(set(meta["parameter_sha256"])) == 1
    print("peak RSS (KiB) of a rank and of a worker (the larger of the two ranks):", peaks)
    assert min(peaks[10_000]) > 0, peaks  # both peaks measured
    for small, large in zip(peaks[10_000], peaks[100_000], strict=True):
        assert large <= 1.1 * small, peaks
    full, resumed = killed_and_resumed(tmp_path / "r100000.toml", tmp_path, timeout=1200)  # 6,250 batches an epoch
    assert resumed == full and len(full) == 30
