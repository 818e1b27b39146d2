"""Documentation that cannot drift: code blocks run, the recipe reference matches the code."""

import os
import re
import subprocess
import sys

import pytest
from support import ROOT, ebm

DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]


def _blocks(path, lang):
    return re.findall(rf"```{lang}\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.parametrize("doc", [d for d in DOCS if _blocks(d, "python")], ids=lambda p: p.name)
def test_python_blocks_in_docs_run(doc, tmp_path):
    """All python blocks of a page run in order, in one fresh interpreter, from the repo root."""
    script = tmp_path / "doc.py"
    script.write_text("\n\n".join(_blocks(doc, "python")))
    r = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr


def test_recipe_reference_matches_the_config_classes():
    """docs/recipes.md embeds `ebm list --markdown`; EBM_UPDATE_DOCS=1 rewrites it."""
    doc = ROOT / "docs" / "recipes.md"
    begin, end = "<!-- BEGIN ebm list --markdown -->\n", "<!-- END ebm list --markdown -->"
    text = doc.read_text()
    start, stop = text.index(begin) + len(begin), text.index(end)
    current, generated = text[start:stop], _reference()
    if os.environ.get("EBM_UPDATE_DOCS"):
        doc.write_text(text[:start] + generated + text[stop:])
        current = generated
    assert current == generated, "docs/recipes.md is stale: run EBM_UPDATE_DOCS=1 pytest tests/test_docs.py"


def _reference():
    """The reference of the bundled plugins only (a third-party plugin installed here must not count)."""
    modules = sorted(d.name.replace("-", "_") for d in (ROOT / "plugins").iterdir() if (d / "pyproject.toml").exists())
    r = ebm(*[a for m in modules for a in ("-p", m)], "list", "--markdown", env={"EBM_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("doc", [d for d in DOCS if _blocks(d, "toml")], ids=lambda p: p.name)
def test_full_recipes_in_docs_validate(doc, tmp_path):
    for i, block in enumerate(_blocks(doc, "toml")):
        if "[objective]" not in block:
            continue  # a fragment, not a whole recipe
        path = tmp_path / f"block{i}.toml"
        path.write_text(block)
        r = ebm("validate", path)
        assert r.returncode == 0, f"{doc.name} block {i}: {r.stderr}"
