"""The third-party path as docs/plugins.md writes it: the ebm-kinetic example distribution,
packaged with the documented pyproject, installed with pip, run in a recipe; its sampler
passes the conformance kit; the examples stay as short as the guide says."""

import importlib.util
import json
import re
import subprocess
import sys

import pytest
from support import ROOT, ebm

from ebmcore.kit import conformance

KINETIC = ROOT / "examples" / "ebm-kinetic"
GUIDE = (ROOT / "docs" / "plugins.md").read_text()


def _module(name: str):
    """A module of the example, loaded from its file: with the example's folder on sys.path,
    the egg-info a build leaves there would register its components in every host."""
    spec = importlib.util.spec_from_file_location(f"ebm_kinetic_{name}", KINETIC / "ebm_kinetic" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BAOAB = _module("baoab").BAOAB


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(KINETIC)], check=True, capture_output=True)
    return {"PYTHONPATH": str(target)}


def test_the_example_is_packaged_with_the_documented_pyproject():
    documented = re.search(r"```toml\n(\[build-system\].*?)```", GUIDE, flags=re.S).group(1)
    assert (KINETIC / "pyproject.toml").read_text() == documented


def test_installed_from_the_snippet_it_is_listed_and_runs_its_recipe(installed, tmp_path):
    listed = ebm("list", "--json", env=installed)
    assert listed.returncode == 0, listed.stderr
    names = {(c["kind"], c["name"]): c["distribution"] for c in json.loads(listed.stdout)}
    assert names["data", "spiral"] == names["sampler", "baoab"] == "ebm-kinetic"
    r = ebm("run", KINETIC / "recipes" / "spiral-baoab.toml", "--out", tmp_path / "run", "--quiet",
            "--set", "run.steps=2", "--set", "run.eval_samples=100", env=installed)
    assert r.returncode == 0, r.stderr
    record = json.loads(r.stdout)
    assert {"mmd2", "mmd2/heldout", "mmd2/noise", "mmd2/gaussian", "mmd2/vs_gaussian"} <= set(record)
    assert (tmp_path / "run" / "samples.png").exists()


def _lines(path):
    return len(path.read_text().splitlines())


def test_the_examples_are_as_short_as_the_guide_says():
    assert _lines(KINETIC / "ebm_kinetic" / "spiral.py") <= 30
    assert _lines(KINETIC / "ebm_kinetic" / "baoab.py") <= 60
    ula = next(b for b in re.findall(r"```python\n(.*?)```", GUIDE, flags=re.S) if "class ULA(Sampler)" in b)
    assert len(ula.splitlines()) <= 40


def test_baoab_passes_the_quick_conformance_checks():
    conformance.check_gaussian_2d(BAOAB(step_size=0.2, n_steps=200))
    conformance.check_rng_discipline(BAOAB())
    conformance.check_masked_conditional(BAOAB(step_size=0.2, n_steps=200))


@pytest.mark.slow
@pytest.mark.parametrize(("check", "settings"), [
    ("check_gaussian_10d", {"step_size": 0.2, "n_steps": 300}),
    ("check_mixture", {"step_size": 0.1, "n_steps": 500}),
    ("check_banana", {"step_size": 0.1, "n_steps": 500}),
    ("check_anisotropic_gaussian", {"step_size": 0.05, "friction": 2.0, "n_steps": 2000}),
])
def test_baoab_passes_the_harder_conformance_checks(check, settings):
    getattr(conformance, check)(BAOAB(**settings))
