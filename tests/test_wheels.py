"""The core and every plugin build as wheels (``python -m build``), and the core with three
plugins installed from those wheels — not editable, into a fresh virtual environment, far
from this checkout — runs a recipe the test writes: what a user installing from an index
gets (recipes live in the repository, not in the wheels)."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomli_w
from support import ROOT, TINY

PROJECTS = [ROOT, *sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))]
INSTALLED = ["ebmcore", "ebm-toy", "ebm-langevin", "ebm-mle"]


def _check(cmd: list, **kwargs) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    out, sources = tmp_path_factory.mktemp("wheels"), tmp_path_factory.mktemp("sources")
    for project in PROJECTS:
        # from a copy: the checkout's own build/ and egg-info (of editable installs) never
        # leak into a wheel, and building leaves nothing in the checkout
        copy = shutil.copytree(project, sources / project.name, ignore=shutil.ignore_patterns(
            "build", "*.egg-info", "__pycache__", ".venv", "plugins", "runs", ".git", "examples", "tests", "docs",
            "benchmarks", "recipes"))
        # no isolation: the build backend (setuptools) is the test extras'
        _check([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", out, copy], timeout=300)
    return out


def test_every_distribution_builds_a_wheel_with_its_package(wheels):
    for project in PROJECTS:
        name = project.name if project != ROOT else "ebmcore"
        dist = name.replace("-", "_")
        [wheel] = wheels.glob(f"{dist}-*.whl")
        files = zipfile.ZipFile(wheel).namelist()
        package = dist if project != ROOT else "ebmcore"
        assert f"{package}/__init__.py" in files, f"{wheel.name} lacks its package"
        if project != ROOT:  # a plugin is found by its entry point
            entry = next(f for f in files if f.endswith(".dist-info/entry_points.txt"))
            assert "[ebm]" in zipfile.ZipFile(wheel).read(entry).decode()


def test_a_user_installs_the_core_and_plugins_from_wheels_and_runs_a_recipe(wheels, tmp_path):
    venv = tmp_path / "venv"
    _check([sys.executable, "-m", "venv", venv], timeout=120)
    python = venv / "bin" / "python"
    # torch pinned as in requirements.txt (its CPU build); the rest from the index, ours from the wheels
    _check([python, "-m", "pip", "install", "--quiet", "--no-compile", "--find-links", wheels, "torch==2.13.0", *INSTALLED],
           timeout=900)
    listed = _check([python, "-m", "pip", "list", "--format=freeze"], timeout=60).stdout
    assert "-e " not in listed and "ebm-image" not in listed  # wheels only, and only these
    recipe = tmp_path / "user" / "tiny.toml"
    recipe.parent.mkdir()
    recipe.write_text(tomli_w.dumps({**TINY, "run": {**TINY["run"], "steps": 20}}))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = _check([python, "-c", "import ebmcore, ebm_toy; print(ebmcore.__file__, ebm_toy.__file__)"],
                   cwd=recipe.parent, env=env, timeout=120).stdout
    assert str(ROOT) not in where and str(venv) in where
    _check([venv / "bin" / "ebm", "run", recipe, "--out", recipe.parent / "run", "--quiet"],
           cwd=recipe.parent, env=env, timeout=600)
    assert (recipe.parent / "run" / "samples.png").is_file()
    listing = _check([venv / "bin" / "ebm", "list", "objective"], cwd=recipe.parent, env=env, timeout=120).stdout
    assert "mle" in listing and "jem" not in listing
