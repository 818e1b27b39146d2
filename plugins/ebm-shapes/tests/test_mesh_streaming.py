"""A mesh set whose grids exceed ``memory_mb`` streams: the meshes read and voxelised batch by
batch, the same shapes (and rotations) as in memory, bad files stopped or skipped and
counted, and a run that trains and resumes on it."""

import pytest
import torch
from ebm_shapes.data import MeshVoxels, StreamedMeshes
from ebm_shapes.points import StreamedClouds

from ebmcore import EbmError
from ebmcore.build import build

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def folder(mesh_folder):
    return mesh_folder(copies=3, segments=10)


def meshes(root, **keys):
    return build("data", "meshes", path=str(root), res=8, heldout=0.2, batch_size=4, **keys)


def test_a_streamed_mesh_set_gives_the_shapes_and_batches_the_set_in_memory_gives(folder):
    memory = meshes(folder, rotations=2)
    streamed = meshes(folder, rotations=2, memory_mb=0.01, workers=0)
    assert isinstance(streamed, StreamedMeshes) and not isinstance(memory, StreamedMeshes)
    x = memory.dataset().x
    assert isinstance(streamed.meshes, MeshVoxels) and len(streamed.meshes) == len(x) == 24
    assert all(torch.equal(streamed.meshes(i), x[i]) for i in range(len(x)))  # rotations included
    with pytest.raises(EbmError, match="streams its data"):
        streamed.dataset()
    # the metrics' shapes: spaced evenly, within a quarter of memory_mb (0.01 MB / 4 / 2 KiB: one)
    # but at least two (a Gaussian fits them)
    held = memory.heldout().x.flatten(1)
    assert len(streamed.heldout().x) == 2 and torch.equal(streamed.heldout().x[0], memory.heldout().x[0])
    assert all((held == row).all(1).any() for row in streamed.heldout().x.flatten(1))
    for workers in (0, 2):
        a, b = (d.stream(torch.Generator().manual_seed(2)) for d in
                (memory, meshes(folder, rotations=2, memory_mb=0.01, workers=workers)))
        for _ in range(13):  # past two epochs of 6 batches
            assert torch.equal(a.next().x, b.next().x)


def test_a_bad_mesh_stops_naming_it_or_is_skipped_and_counted(folder):
    (folder / "07-broken.off").write_bytes(b"OFF\n4 2 0\n0 0 0\n")
    for memory_mb in (0.01, 100.0):  # streamed and in memory
        with pytest.raises(EbmError, match=r'07-broken\.off.*data\.on_bad_file = "skip"'):
            meshes(folder, memory_mb=memory_mb, workers=0)
        data = meshes(folder, memory_mb=memory_mb, workers=0, on_bad_file="skip")
        stream = data.stream(torch.Generator().manual_seed(0))
        assert stream.next().x.shape == (4, 1, 8, 8, 8) and stream.metrics() == {"data/skipped_files": 1.0}


def test_a_mesh_broken_after_it_was_listed_is_skipped_while_streaming(folder):
    data = meshes(folder, memory_mb=0.01, workers=0, on_bad_file="skip")
    for path in folder.iterdir():
        path.write_bytes(b"OFF\n4 2 0\n0 0 0\n")  # every mesh broken once training has begun
    stream = data.stream(torch.Generator().manual_seed(0))
    with pytest.raises(EbmError, match="no example of a batch decodes: .*off"):
        stream.next()


def test_a_run_on_a_streamed_mesh_set_resumes_exactly(folder, tmp_path):
    import json

    from ebmcore.train import run_recipe
    recipe = {"run": {"seed": 0, "steps": 8, "log_every": 1, "checkpoint_every": 3, "eval_every": 0,
                      "sample_every": 0, "eval_samples": 4},
              "data": {"type": "meshes", "path": str(folder), "res": 8, "batch_size": 4, "memory_mb": 0.01,
                       "workers": 1, "rotations": 2},
              "energy": {"type": "voxelnet", "channels": [4, 4], "kernels": [3, 3], "strides": [2, 2]},
              "sampler": {"type": "langevin", "n_steps": 2, "step_size": 0.1, "noise": 0.01},
              "generator": {"type": "uniform", "low": -1.0, "high": 1.0},
              "objective": {"type": "mle"},
              "optim": {"energy": {"type": "adam", "lr": 1e-3}}}
    run_recipe(recipe, out=str(tmp_path / "full"), progress=False)
    run_recipe({**recipe, "run": {**recipe["run"], "steps": 5}}, out=str(tmp_path / "resumed"), progress=False)
    run_recipe(recipe, out=str(tmp_path / "resumed"), resume=True, progress=False)  # from step 5: mid-epoch

    def trained(run):  # the records after the resume (the half run's last one holds its final scores)
        return [{k: v for k, v in json.loads(line).items() if not k.startswith("time/")}
                for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()][5:]
    assert trained("resumed") == trained("full") and len(trained("full")) == 3


def test_clouds_of_mesh_files_beyond_memory_stream_the_clouds_drawn_in_memory(folder):
    def clouds(**keys):
        return build("data", "pointclouds", path=str(folder), points=16, n=12, heldout=4, batch_size=4, **keys)
    memory, streamed = clouds(), clouds(memory_mb=0.0005, workers=0)
    assert isinstance(streamed, StreamedClouds) and not isinstance(memory, StreamedClouds)
    x = memory.dataset().x
    assert len(streamed.clouds) == len(x) and all(torch.equal(streamed.clouds(i), x[i]) for i in range(len(x)))
    a, b = (d.stream(torch.Generator().manual_seed(1)) for d in (memory, clouds(memory_mb=0.0005, workers=2)))
    for _ in range(7):  # past two epochs of 3 batches
        assert torch.equal(a.next().x, b.next().x)
    assert set(streamed.evaluate(streamed.heldout().x)) == set(memory.evaluate(memory.heldout().x))
