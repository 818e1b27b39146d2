"""Helpers shared by the tests (importable: pytest puts tests/ on sys.path)."""

import os
import subprocess
import sys
from pathlib import Path

import tomli_w

ROOT = Path(__file__).resolve().parents[1]

# A small, fast toy recipe (seconds to run); tests change what they need.
TINY = {
    "run": {"seed": 0, "steps": 30, "log_every": 5, "checkpoint_every": 10, "eval_samples": 200},
    "data": {"type": "toy2d", "name": "eight_gaussians", "batch_size": 64, "n_train": 2000, "n_test": 500},
    "energy": {"type": "mlp", "hidden": [32, 32]},
    "sampler": {"type": "langevin", "n_steps": 10, "step_size": 0.01},
    "generator": {"type": "replay_buffer", "size": 1000, "low": -3.0, "high": 3.0},
    "objective": {"type": "mle", "alpha": 0.1},
    "optim": {"energy": {"type": "adam", "lr": 1e-3, "betas": [0.0, 0.999]}},
}

# A tiny stconvnet recipe on moving digits (a second per step): a run with clips to read back
TINY_CLIPS = {
    "run": {"seed": 0, "steps": 2, "eval_samples": 2},
    "data": {"type": "moving_digits", "n": 6, "heldout": 3, "size": 12, "digit": 6, "clip": 4, "batch_size": 3},
    "energy": {"type": "stconvnet", "channels": [2], "kernels": [[3, 3, 3]], "strides": [[1, 2, 2]]},
    "sampler": {"type": "langevin", "n_steps": 1}, "generator": {"type": "uniform"},
    "objective": {"type": "mle"},
}


def write_recipe(path: Path, data: dict) -> Path:
    path.write_text(tomli_w.dumps(data))
    return path


def ebm(*args, env: dict | None = None, cwd=None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the ebm command line in a subprocess, as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "ebmcore", *map(str, args)], capture_output=True,
                          text=True, env=full_env, cwd=cwd, timeout=timeout)


def records(out: Path) -> list[dict]:
    """A run's metrics records without their timings."""
    import json
    return [{k: v for k, v in json.loads(line).items() if not k.startswith("time/")}
            for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def killed_and_resumed(recipe: Path, tmp_path: Path, *, timeout: float = 600,
                       after_kill=None) -> tuple[list[dict], list[dict]]:
    """The records of ``recipe`` run through, and of the same run SIGKILLed at (or just after)
    its first checkpoint, then resumed; both on one torch thread (another thread count sums
    in another order). ``after_kill(run_dir)`` looks at the killed run before the resume."""
    import signal
    import time

    env = {"OMP_NUM_THREADS": "1"}
    full, killed = tmp_path / "full", tmp_path / "killed"
    r = ebm("run", recipe, "--out", full, "--quiet", env=env, timeout=timeout)
    assert r.returncode == 0, r.stderr
    proc = subprocess.Popen([sys.executable, "-m", "ebmcore", "run", str(recipe), "--out", str(killed), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **env})
    deadline = time.monotonic() + timeout
    while not list((killed / "checkpoints").glob("step-*.json")) and time.monotonic() < deadline:
        time.sleep(0.005)
    still_running = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert still_running, "the run ended before the kill: make it longer"
    if after_kill is not None:
        after_kill(killed)
    r = ebm("run", recipe, "--out", killed, "--resume", "--quiet", env=env, timeout=timeout)
    assert r.returncode == 0, r.stderr
    return records(full), records(killed)
