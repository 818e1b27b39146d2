"""The architecture holds: three layers whose imports only go down, no import cycles, a
contract small enough to read in one sitting, small classes, and components that use each
other through declared interfaces, never by probing attributes."""

import ast
import re
import tomllib
from pathlib import Path

import pytest
from support import ROOT, TINY

from ebmcore import PluginHost, default_host
from ebmcore.train import Run
from ebmcore.train.recipe import parse_recipe

CORE = ROOT / "ebmcore"
#: layers, bottom up: the contract (ebmcore/*.py), the kit, the training machinery
LAYERS = {"kit": 1, "train": 2}  # and the contract, 0
#: python -m ebmcore: an entry script that starts the CLI, imported by nothing
ENTRY_SCRIPTS = {"ebmcore.__main__"}
#: the contract's one import from above, inside ebmcore.load: the user's entry point to a trained run
FACADES = {("ebmcore", "ebmcore.train.model")}
CONTRACT_CODE_LINES, CONTRACT_LINES, CLASS_LINES = 1100, 1600, 200


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:`` (imports for annotations only)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING":
                continue
            stack.append(child)


def imports_of(module: str) -> set[str]:
    """The ebmcore modules ``module`` imports at run time, anywhere in its code (a name
    imported from a package counts as importing the package)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "ebmcore"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "ebmcore":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return {m for m in found if m in MODULES and m != module}


def test_imports_only_go_down():
    upward = [f"{m} ({_layer(m)}) imports {t} ({_layer(t)})"
              for m in MODULES if m not in ENTRY_SCRIPTS for t in imports_of(m)
              if _layer(t) > _layer(m) and (m, t) not in FACADES]
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_no_import_cycles():
    graph = {m: imports_of(m) for m in MODULES}
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    cycles = []

    def visit(m, path):
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(" -> ".join(path[path.index(t):] + [t]))
            elif t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_walker_sees_local_and_relative_imports(tmp_path):
    """The checks above would pass vacuously if imports inside functions were missed."""
    assert "ebmcore.train.run" in imports_of("ebmcore.train.cli")  # imported inside a function
    assert "ebmcore.kit.masks" not in imports_of("ebmcore.sampling")
    assert "ebmcore.interfaces" not in imports_of("ebmcore.sampling")  # under TYPE_CHECKING only


def code_lines(path: Path) -> tuple[int, int]:
    """(lines of code, lines in all): code excludes blank, comment and docstring lines."""
    text = path.read_text()
    docs = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            docs.update(range(node.lineno, node.end_lineno + 1))
    lines = text.splitlines()
    code = sum(1 for i, line in enumerate(lines, 1) if line.strip() and not line.strip().startswith("#")
               and i not in docs)
    return code, len(lines)


def test_the_contract_reads_in_one_sitting():
    contract = [p for m, p in MODULES.items() if _layer(m) == 0 and p.parent == CORE]
    code = sum(code_lines(p)[0] for p in contract)
    total = sum(code_lines(p)[1] for p in contract)
    assert code <= CONTRACT_CODE_LINES and total <= CONTRACT_LINES, (
        f"the contract (ebmcore/*.py) has {code} lines of code and {total} in all; "
        f"limits {CONTRACT_CODE_LINES} and {CONTRACT_LINES}")


def test_no_class_in_ebmcore_is_over_200_lines():
    big = [f"{m}.{node.name}: {node.end_lineno - node.lineno + 1} lines"
           for m, p in MODULES.items() for node in ast.walk(ast.parse(p.read_text()))
           if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > CLASS_LINES]
    assert not big, "\n".join(big)


#: getattr where the attribute is not a component's capability: pluggy's hook by name,
#: attrs fields by name while validating a config
ALLOWED_GETATTR = {"ebmcore/plugins.py": 2, "ebmcore/config.py": 1}


@pytest.mark.parametrize("where", ["ebmcore", "plugins", "examples"])
def test_no_component_probes_another_by_attribute(where):
    """Components use each other through what the interfaces declare: no hasattr, and
    getattr only where the core looks up something that is not a component's ability."""
    found = []
    for path in sorted((ROOT / where).rglob("*.py")):
        if "tests" in path.relative_to(ROOT).parts or ".venv" in path.parts:
            continue
        calls = [node for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                 and node.func.id in ("hasattr", "getattr")]
        rel = path.relative_to(ROOT).as_posix()
        if len(calls) > ALLOWED_GETATTR.get(rel, 0):
            found += [f"{rel}:{c.lineno}: {c.func.id}" for c in calls]
    assert not found, "\n".join(found)


def test_a_samplers_settings_are_its_recipe_config_built_once(tmp_path):
    """The walk of sampler.step_size (docs/architecture.md): TOML → the section's config,
    structured and validated once → the very object the kernel reads."""
    recipe = parse_recipe({**TINY, "run": {**TINY["run"], "out": str(tmp_path / "run")}}, default_host().registry)
    run = Run.create(recipe)
    sampler = run.ctx.built["sampler"]
    assert sampler.config is recipe.sections["sampler"].config and sampler.config.step_size == 0.01


#: distribution → the module it is imported as, where the names differ
IMPORT_NAMES = {"pillow": "PIL", "scikit-learn": "sklearn", "scikit-image": "skimage", "tomli-w": "tomli_w",
                "pyyaml": "yaml"}


def _imported(folder: Path) -> set[str]:
    names = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names |= {node.module.split(".")[0], node.module}
    return names


@pytest.mark.parametrize("project", ["."] + [f"plugins/{d.name}" for d in sorted((ROOT / "plugins").iterdir())
                                            if (d / "pyproject.toml").exists()])
def test_every_declared_third_party_dependency_is_used(project):
    meta = tomllib.loads((ROOT / project / "pyproject.toml").read_text())["project"]
    packages = [ROOT / project / p for p in ([meta["name"]] if project == "." else [meta["name"].replace("-", "_")])]
    used = set().union(*(_imported(p) for p in packages))
    for dep in meta["dependencies"]:
        name = dep.split(">")[0].split("=")[0].split("[")[0].strip().lower()
        if name == "ebmcore" or name.startswith("ebm-"):
            continue
        module = IMPORT_NAMES.get(name, name.replace("-", "_"))
        assert module in used or (name == "tensorboard" and "torch.utils.tensorboard" in used), (
            f"{project}: declares {dep} but never imports {module}")


@pytest.mark.parametrize("plugin", sorted(d.name for d in (ROOT / "plugins").iterdir() if (d / "pyproject.toml").exists()))
def test_every_plugin_has_a_readme_naming_its_components_and_a_recipe(plugin):
    readme = (ROOT / "plugins" / plugin / "README.md").read_text()
    module = next(iter(tomllib.loads((ROOT / "plugins" / plugin / "pyproject.toml").read_text())["project"]
                       ["entry-points"]["ebm"].values()))
    missing = [e.component.name for e in PluginHost([module], autoload=False).registry
               if f"`{e.component.name}`" not in readme]
    assert not missing, f"plugins/{plugin}/README.md does not name {missing}"
    recipes = re.findall(r"recipes/([\w-]+)\.toml", readme)
    assert recipes and all((ROOT / "recipes" / f"{r}.toml").exists() for r in recipes), recipes
    assert "Depends on" in readme


def test_components_are_built_by_their_class_from_config():
    """One naming everywhere: a component's build function is ``<Class>.from_config``."""
    host = PluginHost([m for d in sorted((ROOT / "plugins").iterdir()) if (d / "pyproject.toml").exists()
                       for m in tomllib.loads((d / "pyproject.toml").read_text())["project"]
                       .get("entry-points", {}).get("ebm", {}).values()], autoload=False)
    odd = [f"{e.component.kind} {e.component.name}: {e.component.build.__qualname__}" for e in host.registry
           if not e.component.build.__qualname__.endswith(".from_config")]
    assert not odd, odd
