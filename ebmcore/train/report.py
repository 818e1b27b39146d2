"""``ebm report``: runs on one self-contained HTML page — pictures embedded, no script, no
server, nothing fetched — to look at or to send.

For each run: the sample pictures over time (at most :data:`OVER_TIME` of them, evenly
spaced, the last included) and its other pictures, the tasks' tables and pictures, timing
and the resolved recipe. For all runs together: every metric logged more than once as a
curve over steps, the runs overlaid, a score drawn beside its yardsticks (a band from the
held-out floor to the fitted Gaussian); the latest value of every metric side by side; the
recipe keys whose values differ, highlighted. A run still training is shown as far as its
records go. Files are read as a reader of the run directory (no lock); a picture that is a
symlink, not a regular file, not a PNG/GIF or over :data:`PICTURE_LIMIT` is left out, and
the page says so.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import attrs

from ebmcore.errors import EbmError
from ebmcore.kit.files import atomic_write, human_bytes, read_regular
from ebmcore.train.log import MetricsLog
from ebmcore.train.recipe import read_toml
from ebmcore.train.rundir import recipe_path

#: sample pictures over time shown per run
OVER_TIME = 8
#: the largest picture embedded
PICTURE_LIMIT = 16 * 2**20
#: suffixes of a score's yardsticks (``fd/heldout``…), drawn with the score, not on their own
YARDSTICKS = ("heldout", "gaussian", "noise", "vs_gaussian")
KINDS = {b"\x89PNG\r\n\x1a\n": "image/png", b"GIF87a": "image/gif", b"GIF89a": "image/gif"}
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


@attrs.frozen
class RunView:
    """What the page shows of one run directory."""

    directory: Path
    name: str
    recipe: dict[str, Any]
    records: list[dict[str, float]]
    tasks: dict[str, dict[str, float]]
    #: each metric's last value, with its step
    latest: dict[str, tuple[int, float]]

    @classmethod
    def read(cls, directory: Path, name: str) -> RunView:
        recipe = read_toml(recipe_path(directory))
        records = MetricsLog(directory / "metrics.jsonl").records()
        tasks, path = {}, directory / "tasks.json"
        if path.exists():
            try:
                tasks = json.loads(read_regular(path, limit=PICTURE_LIMIT, what="the tasks' results"))
            except ValueError as exc:
                raise EbmError(f"{path}: not the tasks' results (bad JSON: {exc})") from None
            if not isinstance(tasks, dict) or not all(
                    isinstance(m, dict) and all(isinstance(v, (int, float)) for v in m.values()) for m in tasks.values()):
                raise EbmError(f"{path}: not the tasks' results (expected {{label: {{metric: number}}}})")
        latest: dict[str, tuple[int, float]] = {}
        for r in records:
            latest.update({k: (r["step"], v) for k, v in r.items() if k != "step" and isinstance(v, (int, float))})
        return cls(directory, name, recipe, records, tasks, latest)

    @property
    def step(self) -> int:
        return self.records[-1]["step"] if self.records else 0

    @property
    def finished(self) -> bool:
        return self.step == self.recipe.get("run", {}).get("steps") and "time/elapsed_s" in self.latest

    def series(self, metric: str) -> tuple[list[int], list[float]]:
        points = [(r["step"], r[metric]) for r in self.records if isinstance(r.get(metric), (int, float))]
        return [s for s, _ in points], [v for _, v in points]


def write_report(directories: list[Path], out: Path) -> Path:
    """The page for ``directories`` (run directories), written atomically to ``out``."""
    if out.is_dir():
        raise EbmError(f"--out {out}: a directory; give the page's file name (e.g. {out / 'report.html'})")
    names = [d.resolve().name for d in directories]
    if len(set(names)) < len(names):  # same folder names: tell them apart by their paths
        names = [str(d) for d in directories]
    runs = [RunView.read(d, n) for d, n in zip(directories, names, strict=True)]
    skipped: list[str] = []
    sections = {"summary": _summary(runs), "differences": _differences(runs),
                "curves": "<h2>Curves</h2>" + _curves(runs), "latest": "<h2>Latest values</h2>" + _latest(runs),
                "pictures": "<h2>Pictures</h2>" + "".join(_pictures(run, skipped) for run in runs),
                "recipes": "<h2>Recipes</h2>" + "".join(
                    f"<details><summary>{html.escape(r.name)}</summary><pre>"
                    f"{html.escape(json.dumps(r.recipe, indent=1))}</pre></details>" for r in runs)}
    if skipped:
        sections["left-out"] = "<h2>Left out</h2><ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in skipped) + "</ul>"
    parts = [_HEAD.format(title=html.escape(", ".join(names))), "<h1>ebm report</h1>"]
    parts += [f"<section id='{name}'>{body}</section>" for name, body in sections.items() if body]
    page = "\n".join(parts + ["</body></html>\n"])
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, page.encode())
    except OSError as exc:
        raise EbmError(f"--out {out}: cannot write the page: {exc.strerror or exc}") from None
    return out


def _summary(runs: list[RunView]) -> str:
    rows = []
    for i, r in enumerate(runs):
        latest = r.latest
        elapsed = latest.get("time/elapsed_s", (0, None))[1]
        state = "finished" if r.finished else f"at step {r.step} (training, or stopped)"
        timing = f"{elapsed:.0f} s, {r.step / elapsed:.1f} steps/s" if elapsed else "–"
        tasks = latest.get("time/tasks_s", (0, None))[1]
        rows.append(f"<tr><td><span class='dot' style='background:{COLOURS[i % len(COLOURS)]}'></span>"
                    f"{html.escape(r.name)}</td><td>{state}</td><td>{r.step} of "
                    f"{r.recipe.get('run', {}).get('steps', '?')}</td><td>{timing}</td>"
                    f"<td>{'–' if tasks is None else f'{tasks:.0f} s'}</td></tr>")
    return ("<table><tr><th>run</th><th>state</th><th>steps</th><th>training time</th><th>tasks</th></tr>"
            + "".join(rows) + "</table>")


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _differences(runs: list[RunView]) -> str:
    if len(runs) < 2:
        return ""
    flat = [_flat(r.recipe) for r in runs]
    keys = sorted({k for f in flat for k in f if k != "run.out"})
    differ = [k for k in keys if len({json.dumps(f.get(k)) for f in flat}) > 1]
    if not differ:
        return "<p>The recipes are the same (but for run.out).</p>"
    head = "".join(f"<th>{html.escape(r.name)}</th>" for r in runs)
    rows = "".join(f"<tr class='diff'><td>{html.escape(k)}</td>"
                   + "".join(f"<td>{html.escape(json.dumps(f.get(k, '(absent)')))}</td>" for f in flat) + "</tr>"
                   for k in differ)
    return f"<h2>Recipe keys that differ</h2><table><tr><th>key</th>{head}</tr>{rows}</table>"


def _charted(runs: list[RunView]) -> list[str]:
    """Metrics with a curve (logged more than once), less the yardsticks drawn with their score."""
    metrics = {k for r in runs for k in r.latest if len(r.series(k)[0]) > 1 and not k.startswith("time/")}
    return sorted(k for k in metrics if not (k.rpartition("/")[2] in YARDSTICKS and k.rpartition("/")[0] in metrics))


def _curves(runs: list[RunView]) -> str:
    figures = []
    for metric in _charted(runs):
        caption = html.escape(metric)
        noise = [r.latest[f"{metric}/noise"][1] for r in runs if f"{metric}/noise" in r.latest]
        if any(f"{metric}/gaussian" in r.latest for r in runs):
            caption += (": band from the held-out data (floor, dotted) to a fitted Gaussian (dashed)"
                        + (f"; noise scores {noise[0]:.4g}" if noise else ""))
        figures.append(f"<figure><img alt='{html.escape(metric)}' src='{_data_uri(_chart(metric, runs))}'>"
                       f"<figcaption>{caption}</figcaption></figure>")
    return "<div class='grid'>" + "".join(figures) + "</div>" if figures else "<p>No metric logged twice yet.</p>"


def _chart(metric: str, runs: list[RunView]) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2, 2.8), dpi=80)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, r in enumerate(runs):
        colour = COLOURS[i % len(COLOURS)]
        steps, values = r.series(metric)
        ax.plot(steps, values, color=colour, lw=1.2, label=r.name)
        floor, gaussian = r.series(f"{metric}/heldout"), r.series(f"{metric}/gaussian")
        if floor[0] and gaussian[0] and floor[0] == gaussian[0]:  # the yardsticks, as a band
            ax.fill_between(floor[0], floor[1], gaussian[1], color=colour, alpha=0.08, lw=0)
            ax.plot(*floor, color=colour, lw=0.8, ls=":")
            ax.plot(*gaussian, color=colour, lw=0.8, ls="--")
    ax.set_title(metric, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_xlabel("step", fontsize=7)
    if len(runs) > 1:
        ax.legend(fontsize=6)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _latest(runs: list[RunView]) -> str:
    latest = [r.latest for r in runs]
    keys = sorted({k for m in latest for k in m})
    head = "".join(f"<th>{html.escape(r.name)}</th>" for r in runs)
    rows = []
    for k in keys:
        cells = []
        for r, m in zip(runs, latest, strict=True):
            step, value = m.get(k, (None, None))
            note = "" if step in (None, r.step) else f" <small>(step {step})</small>"
            cells.append("<td>–</td>" if value is None else f"<td>{value:.5g}{note}</td>")
        rows.append(f"<tr><td>{html.escape(k)}</td>{''.join(cells)}</tr>")
    return f"<table><tr><th>metric</th>{head}</tr>{''.join(rows)}</table>"


def _pictures(run: RunView, skipped: list[str]) -> str:
    d = run.directory
    over_time = sorted((d / "samples").glob("step-*.*")) if (d / "samples").is_dir() else []
    if len(over_time) > OVER_TIME:
        over_time = [over_time[round(i * (len(over_time) - 1) / (OVER_TIME - 1))] for i in range(OVER_TIME)]
    parts = [f"<h3>{html.escape(run.name)}</h3>"]
    shown = [(p, p.stem) for p in over_time]
    shown += [(p, p.name) for p in sorted(d.glob("*")) if p.suffix in (".png", ".gif")]
    for label in run.tasks:
        folder = d / "tasks" / label
        if folder.is_dir():
            shown += [(p, f"{label}: {p.relative_to(folder)}") for p in sorted(folder.rglob("*"))
                      if p.suffix in (".png", ".gif")]
    figures = [_figure(p, caption, skipped) for p, caption in shown]
    parts.append("<div class='grid'>" + "".join(f for f in figures if f) + "</div>")
    for label, metrics in run.tasks.items():
        rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.5g}</td></tr>" for k, v in metrics.items())
        parts.append(f"<h4>task {html.escape(label)}</h4><table>{rows}</table>")
    return "\n".join(parts)


def _figure(path: Path, caption: str, skipped: list[str]) -> str | None:
    if path.is_symlink():
        skipped.append(f"{path}: a symbolic link (only the run's own files are embedded)")
        return None
    try:
        data = read_regular(path, limit=PICTURE_LIMIT, what="a picture")
    except EbmError as exc:
        skipped.append(str(exc))
        return None
    kind = next((k for magic, k in KINDS.items() if data.startswith(magic)), None)
    if kind is None:
        skipped.append(f"{path}: not a PNG or GIF")
        return None
    return (f"<figure><img src='{_data_uri(data, kind)}'>"
            f"<figcaption>{html.escape(caption)} <small>({human_bytes(len(data))})</small></figcaption></figure>")


def _data_uri(data: bytes, kind: str = "image/png") -> str:
    return f"data:{kind};base64," + base64.b64encode(data).decode()


_HEAD = """<!doctype html><html><head><meta charset='utf-8'><title>ebm report: {title}</title>
<style>body{{font:14px sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}} tr.diff td{{background:#fff3bf}}
.grid{{display:flex;flex-wrap:wrap;gap:8px}} figure{{margin:0}} figure{{max-width:320px}} figure img{{max-width:300px}}
figcaption{{font-size:12px}} .dot{{display:inline-block;width:10px;height:10px;margin-right:6px}}</style>
</head><body>"""
