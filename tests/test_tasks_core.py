"""Tasks: [tasks.<label>] tables parsed like sections, run after training, again by `ebm eval`."""

import copy
import json
import sys

import pytest
from support import ROOT, ebm, write_recipe

from ebmcore import PluginHost, RecipeError
from ebmcore.train import run_recipe
from ebmcore.train.recipe import parse_recipe

FIXTURE = ROOT / "tests" / "fixtures" / "tasks"
sys.path.insert(0, str(FIXTURE))
import ebm_fixture_tasks  # noqa: E402

ENV = {"PYTHONPATH": str(FIXTURE)}
P = ("-p", "ebm_fixture_tasks")


@pytest.fixture(scope="module")
def host():
    return PluginHost(plugins=[ebm_fixture_tasks])


def _with_tasks(tiny, **tasks):
    tiny = copy.deepcopy(tiny)
    tiny["tasks"] = tasks
    return tiny


def _problems(data, host):
    with pytest.raises(RecipeError) as info:
        parse_recipe(data, host.registry)
    return dict(info.value.problems)


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_task_tables_are_structured_and_written_back(tiny, host):
    recipe = parse_recipe(_with_tasks(tiny, gap={"type": "energy_gap", "n": 10}, walk={"type": "chain"}),
                          host.registry)
    assert list(recipe.tasks) == ["gap", "walk"]
    assert recipe.tasks["gap"].config.n == 10 and recipe.tasks["walk"].config.n == 50
    resolved = recipe.to_dict()["tasks"]
    assert resolved == {"gap": {"type": "energy_gap", "n": 10, "low": -3.0, "high": 3.0, "every_evaluation": False},
                        "walk": {"type": "chain", "n": 50}}
    assert parse_recipe(recipe.to_dict(), host.registry) == recipe


@pytest.mark.parametrize("tasks,path,message", [
    ({"gap": {"type": "energy_gapp"}}, "$.tasks.gap.type",
     "unknown task 'energy_gapp' (did you mean 'energy_gap'?)"),
    ({"gap": {"type": "energy_gap", "nn": 3}}, "$.tasks.gap.nn", "unknown key (did you mean 'n'?)"),
    ({"gap": {"type": "energy_gap", "n": "many"}}, "$.tasks.gap.n", "expected an integer, got a string"),
    ({"gap": {"type": "energy_gap", "n": 0}}, "$.tasks.gap.n", "must be > 0"),
    ({"gap": {"n": 3}}, "$.tasks.gap.type", "missing: which task? installed: "),
    ({"gap": {"type": 3}}, "$.tasks.gap.type", "expected a string"),
    ({"gap": 3}, "$.tasks.gap", "expected a table [tasks.gap], got an integer"),
    ({"a b": {"type": "chain"}}, "$.tasks.a b", "a task label is a letter"),
])
def test_task_problems_name_their_path(tiny, host, tasks, path, message):
    problems = _problems(_with_tasks(tiny, **tasks), host)
    assert path in problems, problems
    assert message in problems[path]


def test_tasks_must_be_a_table_of_tables(tiny, host):
    tiny["tasks"] = 3
    assert "expected a table of [tasks.<label>] tables" in _problems(tiny, host)["$.tasks"]
    tiny["tasks"] = {}
    tiny["task"] = {"type": "chain"}
    assert "did you mean 'tasks'" in _problems(tiny, host)["$.task"]


def test_a_task_needing_a_section_names_itself(tiny, host):
    tiny = _with_tasks(tiny, walk={"type": "chain"})
    tiny["objective"] = {"type": "mle"}
    del tiny["sampler"]
    message = _problems(tiny, host)["$.sampler"]
    assert "missing section [sampler]" in message and "task 'chain' ($.tasks.walk)" in message


def test_tasks_run_after_training_into_tasks_json_and_the_last_record(tmp_path, tiny, host):
    out = tmp_path / "run"
    record = run_recipe(_with_tasks(tiny, gap={"type": "energy_gap"}, walk={"type": "chain", "n": 20}),
                        out=str(out), host=host, progress=False)
    results = json.loads((out / "tasks.json").read_text())
    assert list(results) == ["gap", "walk"]
    assert set(results["gap"]) == {"energy_data", "energy_noise", "gap"}
    assert json.loads((out / "tasks" / "gap" / "note.json").read_text()) == {"n": 100}
    rows = _metrics(out)
    assert rows[-1]["step"] == 30 and rows[-1]["gap/gap"] == results["gap"]["gap"]
    assert rows[-1]["walk/energy"] == record["walk/energy"] == results["walk"]["energy"]
    assert not any(k.startswith("gap/") for r in rows[:-1] for k in r)
    # training is unchanged by tasks: the same run without them logs the same numbers
    plain = tmp_path / "plain"
    run_recipe(tiny, out=str(plain), host=host, progress=False)
    strip = lambda rows: [{k: v for k, v in r.items() if "/" not in k or k.split("/")[0] in
                           ("loss", "energy", "grad_norm")} for r in rows]
    assert strip(_metrics(plain)) == strip(rows)


def test_a_task_may_run_at_every_evaluation_without_changing_training(tmp_path, tiny, host):
    tiny["run"].update(eval_every=10)
    out = tmp_path / "run"
    run_recipe(_with_tasks(tiny, gap={"type": "energy_gap", "every_evaluation": True}, walk={"type": "chain"}),
               out=str(out), host=host, progress=False)
    rows = {r["step"]: r for r in _metrics(out)}
    for step in (10, 20):  # scored evaluations before the last: the flagged task only
        assert "gap/gap" in rows[step] and "walk/energy" not in rows[step]
        assert (out / "evaluations" / f"step-{step:06d}" / "tasks" / "gap" / "note.json").exists()
    assert "gap/gap" in rows[30] and "walk/energy" in rows[30]  # the last runs every task once
    assert "gap/gap" not in rows[5]
    plain = tmp_path / "plain"
    run_recipe(tiny, out=str(plain), host=host, progress=False)
    assert [r["loss/energy"] for r in _metrics(plain)] == [r["loss/energy"] for r in rows.values()]


def test_resume_may_change_tasks_and_runs_them_at_the_end(tmp_path, tiny, host):
    out = tmp_path / "run"
    first = dict(tiny, run={**tiny["run"], "steps": 20})
    run_recipe(_with_tasks(first, gap={"type": "energy_gap"}), out=str(out), host=host, progress=False)
    assert json.loads((out / "tasks.json").read_text()).keys() == {"gap"}
    run_recipe(_with_tasks(tiny, walk={"type": "chain", "n": 10}), out=str(out), resume=True, host=host,
               progress=False)
    assert json.loads((out / "tasks.json").read_text()).keys() == {"walk"}
    rows = _metrics(out)
    assert [r["step"] for r in rows] == [5, 10, 15, 20, 25, 30]
    assert "gap/gap" in rows[3] and "walk/energy" in rows[-1]


def test_ebm_eval_reruns_the_tasks_of_a_finished_run(tmp_path, tiny):
    out = tmp_path / "run"
    recipe = write_recipe(tmp_path / "r.toml", _with_tasks(tiny, gap={"type": "energy_gap"}))
    r = ebm(*P, "run", recipe, "--out", out, "--quiet", env=ENV)
    assert r.returncode == 0, r.stderr
    trained = json.loads((out / "tasks.json").read_text())
    (out / "tasks.json").unlink()
    before = (out / "metrics.jsonl").read_text()

    r = ebm(*P, "eval", out, env=ENV)
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "tasks.json").read_text()) == trained  # same checkpoint, same RNG
    assert json.loads(r.stdout)["gap/gap"] == trained["gap"]["gap"] and json.loads(r.stdout)["step"] == 30
    assert (out / "metrics.jsonl").read_text() == before  # eval does not touch the training record

    # settings changed and a task added on the command line; results elsewhere
    other = tmp_path / "eval"
    r = ebm(*P, "eval", out, "--set", "tasks.gap.n=7", "--set", "tasks.walk.type=chain", "--out", other, env=ENV)
    assert r.returncode == 0, r.stderr
    assert json.loads((other / "tasks.json").read_text()).keys() == {"gap", "walk"}
    assert json.loads((other / "tasks" / "gap" / "note.json").read_text()) == {"n": 7}


def test_ebm_eval_works_on_a_moved_run_directory(tmp_path, tiny):
    out = tmp_path / "run"
    recipe = write_recipe(tmp_path / "r.toml", _with_tasks(tiny, gap={"type": "energy_gap"}))
    assert ebm(*P, "run", recipe, "--out", out, "--quiet", env=ENV).returncode == 0
    moved = out.rename(tmp_path / "moved")
    r = ebm(*P, "eval", moved, env=ENV)
    assert r.returncode == 0, r.stderr
    assert (moved / "tasks.json").exists()


def test_ebm_eval_errors_exit_2_without_traceback(tmp_path, tiny):
    out = tmp_path / "run"
    assert ebm(*P, "run", write_recipe(tmp_path / "r.toml", tiny), "--out", out, "--quiet",
               env=ENV).returncode == 0
    r = ebm(*P, "eval", out, env=ENV)
    assert r.returncode == 2 and "no [tasks.<label>] tables" in r.stderr and "energy_gap" in r.stderr
    r = ebm(*P, "eval", out, "--set", "tasks.gap.type=energy_gapp", env=ENV)
    assert r.returncode == 2 and "$.tasks.gap.type: unknown task 'energy_gapp' (did you mean 'energy_gap'?)" in r.stderr
    r = ebm(*P, "eval", tmp_path / "nowhere", env=ENV)
    assert r.returncode == 2 and "not a run directory" in r.stderr
    assert all("Traceback" not in x for x in (r.stderr,))


def test_list_shows_tasks_and_the_reference_names_their_table(host):
    r = ebm(*P, "list", "task", env=ENV)
    assert r.returncode == 0 and "energy_gap" in r.stdout and "chain" in r.stdout
    r = ebm(*P, "list", "--markdown", env=ENV)
    assert '### [tasks.<label>] type = "energy_gap"' in r.stdout
