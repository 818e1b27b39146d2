"""Property-based tests: no recipe or --set string, however wrong, gives a traceback.

Every generated input either parses or raises the structured errors the CLI turns into
exit status 2 (`EbmError`, with `RecipeError` naming paths). Anything else is a bug. Then
the hostile inputs no generator finds: nesting deeper than any parser recurses, devices
and FIFOs, sizes beyond memory, infinities.
"""

import copy
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import TINY, write_recipe

from ebmcore import EbmError, PluginError, RecipeError, default_host
from ebmcore.kit import memory
from ebmcore.train.cli import main
from ebmcore.train.recipe import apply_overrides, parse_recipe

SECTIONS = ["run", "data", "energy", "sampler", "generator", "objective", "optim", "tasks"]

toml_scalars = st.one_of(
    st.integers(min_value=-10**6, max_value=10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(), st.text(max_size=12))
toml_values = st.recursive(toml_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)
keys = st.one_of(st.sampled_from(["type", "step_size", "n_steps", "batch_size", "lr", "betas", "alpha",
                                  "reinit", "size", "hidden", "name", "seed", "steps", "noise", "clamp",
                                  "low", "high", "grad_clip", "kernel", "resolutions"]), st.text(max_size=10))


@st.composite
def mutated_recipes(draw):
    """The tiny recipe with a few random edits: values replaced, keys added, sections dropped."""
    recipe = copy.deepcopy(TINY)
    for _ in range(draw(st.integers(1, 4))):
        section = draw(st.sampled_from(SECTIONS + ["bogus"]))
        action = draw(st.sampled_from(["set", "delete_section", "replace_section"]))
        if action == "delete_section":
            recipe.pop(section, None)
        elif action == "replace_section":
            recipe[section] = draw(toml_values)
        else:
            node = recipe.setdefault(section, {})
            if section in ("optim", "tasks") and isinstance(node, dict):
                node = node.setdefault(draw(st.sampled_from(["energy", "other"])), {})
            if isinstance(node, dict):
                node[draw(keys)] = draw(toml_values)
    return recipe


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_recipes())
def test_any_mutated_recipe_parses_or_gives_a_structured_error(recipe):
    try:
        parse_recipe(recipe, default_host().registry)
    except RecipeError as exc:
        assert exc.problems and all(path.startswith("$") for path, _ in exc.problems)
    except PluginError:
        raise AssertionError("unknown names must be recipe problems with a path, not a bare plugin error")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=30), min_size=1, max_size=3))
def test_any_set_string_applies_or_gives_a_clear_error(overrides):
    try:
        recipe = apply_overrides(TINY, overrides)
    except EbmError as exc:
        assert "--set" in str(exc)
        return
    try:
        parse_recipe(recipe, default_host().registry)
    except RecipeError:
        pass


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_any_file_content_reads_or_names_the_file(tmp_path, content):
    from ebmcore.train.recipe import read_toml

    path = tmp_path / "fuzz.toml"
    path.write_bytes(content)
    try:
        read_toml(path)
    except EbmError as exc:
        assert str(path) in str(exc)


# --- hostile inputs through the command line (in-process): each ends in one clear `error:`
# line naming the file or the recipe key, exit status 2, never a traceback or a hang ----------

def refused(capsys, *argv) -> str:
    """``ebm ARGV`` run in-process: exit status 2 and one `error:`; its stderr."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


@pytest.mark.parametrize("text,where", [
    ("a = " + "[" * 600 + "]" * 600, "nested too deeply to parse"),  # beyond tomllib's recursion
    ("a = " + "{b = " * 5000 + "1" + "}" * 5000, "nested too deeply to parse"),
    ("a = " + "[" * 100 + "]" * 100, "$.a" + "[0]" * 64 + ": tables or arrays nested more than 64 deep"),
    (".".join(["a"] * 5000) + " = 1", "$" + ".a" * 65 + ": tables or arrays nested more than 64 deep"),
])
def test_recipes_nested_too_deeply_are_refused_naming_the_file(tmp_path, capsys, text, where):
    path = tmp_path / "deep.toml"
    path.write_text(text)
    err = refused(capsys, "validate", path)
    assert f"{path}: " in err and where in err


@pytest.mark.parametrize("override,where", [
    ("a=" + "[" * 600 + "]" * 600, "--set a: tables or arrays nested too deeply to parse"),
    (".".join(["a"] * 100) + "=1", "--set: $" + ".a" * 65 + ": tables or arrays nested more than 64 deep"),
])
def test_set_values_nested_too_deeply_are_refused(tmp_path, capsys, override, where):
    assert where in refused(capsys, "validate", write_recipe(tmp_path / "r.toml", TINY), "--set", override)


def test_a_device_as_recipe_is_refused_without_reading_it(capsys):
    assert "/dev/zero: a device, not a regular file; refusing to read it as a recipe" in refused(
        capsys, "validate", "/dev/zero")


def test_a_fifo_as_recipe_is_refused_without_blocking(tmp_path, capsys, within_seconds):
    fifo = tmp_path / "recipe.toml"
    os.mkfifo(fifo)
    assert f"{fifo}: a FIFO, not a regular file" in refused(capsys, "run", fifo, "--out", tmp_path / "run")


@pytest.mark.parametrize("key", ["sampler.step_size", "sampler.noise", "optim.energy.lr", "optim.energy.weight_decay",
                                 "objective.alpha", "objective.data_noise", "generator.low"])
@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_non_finite_numbers_are_refused_by_validate_naming_the_key(tmp_path, capsys, key, value):
    err = refused(capsys, "validate", write_recipe(tmp_path / "r.toml", TINY), "--set", f"{key}={value}")
    assert f"$.{key}: must be a finite number, got {value}" in err


@pytest.mark.parametrize("override,message", [
    ("data.n_train=1000000000", "$.data.n_train: needs an estimated 89.4 GiB (drawing 1,000,000,000 points)"),
    ("data.n_test=1000000", "$.data.n_test: needs an estimated 21.8 TiB (MMD² against 1,000,000 held-out points)"),
    ("energy.hidden=[1000000000]", "$.energy.hidden: needs an estimated 59.6 GiB (4,000,000,001 float32 "
                                   "parameters"),
    ("generator.size=1000000000000", "$.generator.size: needs an estimated 7.3 TiB (1,000,000,000,000 stored "
                                     "samples of shape (2,))"),
])
def test_sizes_beyond_memory_are_refused_before_allocating_naming_the_key(tmp_path, capsys, monkeypatch,
                                                                           override, message):
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: 16 * 2**30)  # a 16 GiB machine
    err = refused(capsys, "run", write_recipe(tmp_path / "r.toml", TINY), "--out", tmp_path / "run",
                  "--set", override)
    assert message in err and "more than the 16.0 GiB of memory available" in err


@pytest.mark.parametrize("override,where", [("data.n_train=1e9", "$.data.n_train"),
                                            ("energy.hidden=[1e9]", "$.energy.hidden[0]"),
                                            ("generator.size=1e12", "$.generator.size")])
def test_sizes_written_as_floats_are_refused_by_validate(tmp_path, capsys, override, where):
    err = refused(capsys, "validate", write_recipe(tmp_path / "r.toml", TINY), "--set", override)
    assert f"{where}: expected an integer, got a float" in err


def test_a_device_as_data_file_is_refused_naming_it(tmp_path, capsys):
    recipe = {**TINY, "data": {"type": "idx", "images": "/dev/zero"}}
    err = refused(capsys, "run", write_recipe(tmp_path / "r.toml", recipe), "--out", tmp_path / "run")
    assert "/dev/zero: a device, not a regular file; refusing to read it as an IDX file" in err
