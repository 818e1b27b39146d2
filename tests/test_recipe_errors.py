"""Recipe input: every problem reported at once, by path, without a traceback."""

import pytest
from support import TINY, ebm, write_recipe

from ebmcore import RecipeError, default_host
from ebmcore.errors import EbmError
from ebmcore.train.recipe import apply_overrides, parse_override, parse_recipe


def _problems(data):
    with pytest.raises(RecipeError) as info:
        parse_recipe(data, default_host().registry)
    return dict(info.value.problems)


def test_validate_reports_every_problem_with_its_path_and_exits_2(tmp_path, tiny):
    tiny["sampler"]["stepsize"] = 0.01          # misspelt key
    tiny["data"]["batch_size"] = "many"          # wrong type
    tiny["generator"]["type"] = "replay_bufer"   # unknown component name
    del tiny["objective"]                        # missing section
    r = ebm("validate", write_recipe(tmp_path / "bad.toml", tiny))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "4 problems" in r.stderr
    assert "$.sampler.stepsize: unknown key (did you mean 'step_size'?)" in r.stderr
    assert "$.data.batch_size: expected an integer, got a string ('many')" in r.stderr
    assert "$.generator.type: unknown generator 'replay_bufer' (did you mean 'replay_buffer'?)" in r.stderr
    assert "$.objective: missing section [objective]" in r.stderr


def test_valid_recipe_validates(tmp_path, tiny):
    r = ebm("validate", write_recipe(tmp_path / "ok.toml", tiny))
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout


@pytest.mark.parametrize("path,value,message", [
    ("sampler.step_size", -0.1, "must be > 0"),
    ("optim.energy.lr", 0.0, "must be > 0"),
    ("data.batch_size", 0, "must be > 0"),
    ("generator.reinit", 1.5, "must be <= 1"),
    ("sampler.n_steps", 2.5, "expected an integer, got a float"),
    ("sampler.step_size", "0.1", "expected a number, got a string"),
    ("energy.spectral_norm", 1, "expected a boolean, got an integer"),
    ("run.steps", True, "expected an integer, got a boolean"),
    ("optim.energy.type", "adan", "did you mean 'adam'"),
    ("optim.energy.betas", [0.0, 1.0], "must both be in [0, 1)"),
    ("energy.hidden", [32, "x"], "expected an integer"),
])
def test_meaningless_or_mistyped_values_are_rejected_with_their_path(tiny, path, value, message):
    section, *rest = path.split(".")
    node = tiny[section]
    for part in rest[:-1]:
        node = node[part]
    node[rest[-1]] = value
    problems = _problems(tiny)
    key = "$." + path + ("[1]" if path == "energy.hidden" else "")
    assert key in problems, problems
    assert message in problems[key]


def test_a_section_needed_by_the_objective_is_named(tiny):
    del tiny["sampler"]
    assert _problems(tiny) == {"$.sampler": "missing section [sampler] (needed by objective 'mle')"}


def test_unknown_top_level_section_is_reported(tiny):
    tiny["sampeler"] = {"type": "langevin"}
    assert "did you mean 'sampler'" in _problems(tiny)["$.sampeler"]


def test_set_overrides_parse_toml_values_and_bare_words():
    assert parse_override("sampler.step_size=0.02") == (["sampler", "step_size"], 0.02)
    assert parse_override("energy.hidden=[64, 64]") == (["energy", "hidden"], [64, 64])
    assert parse_override("data.name=two_moons") == (["data", "name"], "two_moons")
    assert parse_override("run.out='a b'") == (["run", "out"], "a b")


@pytest.mark.parametrize("bad", ["noequals", "=3", "a..b=1", "a.b=[1,", "a.b=x y"])
def test_bad_set_strings_are_errors(bad):
    with pytest.raises(EbmError):
        apply_overrides(TINY, [bad])


def test_set_cannot_descend_into_a_value():
    with pytest.raises(EbmError, match="is a value, not a table"):
        apply_overrides(TINY, ["sampler.step_size.x=1"])


@pytest.mark.parametrize("content,message", [
    (b"\xff\xfe not utf8", "not UTF-8"),
    (b"[run\nsteps = 1", "not valid TOML"),
])
def test_unreadable_recipe_files_name_themselves(tmp_path, content, message):
    path = tmp_path / "broken.toml"
    path.write_bytes(content)
    r = ebm("validate", path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert str(path) in r.stderr and message in r.stderr


def test_missing_recipe_file_exits_2(tmp_path):
    r = ebm("run", tmp_path / "nope.toml")
    assert r.returncode == 2 and "no such recipe file" in r.stderr


def test_resolved_recipe_round_trips_with_defaults_filled_in(tiny):
    registry = default_host().registry
    recipe = parse_recipe(tiny, registry)
    resolved = recipe.to_dict()
    assert resolved["sampler"]["temperature"] == 1.0  # a default, written out
    assert parse_recipe(resolved, registry) == recipe


@pytest.mark.parametrize("override,path,message", [
    ("energy.hidden='x'", "$.energy.hidden", "expected an array, got a string ('x')"),
    ("optim.energy.betas=[0.9]", "$.optim.energy.betas", "expected tuple[float, float], got [0.9]"),
    ("sampler.clamp=[1, 2, 3]", "$.sampler.clamp", "expected tuple[float, float], got [1, 2, 3]"),
    ("data=[1]", "$.data", "expected a table [data], got an array"),
    ("sampler.type=3", "$.sampler.type", "expected a string, got an integer (3)"),
])
def test_structural_mistakes_are_named_with_their_path(override, path, message):
    problems = _problems(apply_overrides(TINY, [override]))
    assert message in problems[path], problems


def test_unknown_keys_and_bad_values_in_one_section_are_all_reported(tiny):
    tiny["sampler"].update(stepsize=0.1, n_steps=-3)
    problems = _problems(tiny)
    assert "$.sampler.stepsize" in problems and problems["$.sampler.n_steps"] == "must be > 0 (got -3)"


def test_resume_without_a_run_directory_exits_2(tmp_path, tiny):
    r = ebm("run", write_recipe(tmp_path / "r.toml", tiny), "--out", tmp_path / "none", "--resume")
    assert r.returncode == 2 and "nothing to resume" in r.stderr


def test_components_that_do_not_fit_together_exit_2_naming_the_section(tmp_path, tiny):
    tiny["energy"] = {"type": "multiscale", "resolutions": [1, 4]}  # an image energy on 2-D points
    r = ebm("run", write_recipe(tmp_path / "r.toml", tiny), "--out", tmp_path / "run")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "$.energy: cannot build energy 'multiscale'" in r.stderr


@pytest.mark.parametrize("objective", [{"type": "coop", "alpha": 0.1}, {"type": "drl", "levels": 2}])
def test_a_sampler_returning_replicas_is_refused_where_they_would_be_taken_as_samples(tiny, tmp_path, objective):
    from ebmcore.train import run_recipe

    tiny["sampler"] = {"type": "parallel_tempering", "kernel": "langevin", "kernel_options": {"step_size": 0.01},
                       "n_temperatures": 2, "return_all": True}
    tiny["objective"] = objective
    if objective["type"] == "coop":
        tiny["generator"] = {"type": "mlp", "latent_dim": 2, "hidden": 8}
        tiny["optim"]["generator"] = {"type": "adam", "lr": 1e-3}
    else:
        del tiny["generator"]
        tiny["energy"] = {"type": "level_mlp", "hidden": [8]}
    with pytest.raises(EbmError, match=rf"objective '{objective['type']}' takes every row the sampler returns.*"
                                       r"returns 2 per chain.*return_all = false"):
        run_recipe(tiny, out=str(tmp_path / "run"), progress=False)
