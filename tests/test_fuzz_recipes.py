"""Property-based tests: no recipe or --set string, however wrong, gives a traceback.

Every generated input either parses or raises the structured errors the CLI turns into
exit status 2 (`EbmError`, with `RecipeError` naming paths). Anything else is a bug.
"""

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import TINY

from ebmcore import EbmError, PluginError, RecipeError, default_host
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
