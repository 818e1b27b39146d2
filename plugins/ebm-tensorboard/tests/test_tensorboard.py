"""The TensorBoard observer: event files that read back as the run's records and pictures."""

import copy
import json

from support import TINY
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ebmcore.train import run_recipe


def _read(out):
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def test_scalars_and_sample_grids_read_back_and_resume_continues(tmp_path):
    recipe = copy.deepcopy(TINY)
    recipe["run"].update(steps=20, sample_every=10)
    out = tmp_path / "run"
    run_recipe(recipe, out=str(out), progress=False)
    acc = _read(out)
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    loss = acc.Scalars("loss/energy")
    assert [e.step for e in loss] == [r["step"] for r in records] == [5, 10, 15, 20]
    assert all(abs(e.value - r["loss/energy"]) < 1e-6 for e, r in zip(loss, records))  # float32
    assert [e.step for e in acc.Scalars("mmd2")] == [20]
    tags = acc.Tags()["images"]
    assert {"samples", "final/samples", "final/density"} <= set(tags)
    grids = acc.Images("samples")
    assert [g.step for g in grids] == [10, 20] and grids[0].width > 50 and grids[0].height > 50
    assert grids[0].encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n"

    recipe["run"]["steps"] = 30
    run_recipe(recipe, out=str(out), resume=True, progress=False)
    acc = _read(out)
    assert [e.step for e in acc.Scalars("loss/energy")] == [5, 10, 15, 20, 25, 30]
    assert [g.step for g in acc.Images("samples")] == [10, 20, 30]


def test_switched_off_by_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("EBM_TENSORBOARD", "0")
    recipe = copy.deepcopy(TINY)
    recipe["run"].update(steps=5)
    run_recipe(recipe, out=str(tmp_path / "run"), progress=False)
    assert not (tmp_path / "run" / "tensorboard").exists()
