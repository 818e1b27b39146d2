"""Plugins: found by entry point, third-party ones installed with pip, conflicts and
failures reported by distribution, autoloading switchable."""

import ast
import json
import subprocess
import sys

import pytest
from support import ROOT, TINY, ebm, write_recipe

FIXTURES = ROOT / "tests" / "fixtures"


def _pip_install_target(target, *projects):
    """The no-network route: build in this environment, install into a folder of its own."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), *map(str, projects)], check=True, capture_output=True)
    return {"PYTHONPATH": str(target)}


@pytest.fixture(scope="module")
def third_party(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    return _pip_install_target(target, ROOT / "examples" / "ebm-plugin-example", FIXTURES / "ebm-broken")


def test_pip_installed_third_party_plugin_is_listed_and_runs_in_a_recipe(tmp_path, third_party):
    r = ebm("list", "energy", "--json", env=third_party)
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["quadratic"]["distribution"] == "ebm-plugin-example"
    assert rows["quadratic"]["fields"] == [{"name": "init_scale", "type": "float", "default": "1.0",
                                            "doc": "initial standard deviation of the Gaussian"}]
    recipe = {**TINY, "energy": {"type": "quadratic"}}
    r = ebm("run", write_recipe(tmp_path / "r.toml", recipe), "--out", tmp_path / "run", "--quiet",
            env=third_party)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "run" / "samples.png").exists()


def test_a_plugin_that_fails_to_import_is_named_and_the_others_still_work(third_party):
    r = ebm("list", "--json", env=third_party)
    assert r.returncode == 0
    assert "plugin 'broken' from 'ebm-broken' failed to load: ModuleNotFoundError" in r.stderr
    names = {row["name"] for row in json.loads(r.stdout)}
    assert {"langevin", "mle", "toy2d", "quadratic"} <= names
    plugins = json.loads(ebm("plugins", "--json", env=third_party).stdout)
    assert plugins["failed"][0]["distribution"] == "ebm-broken"


def test_two_distributions_registering_the_same_name_is_an_error_naming_both(tmp_path):
    env = _pip_install_target(tmp_path / "site", FIXTURES / "ebm-dup-a", FIXTURES / "ebm-dup-b")
    message = "energy 'twin' is registered twice: by 'ebm-dup-a' and by 'ebm-dup-b'"
    r = ebm("list", "--json", env=env)  # the conflict is reported; everything else still works
    assert r.returncode == 0 and message in r.stderr
    names = {row["name"] for row in json.loads(r.stdout)}
    assert "twin" not in names and {"langevin", "mle", "toy2d"} <= names
    recipe = {**TINY, "energy": {"type": "twin"}}
    r = ebm("validate", write_recipe(tmp_path / "r.toml", recipe), env=env)  # using it is an error
    assert r.returncode == 2 and "Traceback" not in r.stderr and message in r.stderr


def test_autoload_off_lists_nothing_and_p_loads_a_plugin_explicitly():
    off = {"EBM_DISABLE_PLUGIN_AUTOLOAD": "1"}
    r = ebm("list", "--json", env=off)
    assert r.returncode == 0 and json.loads(r.stdout) == []
    r = ebm("-p", "ebm_langevin", "list", "--json", env=off)
    assert [(row["kind"], row["name"], row["distribution"]) for row in json.loads(r.stdout)] == [
        ("sampler", "annealed_langevin", "ebm-langevin"), ("sampler", "langevin", "ebm-langevin"),
        ("sampler", "mala", "ebm-langevin")]


def test_p_with_a_missing_module_exits_2():
    r = ebm("-p", "no_such_plugin_module", "list")
    assert r.returncode == 2 and "no_such_plugin_module" in r.stderr and "Traceback" not in r.stderr


def test_the_core_imports_no_plugin():
    for path in (ROOT / "ebmcore").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.startswith("ebm_") for n in names), f"{path} imports {names}"
    code = ("import sys, ebmcore, ebmcore.train.cli, ebmcore.train.run, ebmcore.kit.conformance; "
            "print([m for m in sys.modules if m.startswith('ebm_')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_bundled_plugin_imports_no_other_plugin():
    for package in (ROOT / "plugins").glob("ebm-*/ebm_*"):
        for path in package.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                others = [n for n in names if n.startswith("ebm_") and n.split(".")[0] != package.name]
                assert not others, f"{path} imports {others}: build other plugins' components by name"


def test_unknown_component_lists_what_is_installed():
    r = ebm("list", "sampler")
    assert r.returncode == 0 and "langevin" in r.stdout
    from ebmcore import PluginError, build
    with pytest.raises(PluginError, match=r"unknown sampler 'langevn' \(did you mean 'langevin'\?\); installed: annealed_langevin, annealed_score_langevin, coarse_to_fine, gibbs, hmc, langevin, mala, multigrid, nuts, parallel_tempering"):
        build("sampler", "langevn")


def test_build_by_name_validates_like_a_recipe():
    from ebmcore import RecipeError, build
    sampler = build("sampler", "langevin", step_size=0.02, n_steps=5)
    assert sampler.config.step_size == 0.02 and sampler.n_steps == 5
    with pytest.raises(RecipeError, match=r"\$\.sampler\.step_size: must be > 0"):
        build("sampler", "langevin", step_size=-1.0)


def test_ebm_list_shows_each_keys_description():
    r = ebm("list", "sampler")
    assert r.returncode == 0 and "step_size: float = 0.01  # step s on the gradient" in r.stdout


def test_the_dbn_components_are_listed_with_their_keys():
    r = ebm("list")
    assert r.returncode == 0 and "objective dbn" in r.stdout and "task      dbn_bound" in r.stdout
    assert "steps_per_layer: tuple[int, ...] = (1000,)" in r.stdout and "first_layer: bool = True" in r.stdout


def test_the_score_matching_components_are_listed_with_their_keys():
    r = ebm("list")
    assert r.returncode == 0, r.stderr
    for row in ("objective dsm", "objective ssm", "objective ncsn", "sampler   annealed_score_langevin"):
        assert row in r.stdout
    assert "variance_reduced: bool = True" in r.stdout and "step_lr: float = 2e-05" in r.stdout


def test_a_plugin_module_that_provides_nothing_is_warned_about():
    r = ebm("-p", "ebm_idle", "list", "energy", env={"PYTHONPATH": str(FIXTURES / "idle")})
    assert r.returncode == 0 and "mlp" in r.stdout
    assert "warning: plugin 'ebm_idle'" in r.stderr and "provides nothing" in r.stderr and "hookimpl" in r.stderr
    assert "provides nothing" not in ebm("list", "energy").stderr  # observers (tensorboard) are not idle


NO_STEPS = '''
import attrs
from ebmcore import Component, Sampler, hookimpl


@attrs.frozen
class Config:
    step_size: float = 0.1


class NoSteps(Sampler):
    Config = Config

    def init(self, x, energy, *, rng, cond=None):
        return (x,)

    def step(self, state, energy, *, rng, cond=None, mask=None):
        return state, ()


@hookimpl
def ebm_components():
    return [Component("sampler", "nosteps", Config, NoSteps.from_config)]
'''


def test_a_sampler_whose_settings_lack_n_steps_is_refused_when_built(tmp_path):
    (tmp_path / "ebm_nosteps.py").write_text(NO_STEPS)
    path = write_recipe(tmp_path / "r.toml", {**TINY, "sampler": {"type": "nosteps"}})
    r = ebm("-p", "ebm_nosteps", "run", path, "--out", tmp_path / "run", env={"PYTHONPATH": str(tmp_path)})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "error: sampler NoSteps: its Config (Config) has no compile and no n_steps" in r.stderr
    assert not (tmp_path / "run").exists()


def test_rogue_plugins_are_isolated_and_their_components_fail_with_clear_errors(tmp_path, third_party):
    """A misspelt hook argument, sys.exit at import and a non-attrs config each disable only
    their plugin; a build that raises or returns None is an error naming the distribution."""
    r = ebm("plugins", "--json", env=third_party)
    assert r.returncode == 0, r.stderr
    failed = {f["name"]: f["error"] for f in json.loads(r.stdout)["failed"]}
    assert "PluginValidationError" in failed["rogue_misspelt"] and "stepp" in failed["rogue_misspelt"]
    assert failed["rogue_exits"].startswith("SystemExit: 0")
    assert "must be an attrs class" in failed["rogue_notattrs"]
    for name, message in [("rogue_raises", "energy 'rogue_raises' of 'ebm-broken' failed to build: "
                                            "RuntimeError: rogue build"),
                          ("rogue_none", "energy 'rogue_none' of 'ebm-broken' built a NoneType")]:
        recipe = write_recipe(tmp_path / f"{name}.toml", {**TINY, "energy": {"type": name}})
        r = ebm("run", recipe, "--out", tmp_path / name, env=third_party)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
