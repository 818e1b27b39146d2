"""The data contract's second form: a data set that streams its batches (no in-memory
training set) trains, and resumes exactly, because its stream checkpoints its position."""

import json

import attrs
import pytest
import torch

from ebmcore import Batch, Component, Data, EbmError, PluginHost, Stream, hookimpl
from ebmcore.train import run_recipe


class RingStream(Stream):
    """Points on a noisy ring, drawn batch by batch from the stream's own generator."""

    def __init__(self, batch_size: int, rng: torch.Generator):
        self.batch_size, self.rng, self.served = batch_size, rng, 0

    def next(self) -> Batch:
        angle = torch.rand(self.batch_size, generator=self.rng) * 2 * torch.pi
        radius = 2 + 0.1 * torch.randn(self.batch_size, generator=self.rng)
        self.served += 1
        return Batch(torch.stack([radius * angle.cos(), radius * angle.sin()], 1))

    def state(self):
        return {"rng/data": self.rng.get_state(), "data/served": torch.tensor(self.served)}

    def restore(self, tensors):
        self.rng.set_state(tensors["rng/data"])
        self.served = int(tensors["data/served"])


@attrs.frozen
class RingConfig:
    """Points on a ring, streamed."""

    batch_size: int = 32


class Ring(Data):
    event_shape = (2,)

    def __init__(self, batch_size: int):
        self.batch_size = batch_size

    def stream(self, rng, *, rank=0, world=1):
        return RingStream(self.batch_size, rng)

    def save_samples(self, x, path):
        path.write_bytes(b"")


class RingPlugin:
    __name__ = "ring_stream"

    @hookimpl
    def ebm_components(self):
        return [Component("data", "ring_stream", RingConfig, lambda c, ctx: Ring(c.batch_size))]


RECIPE = {
    "run": {"seed": 0, "steps": 12, "log_every": 2, "checkpoint_every": 4, "eval_samples": 50},
    "data": {"type": "ring_stream"},
    "energy": {"type": "mlp", "hidden": [16]},
    "sampler": {"type": "langevin", "n_steps": 5, "step_size": 0.01},
    "generator": {"type": "uniform", "low": -3.0, "high": 3.0},
    "objective": {"type": "mle"},
}


def test_a_streamed_data_set_trains_and_resumes_exactly(tmp_path):
    host = PluginHost(plugins=[RingPlugin()])
    full = run_recipe(RECIPE, out=str(tmp_path / "full"), host=host, progress=False)
    run_recipe({**RECIPE, "run": {**RECIPE["run"], "steps": 8}}, out=str(tmp_path / "part"), host=host,
               progress=False)
    resumed = run_recipe(RECIPE, out=str(tmp_path / "part"), host=host, resume=True, progress=False)
    drop = ("time/elapsed_s",)
    assert {k: v for k, v in resumed.items() if k not in drop} == {k: v for k, v in full.items() if k not in drop}
    records = [json.loads(line) for line in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6, 8, 10, 12]


def test_a_component_that_needs_the_training_set_in_memory_says_so():
    with pytest.raises(EbmError, match="Ring streams its data: it has no in-memory training set"):
        Ring(8).dataset()

