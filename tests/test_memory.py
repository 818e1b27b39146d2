"""Flat memory: a 2,000-step sampling chain and a long training run peak no higher than
short ones (no graph kept across steps, no history kept by default, bounded buffers).
benchmarks/memory.py measures the same in separate processes."""

import json
import subprocess
import sys

from support import ROOT

_SCRIPT = r"""
import copy, json, resource, sys, tempfile
import torch
import ebmcore
from ebmcore import hookimpl
from ebmcore.train import run_recipe
from ebmcore.plugins import PluginHost
sys.path.insert(0, sys.argv[1])
from support import TINY

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

out = {}
energy = ebmcore.BuildContext(event_shape=(2,)).build("energy", "mlp", hidden=[32, 32])
sampler = ebmcore.build("sampler", "langevin", step_size=0.01, n_steps=10)
for n in (200, 2000):
    rng = torch.Generator().manual_seed(0)
    sampler.run(torch.randn(256, 2, generator=rng), energy, n, rng=rng)
    out[f"sampling/{n}"] = peak()

class Peaks:
    __name__ = "peaks"
    @hookimpl
    def ebm_step_end(self, run, step, metrics):
        if step in (200, run.recipe.run.steps):
            out[f"training/{step}"] = peak()

recipe = copy.deepcopy(TINY)
recipe["run"].update(steps=1000, log_every=100, checkpoint_every=500, eval_samples=50)
recipe["sampler"]["n_steps"] = 1
with tempfile.TemporaryDirectory() as tmp:
    run_recipe(recipe, out=tmp + "/run", host=PluginHost(plugins=[Peaks()]), progress=False)
print(json.dumps(out))
"""


def test_peak_memory_of_long_runs_is_that_of_short_ones():
    r = subprocess.run([sys.executable, "-c", _SCRIPT, str(ROOT / "tests")], capture_output=True, text=True,
                       timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    peaks = json.loads(r.stdout)
    print(peaks)
    assert peaks["sampling/2000"] < 1.1 * peaks["sampling/200"]
    assert peaks["training/1000"] < 1.1 * peaks["training/200"]
    # and in absolute terms: well under what one kept graph per step would cost
    assert peaks["sampling/2000"] - peaks["sampling/200"] < 10
    assert peaks["training/1000"] - peaks["training/200"] < 10
