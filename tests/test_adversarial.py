"""The adversarial suite: a careless or hostile user against the run directory, the
checkpoints, the end of a run and the command line. Every case ends in one `error:` line
naming the file or key, a non-zero exit, no traceback, and nothing lost (docs/reliability.md)."""

import hashlib
import io
import json
import os
import pickle
import resource
import shutil
import signal
import subprocess
import sys
import time

import attrs
import pytest
import safetensors.torch
import torch
from support import TINY, ebm, write_recipe

import ebmcore
from ebmcore import Task
from ebmcore.errors import CheckpointError
from ebmcore.plugins import HookTimeout, PluginHost
from ebmcore.train import checkpoint, run_recipe
from ebmcore.train.cli import main
from ebmcore.train.lock import RunLock


def cli(capsys, *args) -> tuple[int, str]:
    """``ebm ARGS`` in this process: the exit status and stderr (which never holds a traceback)."""
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 30-step run (checkpoints at 10, 20, 30) and its recipe."""
    d = tmp_path_factory.mktemp("adversarial")
    recipe = write_recipe(d / "tiny.toml", TINY)
    assert main(["run", str(recipe), "--out", str(d / "run"), "--quiet"]) == 0
    return recipe, d / "run"


@pytest.fixture
def run_dir(finished, tmp_path):
    """A copy of the finished run to attack."""
    shutil.copytree(finished[1], tmp_path / "b", symlinks=True)
    return finished[0], tmp_path / "b"


def rewrite(run, step: int, edit_tensors=None, edit_sidecar=None) -> None:
    """Edit a checkpoint as an attacker who knows the format would: the hash recomputed."""
    stem = run / "checkpoints" / f"step-{step:06d}"
    tensors = safetensors.torch.load_file(stem.with_suffix(".safetensors"))
    sidecar = json.loads(stem.with_suffix(".json").read_text())
    if edit_tensors:
        edit_tensors(tensors)
    if edit_sidecar:
        edit_sidecar(sidecar)
    blob = safetensors.torch.save(tensors)
    stem.with_suffix(".safetensors").write_bytes(blob)
    sidecar["sha256"] = checkpoint._digest(blob, sidecar)
    stem.with_suffix(".json").write_text(json.dumps(sidecar))


# -- checkpoints that load or say why ---------------------------------------------------------

@pytest.mark.parametrize("header", [640, 896, 1152, 1408])
def test_safetensors_headers_that_start_like_pickles_load(tmp_path, header):
    for extra in range(header):
        tensors = {"w" * (1 + extra): torch.arange(3.0)}
        blob = safetensors.torch.save(tensors)
        if int.from_bytes(blob[:8], "little") == header:
            break
    else:
        pytest.fail(f"no header of {header} bytes")
    assert blob[0] == 0x80 and blob[1] == header >> 8  # the marker of pickle protocol 2..5
    checkpoint.save(tmp_path, 7, tensors, {"optim": {}})
    loaded, _ = checkpoint.load(tmp_path, 7)
    assert torch.equal(*loaded.values(), *tensors.values())


def _global_p0():
    return pickle.dumps(len, protocol=0)  # b"cbuiltins\nlen\n..." : first byte c


@pytest.mark.parametrize("make, first", [
    (lambda: pickle.dumps({"w": [1.0]}, protocol=0), b"("), (lambda: pickle.dumps({"w": 1}, protocol=1), b"}"),
    (lambda: pickle.dumps([1.0], protocol=1), b"]"), (_global_p0, b"c"),
    *[(lambda p=p: pickle.dumps({"w": [1.0]}, protocol=p), bytes([0x80])) for p in (2, 3, 4, 5)],
    (lambda: (torch.save({"w": torch.ones(2)}, buf := io.BytesIO()), buf.getvalue())[1], b"PK")])
def test_real_pickles_are_refused_even_under_a_checkpoint_name_with_a_matching_hash(tmp_path, make, first):
    blob = make()
    assert blob.startswith(first)
    (tmp_path / "step-000005.safetensors").write_bytes(blob)
    sidecar = {"format": 2, "step": 5, "optim": {}}
    sidecar["sha256"] = checkpoint._digest(blob, sidecar)
    (tmp_path / "step-000005.json").write_text(json.dumps(sidecar))
    with pytest.raises(CheckpointError, match="step-000005.safetensors: this is a (pickle|zip)"):
        checkpoint.load(tmp_path, 5)


def test_format_1_checkpoints_still_load(run_dir):
    _, run = run_dir
    stem = run / "checkpoints" / "step-000030"
    sidecar = json.loads(stem.with_suffix(".json").read_text())
    sidecar.update(format=1, sha256=hashlib.sha256(stem.with_suffix(".safetensors").read_bytes()).hexdigest())
    stem.with_suffix(".json").write_text(json.dumps(sidecar))
    tensors, meta = checkpoint.load(run / "checkpoints", 30)
    assert meta["format"] == 1 and "rng/train" in tensors


def _drop(key):
    return lambda d: d.pop(key)


@pytest.mark.parametrize("edit, message", [
    (lambda p: p.write_text(p.read_text().replace('"optim"', '"optimm"')), "'optim' is missing"),
    (lambda p: p.write_text("[1, 2]"), "a JSON list, not an object"),
    (lambda p: p.write_text("[" * 100_000 + "]" * 100_000), "not JSON"),
    (lambda p: p.write_text(p.read_text().replace('"lr": 0.001', '"lr": 5.0')), "do not match the hash"),
    (lambda p: p.write_bytes(b"\xff\xfe"), "not JSON"),
])
def test_a_damaged_sidecar_is_refused_naming_it(capsys, run_dir, edit, message):
    _, run = run_dir
    edit(run / "checkpoints" / "step-000030.json")
    code, err = cli(capsys, "sample", run, "-n", 4)
    assert code == 2 and "error: " in err and "step-000030" in err and message in err, err


@pytest.mark.parametrize("edit_tensors, edit_sidecar, message", [
    (None, lambda d: d["optim"]["energy"]["param_groups"][0].update(lr=5.0), "lr is 5.0 in the checkpoint"),
    (None, lambda d: d["optim"]["energy"]["param_groups"][0].update(betas=None), "damaged checkpoint"),
    (None, lambda d: d.update(optim=[]), "'optim' is a JSON list"),
    (_drop("rng/torch"), None, "incomplete checkpoint: no 'rng/torch'"),
    (lambda t: t.update({"rng/train": torch.zeros(5)}), None, "damaged checkpoint"),
    (lambda t: t.update({"data/perm": t["data/perm"] + 10**6}), None, "data/perm is not an order"),
])
def test_a_checkpoint_edited_with_its_hash_recomputed_is_refused(capsys, run_dir, edit_tensors, edit_sidecar,
                                                                 message):
    recipe, run = run_dir
    originals = {p: p.read_bytes() for p in (run / "checkpoints").glob("step-000030.*")}
    rewrite(run, 30, edit_tensors, edit_sidecar)
    code, err = cli(capsys, "run", recipe, "--out", run, "--resume", "--set", "run.steps=35", "--quiet")
    assert code == 2 and "step-000030" in err and message in err, err
    for p, data in originals.items():  # the untouched checkpoint still resumes
        p.write_bytes(data)
    assert cli(capsys, "run", recipe, "--out", run, "--resume", "--set", "run.steps=35", "--quiet")[0] == 0


def test_devices_and_fifos_in_a_checkpoint_folder_are_refused_without_reading(run_dir):
    _, run = run_dir
    ckpts = run / "checkpoints"
    sidecar = json.loads((ckpts / "step-000030.json").read_text())
    (ckpts / "step-000040.json").write_text(json.dumps({**sidecar, "step": 40}))
    (ckpts / "step-000040.safetensors").symlink_to("/dev/zero")
    r = ebm("sample", run, timeout=60)
    assert r.returncode == 2 and "step-000040.safetensors: a device, not a regular file" in r.stderr
    (ckpts / "step-000040.json").unlink()
    os.mkfifo(ckpts / "step-000040.json")
    r = ebm("sample", run, timeout=60)  # a FIFO would block a plain open() forever
    assert r.returncode == 2 and "step-000040.json: a FIFO, not a regular file" in r.stderr


# -- the run directory belongs to its run ------------------------------------------------------

def test_a_symlink_planted_at_any_temporary_or_output_path_is_never_written_through(capsys, run_dir, tmp_path):
    recipe, run = run_dir
    victim = tmp_path / "victim"
    victim.write_text("keep")
    planted = [run / "checkpoints" / ".step-000035.safetensors.tmp", run / "checkpoints" / ".step-000035.json.tmp",
               run / ".metrics.jsonl.tmp", run / "metrics.jsonl", run / "samples.png", run / "samples.safetensors",
               run / "density.png", run / "sample.png", run / "sample.safetensors"]
    shutil.copy(run / "metrics.jsonl", tmp_path / "metrics.jsonl")
    for p in planted:
        p.unlink(missing_ok=True)
        p.symlink_to(victim)
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(tmp_path / "metrics.jsonl")
    assert cli(capsys, "run", recipe, "--out", run, "--resume", "--set", "run.steps=35", "--quiet")[0] == 0
    assert cli(capsys, "sample", run, "-n", 8)[0] == 0
    assert victim.read_text() == "keep"
    assert not list(run.rglob(".*.tmp*")), "leftover temporaries are removed on the next start"
    assert not (run / "samples.png").is_symlink() and (run / "samples.png").stat().st_size > 0


def test_outputs_of_sample_and_eval_never_go_into_checkpoints_or_onto_files(capsys, run_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ebm_adversarial_task", Observer())
    _, run = run_dir
    before = (run / "checkpoints" / "step-000030.safetensors").read_bytes()
    code, err = cli(capsys, "sample", run, "--out", run / "checkpoints" / "step-000030.png")
    assert code == 2 and "inside the run's checkpoints/ folder" in err
    assert (run / "checkpoints" / "step-000030.safetensors").read_bytes() == before
    code, err = cli(capsys, "sample", run, "--out", tmp_path)
    assert code == 2 and "a directory; give the picture's file name" in err
    (tmp_path / "file").write_text("x")
    code, err = cli(capsys, "-p", "ebm_adversarial_task", "eval", run, "--out", tmp_path / "file",
                    "--set", "tasks.c.type=count")
    assert code == 2 and f"error: --out {tmp_path / 'file'}: a file, not a directory" in err, err
    assert cli(capsys, "-p", "ebm_adversarial_task", "eval", run, "--out", tmp_path / "tasks",
               "--set", "tasks.c.type=count")[0] == 0
    assert json.loads((tmp_path / "tasks" / "tasks.json").read_text()) == {"c": {"ran": 1.0}}


def test_a_locked_run_directory_refuses_a_second_writer_naming_the_holder(capsys, run_dir):
    recipe, run = run_dir
    lock = RunLock(run)
    lock.acquire()
    try:
        code, err = cli(capsys, "run", recipe, "--out", run, "--resume", "--set", "run.steps=35", "--quiet")
        assert code == 2 and f"in use by another ebm process (PID {os.getpid()})" in err
        assert cli(capsys, "sample", run, "-n", 4)[0] == 0  # readers never take the lock
    finally:
        lock.release()
    assert cli(capsys, "run", recipe, "--out", run, "--resume", "--set", "run.steps=35", "--quiet")[0] == 0


def test_two_runs_into_one_directory_the_second_is_refused_and_a_killed_run_resumes_at_once(tmp_path):
    recipe = write_recipe(tmp_path / "r.toml", {**TINY, "run": {**TINY["run"], "steps": 100_000}})
    first = subprocess.Popen([sys.executable, "-m", "ebmcore", "run", str(recipe), "--out", str(tmp_path / "d"),
                              "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "d" / "checkpoints" / "step-000010.json").exists():
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.2)
        for extra in ([], ["--resume"]):
            r = ebm("run", recipe, "--out", tmp_path / "d", "--quiet", *extra)
            assert r.returncode == 2 and f"in use by another ebm process (PID {first.pid})" in r.stderr
    finally:
        first.kill()
        first.wait()
    end = checkpoint.steps(tmp_path / "d" / "checkpoints")[-1] + 5
    r = ebm("run", recipe, "--out", tmp_path / "d", "--resume", "--set", f"run.steps={end}", "--quiet")
    assert r.returncode == 0, r.stderr  # the kernel released the dead run's lock
    steps = [json.loads(line)["step"] for line in (tmp_path / "d" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == end
    r = ebm("run", recipe, "--out", tmp_path / "d", "--resume", "--set", f"run.steps={end - 5}", "--quiet")
    assert r.returncode == 2 and f"the run is at step {end}, past run.steps = {end - 5}" in r.stderr


@pytest.mark.parametrize("spelling", ["absolute", "trailing slash", "moved"])
def test_resume_accepts_the_same_directory_however_it_is_named(capsys, run_dir, tmp_path, spelling):
    recipe, run = run_dir
    if spelling == "moved":
        run = run.rename(tmp_path / "elsewhere")
    out = {"absolute": str(run.resolve()), "trailing slash": f"{run}/", "moved": str(run)}[spelling]
    assert cli(capsys, "run", recipe, "--out", out, "--resume", "--set", "run.steps=32", "--quiet")[0] == 0


@pytest.mark.parametrize("out, message", [
    ("file", "not a directory"), ("/dev/null", "not a directory"), ("file/sub", "cannot create the run directory"),
    ("/proc/ebm-run", "cannot create the run directory"), ("a" * 300, "cannot create the run directory")])
def test_a_run_directory_that_cannot_be_one_is_named(capsys, tmp_path, monkeypatch, out, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("x")
    code, err = cli(capsys, "run", write_recipe(tmp_path / "r.toml", TINY), "--out", out, "--quiet")
    assert code == 2 and f"error: {out}: {message}" in err, err


def test_an_output_path_is_never_reparsed_as_toml(capsys, tmp_path):
    recipe, out = write_recipe(tmp_path / "r.toml", TINY), tmp_path / 'runs/😀"x\\'
    code, err = cli(capsys, "run", recipe, "--out", out, "--set", "run.steps=two")
    assert code == 2 and "$.run.steps" in err and "run.out" not in err, err
    assert cli(capsys, "run", recipe, "--out", out, "--set", "run.steps=2", "--quiet")[0] == 0
    assert (out / "checkpoints" / "step-000002.json").is_file()


# -- nothing lost at the end of a run -----------------------------------------------------------

def test_a_crash_in_the_final_evaluation_keeps_the_final_checkpoint_and_resume_finishes(capsys, tmp_path):
    recipe = write_recipe(tmp_path / "r.toml", TINY)
    code, err = cli(capsys, "run", recipe, "--out", tmp_path / "e", "--set", "run.steps=3",
                    "--set", "run.eval_samples=1", "--quiet")
    assert code == 1 and "error: in plugin 'ebm-toy'" in err, err
    assert checkpoint.steps(tmp_path / "e" / "checkpoints") == [3]
    code, err = cli(capsys, "run", recipe, "--out", tmp_path / "e", "--set", "run.steps=3", "--resume", "--quiet")
    assert code == 0, err  # eval_samples may change on resume
    last = json.loads((tmp_path / "e" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 3 and "mmd2" in last


@attrs.frozen
class CountConfig:
    pass


class Count(Task):
    """A task that records that it ran."""

    runs = 0
    #: called while the task runs (a test's way in)
    during = None

    def run(self, objective, data, *, rng, out):
        if Count.during:
            Count.during()
        Count.runs += 1
        return {"ran": 1.0}


class Observer:
    """A plugin object: a task, and hooks that act at chosen moments."""

    def __init__(self, **actions):
        self.actions = actions

    @ebmcore.hookimpl
    def ebm_components(self):
        return [ebmcore.Component("task", "count", CountConfig, lambda config, ctx: Count())]

    @ebmcore.hookimpl
    def ebm_step_end(self, step):
        if "step" in self.actions:
            self.actions["step"](step)

    @ebmcore.hookimpl
    def ebm_picture(self, tag):
        if "picture" in self.actions:
            self.actions["picture"](tag)

    @ebmcore.hookimpl
    def ebm_log(self, step):
        if "log" in self.actions:
            self.actions["log"](step)


def _recipe(**run):
    return {**TINY, "run": {**TINY["run"], **run}, "tasks": {"count": {"type": "count"}}}


def _signal(signum, times=1):
    def send(*_):
        for _ in range(times):
            os.kill(os.getpid(), signum)
            time.sleep(0.01)  # the handler runs between bytecodes
    return send


def test_two_signals_in_the_final_evaluation_still_leave_the_final_checkpoint(tmp_path):
    host = PluginHost(plugins=[Observer(picture=lambda tag: tag == "final/samples" and _signal(signal.SIGTERM, 2)())])
    with pytest.raises(KeyboardInterrupt):
        run_recipe(_recipe(checkpoint_every=0), out=tmp_path / "r", host=host, progress=False)
    assert checkpoint.steps(tmp_path / "r" / "checkpoints") == [30]
    Count.runs = 0
    record = run_recipe(_recipe(checkpoint_every=0), out=tmp_path / "r", resume=True,
                        host=PluginHost(plugins=[Observer()]), progress=False)
    assert record["step"] == 30 and record["count/ran"] == 1.0 and "mmd2" in record and Count.runs == 1


def test_a_signal_after_the_final_checkpoint_stops_before_the_tasks_and_resume_runs_only_them(tmp_path):
    from ebmcore.errors import Interrupted

    host = PluginHost(plugins=[Observer(log=lambda step: step == 30 and _signal(signal.SIGTERM)())])
    Count.runs = 0
    with pytest.raises(Interrupted, match="the tasks did not run; --resume runs them"):
        run_recipe(_recipe(), out=tmp_path / "r", host=host, progress=False)
    assert Count.runs == 0 and not (tmp_path / "r" / "tasks.json").exists()
    lines = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    record = run_recipe(_recipe(), out=tmp_path / "r", resume=True, host=PluginHost(plugins=[Observer()]),
                        progress=False)
    assert Count.runs == 1 and json.loads((tmp_path / "r" / "tasks.json").read_text()) == {"count": {"ran": 1.0}}
    after = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    assert after[:-1] == lines[:-1] and len(after) == len(lines) and record["count/ran"] == 1.0


def test_a_signal_during_the_tasks_stops_them_at_once_and_resume_runs_them(tmp_path, monkeypatch):
    from ebmcore.errors import Interrupted

    monkeypatch.setattr(Count, "during", _signal(signal.SIGTERM))
    with pytest.raises(Interrupted, match="SIGTERM during the tasks, after the final checkpoint"):
        run_recipe(_recipe(), out=tmp_path / "r", host=PluginHost(plugins=[Observer()]), progress=False)
    assert not (tmp_path / "r" / "tasks.json").exists()
    monkeypatch.setattr(Count, "during", None)
    record = run_recipe(_recipe(), out=tmp_path / "r", resume=True, host=PluginHost(plugins=[Observer()]),
                        progress=False)
    assert record["count/ran"] == 1.0 and (tmp_path / "r" / "tasks.json").is_file()


def test_sighup_checkpoints_the_last_step_like_sigterm(tmp_path):
    from ebmcore.errors import Interrupted

    host = PluginHost(plugins=[Observer(step=lambda step: step == 13 and _signal(signal.SIGHUP)())])
    with pytest.raises(Interrupted) as stopped:
        run_recipe(_recipe(), out=tmp_path / "r", host=host, progress=False)
    assert stopped.value.signum == signal.SIGHUP
    # noted after step 13's reduction, so acted on at the end of step 14, the last completed one
    assert checkpoint.steps(tmp_path / "r" / "checkpoints")[-1] == 14


def test_a_hook_that_hangs_is_stopped_by_the_time_limit_and_the_run_checkpoints(tmp_path):
    def hang(step):
        while step == 12:
            try:
                time.sleep(10)
            except Exception:  # a hook that swallows errors cannot swallow the time limit
                pass

    host = PluginHost(plugins=[Observer(step=hang)])
    with pytest.raises(HookTimeout, match=r"did not return from ebm_step_end within 0.5 s .* stopped at step 12"):
        run_recipe(_recipe(hook_timeout_s=0.5), out=tmp_path / "r", host=host, progress=False)
    assert checkpoint.steps(tmp_path / "r" / "checkpoints")[-1] == 12
    record = run_recipe(_recipe(hook_timeout_s=0.5), out=tmp_path / "r", resume=True,
                        host=PluginHost(plugins=[Observer()]), progress=False)
    assert record["step"] == 30


def test_a_file_size_limit_in_the_final_pictures_loses_no_step(tmp_path):
    """``ulimit -f``: the final checkpoint (56 KiB) fits, density.png (≈ 59 KiB) does not."""
    recipe = write_recipe(tmp_path / "r.toml", {**TINY, "run": {**TINY["run"], "steps": 45}})
    limit = 57 * 1024

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    r = subprocess.run([sys.executable, "-m", "ebmcore", "run", str(recipe), "--out", str(tmp_path / "r"), "--quiet"],
                       capture_output=True, text=True, preexec_fn=small_files, timeout=300)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "File too large" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert checkpoint.steps(tmp_path / "r" / "checkpoints")[-1] == 45
    r = ebm("run", recipe, "--out", tmp_path / "r", "--resume", "--quiet")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "r" / "density.png").stat().st_size > limit and not list((tmp_path / "r").rglob(".*.tmp*"))


# -- sizes and plugin code at the command-line boundary ------------------------------------------

def test_sizes_beyond_memory_are_refused_up_front_naming_the_key(capsys, finished, tmp_path):
    recipe, run = finished
    code, err = cli(capsys, "validate", recipe)
    assert code == 0
    code, err = cli(capsys, "run", recipe, "--out", tmp_path / "x", "--set", "run.eval_samples=1000000000000")
    assert code == 2 and "error: $.run.eval_samples: needs an estimated" in err, err
    code, err = cli(capsys, "sample", run, "-n", 10**12)
    assert code == 2 and "error: -n: needs an estimated" in err, err


def test_an_error_in_plugin_code_names_the_distribution(capsys, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "rogue_build.py").write_text(
        "import attrs, ebmcore\n"
        "@attrs.frozen\nclass C:\n    pass\n"
        "def build(config, ctx):\n    raise SystemExit(0)\n"
        "@ebmcore.hookimpl\ndef ebm_components():\n    return [ebmcore.Component('energy', 'exits', C, build)]\n")
    recipe = write_recipe(tmp_path / "r.toml", {**TINY, "energy": {"type": "exits"}})
    code, err = cli(capsys, "-p", "rogue_build", "run", recipe, "--out", tmp_path / "x")
    assert code == 1 and "error: in plugin 'rogue_build'" in err and "sys.exit(0) called" in err, err


@pytest.fixture
def small_disk(tmp_path):
    """A 5 MiB tmpfs (root only, where mounting is allowed)."""
    where = tmp_path / "disk"
    where.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(where)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield where
    subprocess.run(["umount", str(where)], check=True)


def test_a_full_disk_keeps_the_last_checkpoint_and_resume_continues_exactly(capsys, tmp_path, small_disk):
    recipe = write_recipe(tmp_path / "r.toml", {**TINY, "run": {**TINY["run"], "steps": 100,
                                                                "checkpoint_every": 1}})
    assert cli(capsys, "run", recipe, "--out", tmp_path / "whole", "--quiet")[0] == 0
    run = small_disk / "r"
    code, err = cli(capsys, "run", recipe, "--out", run, "--quiet")
    assert code == 1 and "No space left on device" in err and "the last complete checkpoint is kept" in err, err
    kept = checkpoint.steps(run / "checkpoints")
    assert 0 < kept[-1] < 100 and not list(run.rglob(".*.tmp*"))
    checkpoint.load(run / "checkpoints", kept[-1])
    for step in kept[:-1]:  # free space: the older checkpoints
        for p in (run / "checkpoints").glob(f"step-{step:06d}.*"):
            p.unlink()
    assert cli(capsys, "run", recipe, "--out", run, "--resume", "--quiet")[0] == 0
    last = [(d / "metrics.jsonl").read_text().splitlines()[-1] for d in (tmp_path / "whole", run)]
    strip = [{k: v for k, v in json.loads(line).items() if not k.startswith("time/")} for line in last]
    assert strip[0] == strip[1]


def test_a_forked_child_does_not_keep_the_run_directory_locked(tmp_path):
    """A data loader's worker is a fork: when the run ends (or is killed) the lock goes with it."""
    lock = RunLock(tmp_path)
    lock.acquire()
    ready, started = os.pipe()
    child = os.fork()
    if child == 0:  # holds a copy of every descriptor but the lock's for a while
        os.write(started, b"1")
        time.sleep(1)
        os._exit(0)
    try:
        os.read(ready, 1)  # the child runs (its fork hooks have run)
        lock.release()
        again = RunLock(tmp_path)
        again.acquire()  # while the child lives
        again.release()
    finally:
        os.waitpid(child, 0)
