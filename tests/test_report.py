"""``ebm report``: one self-contained HTML page of runs — their curves with the yardsticks,
pictures over time, latest values side by side, the recipe keys that differ — and, where
Debian's chromium is installed, the page as a browser shows it."""

import copy
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image
from support import TINY, ebm

from ebmcore.train import run_recipe

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three tiny toy runs that differ in seed and step size, scored every 10 steps."""
    root = tmp_path_factory.mktemp("report")
    dirs = []
    for i, step_size in enumerate([0.01, 0.01, 0.02]):
        recipe = copy.deepcopy(TINY)
        recipe["run"].update(seed=i, eval_every=10, sample_every=10)
        recipe["sampler"]["step_size"] = step_size
        run_recipe(recipe, out=str(root / f"run{i}"), progress=False)
        dirs.append(root / f"run{i}")
    return dirs


def test_the_page_holds_every_run_in_one_file_under_5_mb(runs, tmp_path):
    page = tmp_path / "report.html"
    r = ebm("report", *runs, "--out", page)
    assert r.returncode == 0, r.stderr
    text = page.read_text()
    assert page.stat().st_size <= 5 * 2**20
    assert "http://" not in text and "https://" not in text and "<script" not in text  # nothing fetched, no code
    curves = re.search(r"<section id='curves'>(.*?)</section>", text, re.S).group(1)
    charted = re.findall(r"<img alt='([^']+)' src='data:image/png;base64,", curves)
    assert {"mmd2", "loss/energy", "energy/data"} <= set(charted) and "mmd2/heldout" not in charted
    assert "mmd2: band from the held-out data (floor, dotted) to a fitted Gaussian" in curves
    # the keys that differ, and only those (run.out differs always and is not shown)
    differ = re.findall(r"<tr class='diff'><td>([^<]+)</td>", text)
    assert differ == ["run.seed", "sampler.step_size"]
    # latest values beside each other, equal to each run's final record
    final = [json.loads((d / "metrics.jsonl").read_text().splitlines()[-1]) for d in runs]
    row = re.search(r"<tr><td>mmd2</td>((?:<td>[^<]*</td>){3})</tr>", text).group(1)
    assert re.findall(r"<td>([^<]*)</td>", row) == [f"{f['mmd2']:.5g}" for f in final]
    # pictures over time: the step pictures then the final ones, all embedded
    pictures = re.search(r"<section id='pictures'>(.*?)</section>", text, re.S).group(1)
    assert pictures.count("step-000010") == 3 and pictures.count("density.png") == 3
    assert "finished" in text


def test_a_run_still_training_shows_as_far_as_it_got(runs, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(runs[0], partial)
    lines = (partial / "metrics.jsonl").read_text().splitlines()
    (partial / "metrics.jsonl").write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])  # and a torn line
    r = ebm("report", partial, "--out", tmp_path / "p.html")
    assert r.returncode == 0, r.stderr
    assert "at step 15 (training, or stopped)" in (tmp_path / "p.html").read_text()


def test_planted_files_are_left_out_and_named(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs[0], run)
    (tmp_path / "secret.png").write_bytes(b"\x89PNG\r\n\x1a\nsecret")
    (run / "link.png").symlink_to(tmp_path / "secret.png")
    os.mkfifo(run / "fifo.png")
    (run / "fake.png").write_text("not a picture")
    r = ebm("report", run, "--out", tmp_path / "p.html", timeout=60)
    assert r.returncode == 0, r.stderr
    left = re.search(r"<section id='left-out'>(.*?)</section>", (tmp_path / "p.html").read_text(), re.S).group(1)
    assert "link.png: a symbolic link" in left and "fifo.png: a FIFO" in left and "fake.png: not a PNG or GIF" in left
    assert "secret" not in (tmp_path / "p.html").read_text().replace("secret.png", "")


def test_bad_arguments_are_errors_naming_them(runs, tmp_path):
    r = ebm("report", tmp_path, "--out", tmp_path / "p.html")
    assert r.returncode == 2 and "not a run directory" in r.stderr and r.stderr.startswith("error:")
    r = ebm("report", runs[0], "--out", tmp_path)
    assert r.returncode == 2 and "a directory" in r.stderr
    r = ebm("report", runs[0], "--out", runs[0] / "checkpoints" / "p.html")
    assert r.returncode == 2 and "checkpoints/" in r.stderr


def _chromium(url: str, shot, tmp_path) -> str:
    """Load ``url`` headless, screenshot it; the browser's log (console messages included)."""
    r = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--enable-logging=stderr", "--v=1", "--window-size=1200,900", f"--screenshot={shot}",
                        f"--user-data-dir={tmp_path / 'profile'}", url],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    return r.stderr


def _console_errors(log: str) -> list[str]:
    """The page's console messages: it has no script, so any is an error (Chromium logs them all
    at INFO, console.error and uncaught exceptions included)."""
    return [line for line in log.splitlines() if ":CONSOLE" in line]


def _ink(shot) -> float:
    """The share of pixels that are not the page's white background."""
    pixels = np.asarray(Image.open(shot).convert("L"))
    return float((pixels < 235).mean())


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_the_page_loads_in_chromium_with_curves_and_pictures_drawn(runs, tmp_path):
    page = tmp_path / "report.html"
    assert ebm("report", *runs, "--out", page).returncode == 0
    # the log shows console errors: a page with one is caught
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><script>console.error('broken page')</script></body></html>")
    assert _console_errors(_chromium(broken.as_uri(), tmp_path / "broken.png", tmp_path))
    assert not _console_errors(_chromium(page.as_uri(), tmp_path / "page.png", tmp_path))
    # each region alone on a page (the others hidden), with its pictures and with them hidden:
    # the pictures are drawn where the region is (a region that failed to draw its images
    # would show only its captions)
    text = page.read_text()
    for region in ("curves", "pictures"):
        alone = text.replace("</style>", f"section:not(#{region}), h1 {{display:none}}</style>")
        ink = {}
        for variant, html in {"drawn": alone, "captions": alone.replace("<img ", "<img hidden ")}.items():
            (tmp_path / f"{region}-{variant}.html").write_text(html)
            shot = tmp_path / f"{region}-{variant}.png"
            assert not _console_errors(_chromium((tmp_path / f"{region}-{variant}.html").as_uri(), shot, tmp_path))
            ink[variant] = _ink(shot)
        assert ink["drawn"] > 0.01 and ink["drawn"] > 2 * ink["captions"], (region, ink)


def test_a_damaged_tasks_file_is_an_error_naming_it(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs[0], run)
    for text in ("{not json", '["a list"]', '{"t": {"m": "text"}}'):
        (run / "tasks.json").write_text(text)
        r = ebm("report", run, "--out", tmp_path / "p.html")
        assert r.returncode == 2 and f"{run / 'tasks.json'}: not the tasks' results" in r.stderr, r.stderr
