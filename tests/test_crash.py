"""SIGKILL at random moments, mid-checkpoint included: every kill leaves a loadable last
checkpoint, and each --resume continues exactly as the uninterrupted run."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import safetensors.torch
import torch
from support import write_recipe

from ebmcore.train import checkpoint, run_recipe

# the ebm command, with checkpoint.atomic_write able to stop inside a chosen file's write
# (EBM_TEST_STALL="NAME:MODE:MARKER"): "half" writes half of the temporary file, "before"
# nothing; then it touches MARKER and sleeps until it is killed
_STALLING_EBM = r"""
import os, sys, time
from pathlib import Path
from ebmcore.train import checkpoint, run_recipe
name, mode, marker = os.environ["EBM_TEST_STALL"].split(":", 2) if os.environ.get("EBM_TEST_STALL") else ("", "", "")
original = checkpoint.atomic_write
def atomic_write(path, data):
    if path.name == name:
        if mode == "half":
            with open(path.with_name(f".{path.name}.tmp"), "wb") as f:
                f.write(data[: len(data) // 2])
                f.flush()
        Path(marker).touch()
        time.sleep(600)
    return original(path, data)
checkpoint.atomic_write = atomic_write
from ebmcore.train.cli import main
sys.exit(main(sys.argv[1:]))
"""

STEPS, EVERY = 60, 3


def _last_step(path):
    try:
        lines = path.read_text().splitlines()
        return json.loads(lines[-1])["step"] if lines else 0
    except (OSError, ValueError, KeyError):
        return 0


def _metrics(out):
    return [{k: v for k, v in json.loads(x).items() if not k.startswith("time/")}
            for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_sigkill_at_random_moments_then_resume_is_exact(tmp_path, tiny):
    tiny["run"].update(steps=STEPS, log_every=1, checkpoint_every=EVERY, eval_samples=100)
    recipe = write_recipe(tmp_path / "r.toml", tiny)
    full, killed = tmp_path / "full", tmp_path / "killed"
    # the reference run in a subprocess like the others: the same thread count gives the
    # same floating-point reductions, so the comparison below can be exact
    subprocess.run([sys.executable, "-c", _STALLING_EBM, "run", str(recipe), "--out", str(full), "--quiet"],
                   env=dict(os.environ, OMP_NUM_THREADS="1"), check=True, timeout=120,
                   stdout=subprocess.DEVNULL)

    rng = random.Random(20261126)
    # five random moments: a step to reach, then a random delay (often inside a checkpoint write)
    moments = [("random", s, rng.uniform(0, 0.02)) for s in sorted(rng.sample(range(6, STEPS - 4, 9), 5))]
    # and three moments inside a checkpoint write, provoked
    moments += [("stall", f"step-{24:06d}.safetensors:half", 0), ("stall", f"step-{39:06d}.json:before", 0),
                ("stall", f"step-{48:06d}.json:half", 0)]
    moments.sort(key=lambda m: m[1] if m[0] == "random" else int(m[1][5:11]))
    log = []
    for i, (kind, what, delay) in enumerate(moments + [("finish", None, 0)]):
        env = dict(os.environ, OMP_NUM_THREADS="1")
        marker = tmp_path / f"stalled-{i}"
        if kind == "stall":
            # the nominal checkpoint, or the next one still to be written: a fast run can
            # pass several steps between the previous kill's trigger and the kill itself
            name, mode = what.split(":")
            done = checkpoint.steps(killed / "checkpoints")
            step = max(int(name[5:11]), (done[-1] // EVERY + 1) * EVERY if done else EVERY)
            assert step < STEPS, f"moment {i}: the run is too far along to stall a checkpoint"
            what = f"step-{step:06d}{name[11:]}:{mode}"
            env["EBM_TEST_STALL"] = f"{what}:{marker}"
        args = ["run", str(recipe), "--out", str(killed), "--quiet"] + (["--resume"] if i else [])
        proc = subprocess.Popen([sys.executable, "-c", _STALLING_EBM, *args], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if kind == "finish":
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            break
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if kind == "stall" and marker.exists():
                break
            # a record past the target: only this process can have written it (targets are
            # 9 steps apart, the previous process was killed within a step of its own)
            if kind == "random" and _last_step(killed / "metrics.jsonl") >= what:
                time.sleep(delay)
                break
            time.sleep(0.002)
        assert proc.poll() is None, f"moment {i} ({kind} {what}): the run ended first: {proc.stderr.read()}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ckpts = killed / "checkpoints"
        torn = sorted(p.name for p in ckpts.glob(".*.tmp"))
        step, tensors, meta = checkpoint.load_latest(ckpts)  # loadable after any kill
        log.append((kind, what, step, torn))
        # every committed checkpoint is the uninterrupted run's, byte for byte
        for s in checkpoint.steps(ckpts):
            mine = json.loads((ckpts / f"step-{s:06d}.json").read_text())["sha256"]
            theirs = json.loads((full / "checkpoints" / f"step-{s:06d}.json").read_text())["sha256"]
            assert mine == theirs, f"checkpoint {s} after moment {i}"
    print("\n".join(map(str, log)))
    assert sum(1 for *_, torn in log if torn) >= 2  # at least the provoked ones were mid-write
    assert _metrics(killed) == _metrics(full) and len(_metrics(full)) == STEPS
    last = f"step-{STEPS:06d}.safetensors"
    a = safetensors.torch.load_file(full / "checkpoints" / last)
    b = safetensors.torch.load_file(killed / "checkpoints" / last)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_metrics_line_torn_by_a_crash_is_dropped_on_resume(tmp_path, tiny):
    out = tmp_path / "run"
    run_recipe(tiny, out=str(out), progress=False)
    rows = _metrics(out)
    tiny["run"]["steps"] = 40
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 31, "loss/ene')  # a crash in the middle of a record
    run_recipe(tiny, out=str(out), resume=True, progress=False)
    assert _metrics(out)[:len(rows)] == rows and [r["step"] for r in _metrics(out)][-2:] == [35, 40]
