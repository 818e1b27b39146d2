"""The kit's decoded stream: the batches of ``Shuffled`` decoded by worker processes, bad
examples stopped or skipped, and workers that end with their stream — even one collected
as part of a reference cycle, which once left them waiting for ever (and the process's
exit waiting on them)."""

import subprocess
import sys

import pytest
import torch

from ebmcore import Batch, EbmError, Shuffled
from ebmcore.kit.streaming import DecodedStream


class Squares:
    """Example i: a 2 × 2 tensor of i; example ``bad`` does not decode."""

    def __init__(self, n: int, bad: int = -1):
        self.n, self.bad = n, bad

    def __len__(self) -> int:
        return self.n

    def __call__(self, i: int) -> torch.Tensor:
        if i == self.bad:
            raise EbmError(f"example-{i}.bin: not decodable")
        return torch.full((2, 2), float(i))


@pytest.mark.parametrize("workers", [0, 2])
def test_the_batches_are_shuffleds_with_labels_across_epochs(workers):
    labels = torch.arange(30) % 3
    decoded = DecodedStream(Squares(30), labels, batch_size=8, rng=torch.Generator().manual_seed(1), workers=workers)
    plain = Shuffled(Batch(torch.arange(30.0)[:, None, None].expand(30, 2, 2), labels), 8,
                     torch.Generator().manual_seed(1))
    for _ in range(10):  # three epochs and more
        a, b = decoded.next(), plain.next()
        assert torch.equal(a.x, b.x) and torch.equal(a.cond, b.cond)


def test_a_bad_example_stops_with_the_hint_or_is_skipped_and_counted():
    def stream(**keys):
        return DecodedStream(Squares(16, bad=5), None, batch_size=16, rng=torch.Generator().manual_seed(0),
                             workers=0, skip_hint="fix or remove it", **keys)
    with pytest.raises(EbmError, match=r"^example-5\.bin: not decodable \(fix or remove it\)$"):
        stream().next()
    skipping = stream(skip_bad=True, skipped=2)  # two left out when the set was listed
    batch = skipping.next()
    assert batch.x.shape == (16, 2, 2) and 5.0 not in batch.x
    assert skipping.metrics() == {"data/skipped_files": 3.0}


CYCLE = """
import gc, multiprocessing, sys, torch
sys.path.insert(0, sys.argv[1])
from test_decoded_stream import Squares
from ebmcore.kit.streaming import DecodedStream
stream = DecodedStream(Squares(40), None, batch_size=4, rng=torch.Generator().manual_seed(0), workers=2)
stream.next()
cycle = [stream]
cycle.append(cycle)  # as a run holds its stream
del stream, cycle
gc.collect()
print("children", len(multiprocessing.active_children()))
"""


def test_workers_end_with_a_stream_collected_in_a_reference_cycle(tmp_path):
    import pathlib
    r = subprocess.run([sys.executable, "-c", CYCLE, str(pathlib.Path(__file__).parent)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["children", "0"]  # joined when collected, and the process exited
