"""The ``ebm`` command. Bad input of any kind exits with status 2 and no traceback."""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import traceback
from pathlib import Path

from ebmcore import config as cfg
from ebmcore.errors import DivergenceError, EbmError, Interrupted
from ebmcore.plugins import PluginHost, distribution_of
from ebmcore.registry import ALL_KINDS


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ebm", description="Train and sample energy-based models from TOML recipes.")
    p.add_argument("-p", dest="plugins", action="append", default=[], metavar="MODULE",
                   help="load a plugin module explicitly (repeatable; with EBM_DISABLE_PLUGIN_AUTOLOAD=1 "
                        "these are the only plugins)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="train a recipe")
    r.add_argument("recipe", type=Path)
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set sampler.step_size=0.02 (TOML value)")
    r.add_argument("--out", help="run directory (same as --set run.out=DIR)")
    r.add_argument("--resume", action="store_true", help="continue the run in the run directory")
    r.add_argument("--quiet", action="store_true", help="no progress bar")

    v = sub.add_parser("validate", help="check a recipe without running it")
    v.add_argument("recipe", type=Path)
    v.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    ls = sub.add_parser("list", help="list installed components")
    ls.add_argument("kind", nargs="?", choices=ALL_KINDS, help="only this kind")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.add_argument("--markdown", action="store_true", help="a recipe reference (as in docs/recipes.md)")

    s = sub.add_parser("sample", help="draw samples from a run's latest checkpoint")
    s.add_argument("run_dir", type=Path)
    s.add_argument("-n", type=int, default=64, help="number of samples")
    s.add_argument("--out", type=Path, help="picture path (default RUN_DIR/sample.png); the tensor "
                                            "goes beside it as .safetensors")
    s.add_argument("--seed", type=_seed, default=0, help="an integer in 0..2**63-1")
    s.add_argument("--label", type=int, help="class label of every sample (label-conditional models; "
                                             "default: every class in turn)")

    e = sub.add_parser("eval", help="run a finished run's tasks ([tasks.*]) again on its latest checkpoint")
    e.add_argument("run_dir", type=Path)
    e.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override the stored recipe, e.g. --set tasks.inpaint.n=64 or add a task with "
                        "--set tasks.ood.type=ood")
    e.add_argument("--out", type=Path, help="where tasks.json and the tasks' pictures go (default RUN_DIR)")

    rp = sub.add_parser("report", help="one self-contained HTML page of runs: curves, pictures, tables")
    rp.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    rp.add_argument("--out", type=Path, default=Path("report.html"), help="the page (default report.html)")

    pl = sub.add_parser("plugins", help="installed plugin distributions")
    pl.add_argument("--json", action="store_true")
    return p


def _seed(text: str) -> int:
    value = int(text)  # argparse reports a ValueError as "invalid _seed value"
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"must be in 0..2**63-1, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    host = None
    try:
        host = PluginHost(args.plugins)
        for failure in host.failures:
            print(f"warning: {failure}", file=sys.stderr)
        for idle in host.idle:
            print(f"warning: plugin '{idle.name}' from '{idle.distribution}' provides nothing: no component "
                  "(ebm_components) and no observer hook (is @ebmcore.hookimpl missing?)", file=sys.stderr)
        for kind, name in host.registry.conflicts:
            print(f"warning: {host.registry.conflict_message(kind, name)}", file=sys.stderr)
        return _COMMANDS[args.command](args, host)
    except EbmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DivergenceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Interrupted as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (Exception, SystemExit) as exc:
        if os.environ.get(TRACEBACK_ENV):
            raise
        print(f"error: {unexpected(exc, host)}", file=sys.stderr)
        return 1


TRACEBACK_ENV = "EBM_TRACEBACK"


def unexpected(exc: BaseException, host: PluginHost | None) -> str:
    """One line for an error that is not bad input: where it came from (the plugin whose code
    raised it, by distribution), what it is, and what was kept."""
    if isinstance(exc, OSError):
        what = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
        if exc.errno == errno.ENOSPC:
            what += " (the last complete checkpoint is kept; free space, then --resume)"
    elif isinstance(exc, MemoryError):
        what = "out of memory (a smaller batch, chain count or model may fit)"
    elif isinstance(exc, RecursionError):
        what = "nested too deeply (RecursionError)"
    elif isinstance(exc, SystemExit):
        what = f"sys.exit({exc.code!r}) called"
    else:
        what = f"{type(exc).__name__}: {str(exc)[:300]}"
    dists = {p.distribution for p in host.plugins} if host else set()
    for frame, line in reversed(list(traceback.walk_tb(exc.__traceback__))):
        dist = distribution_of(str(frame.f_globals.get("__name__", "")))
        if dist in dists:
            return f"in plugin '{dist}' ({frame.f_code.co_filename}:{line}): {what}"
    return f"{what} (set {TRACEBACK_ENV}=1 for the traceback)"


def _run(args: argparse.Namespace, host: PluginHost) -> int:
    from ebmcore.train.run import run_recipe

    record = run_recipe(args.recipe, overrides=args.overrides, out=args.out, resume=args.resume,
                        host=host, progress=False if args.quiet else None)
    shown = {k: v for k, v in record.items() if not k.startswith("time/")}
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for the run
        print(json.dumps(shown, indent=1))
    return 0


def _validate(args: argparse.Namespace, host: PluginHost) -> int:
    from ebmcore.train.recipe import load_recipe

    recipe = load_recipe(args.recipe, host.registry, args.overrides)
    parts = ", ".join([f"{k}={s.type}" for k, s in recipe.sections.items()]
                      + [f"tasks.{label}={s.type}" for label, s in recipe.tasks.items()])
    print(f"{args.recipe}: ok ({parts})")
    return 0


def _list(args: argparse.Namespace, host: PluginHost) -> int:
    entries = [e for e in host.registry if args.kind in (None, e.component.kind)]
    rows = [{"kind": e.component.kind, "name": e.component.name, "distribution": e.distribution,
             "doc": e.component.summary, "fields": cfg.field_docs(e.component.config)} for e in entries]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if args.markdown:
        print(markdown_reference(rows), end="")
        return 0
    if not rows:
        print("no components installed")
    for row in rows:
        print(f"{row['kind']:<9} {row['name']:<18} [{row['distribution']}] {row['doc']}")
        for f in row["fields"]:
            print(f"{'':<11}{f['name']}: {f['type']} = {f['default']}" + (f"  # {f['doc']}" if f["doc"] else ""))
    return 0


def markdown_reference(rows: list[dict]) -> str:
    """Recipe sections as Markdown tables: [run], [optim.<group>], then each component."""
    from ebmcore.train.recipe import OptimConfig, RunConfig

    def table(title: str, doc: str, fields: list[dict]) -> str:
        lines = [f"### {title}", "", doc, ""]
        if fields:
            lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
            pipe = "\\|"  # a literal | would end the table cell
            lines += [f"| `{f['name']}` | `{f['type'].replace('|', pipe)}` | `{f['default']}` | {f['doc']} |"
                      for f in fields]
        return "\n".join(lines) + "\n\n"

    out = table("[run]", RunConfig.__doc__.strip(), cfg.field_docs(RunConfig))
    out += table("[optim.<group>]", OptimConfig.__doc__.strip(), cfg.field_docs(OptimConfig))
    for r in rows:
        where = "[tasks.<label>]" if r["kind"] == "task" else f"[{r['kind']}]"
        out += table(f"{where} type = \"{r['name']}\"", f"{r['doc']} (from `{r['distribution']}`)",
                     r["fields"])
    return out


def _sample(args: argparse.Namespace, host: PluginHost) -> int:
    import safetensors.torch
    import torch

    from ebmcore.kit.files import atomic_write
    from ebmcore.train.run import Run, check_samples_fit

    if args.n < 1:
        raise EbmError(f"-n must be at least 1, got {args.n}")
    run = Run.open(args.run_dir, host=host)
    check_samples_fit("-n", args.n, run.data.event_shape, run.device)
    out = _output(args.out or args.run_dir / "sample.png", args.run_dir, "--out")
    rng = torch.Generator(device=run.device).manual_seed(args.seed)
    cond = None
    if args.label is not None:
        classes = run.data.num_classes
        if not run.data.conditional or not classes:
            raise EbmError(f"--label: {args.run_dir} is not a label-conditional model "
                           "(its data has no conditional = true)")
        if not 0 <= args.label < classes:
            raise EbmError(f"--label must be in 0..{classes - 1}, got {args.label}")
        cond = torch.full((args.n,), args.label, dtype=torch.long, device=run.device)
    x = run.objective.sample(args.n, rng=rng, cond=cond).cpu()
    run.data.save_samples(x, out)
    atomic_write(out.with_suffix(".safetensors"), safetensors.torch.save({"x": x}))
    print(f"{args.n} samples from step {run.step}: {out} and {out.with_suffix('.safetensors')}")
    return 0


def _output(path: Path, run_dir: Path, flag: str, *, folder: bool = False) -> Path:
    """An output path of ``sample``/``eval``: a file (or, with ``folder``, a directory) made
    ready to write, never inside the run's checkpoints."""
    if path.resolve().is_relative_to((run_dir / "checkpoints").resolve()):
        raise EbmError(f"{flag} {path}: inside the run's checkpoints/ folder, which only the run writes")
    if folder and path.exists() and not path.is_dir():
        raise EbmError(f"{flag} {path}: a file, not a directory")
    if not folder and path.is_dir():
        raise EbmError(f"{flag} {path}: a directory; give the picture's file name (e.g. {path / 'sample.png'})")
    try:
        (path if folder else path.parent).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EbmError(f"{flag} {path}: cannot create its folder: {exc.strerror or exc}") from None
    return path


def _eval(args: argparse.Namespace, host: PluginHost) -> int:
    from ebmcore.train.lock import RunLock
    from ebmcore.train.run import Run

    run = Run.open(args.run_dir, host=host, overrides=args.overrides)
    if not run.tasks:
        raise EbmError(f"{args.run_dir}: the recipe has no [tasks.<label>] tables; add one with "
                       "--set tasks.<label>.type=NAME (installed tasks: "
                       f"{', '.join(host.registry.names('task')) or 'none'})")
    out = _output(args.out or args.run_dir, args.run_dir, "--out", folder=True)
    # writing into the run directory itself makes this a writer of it: not while the run goes on
    lock = RunLock(args.run_dir) if out.resolve() == args.run_dir.resolve() else None
    if lock:
        lock.acquire()
    try:
        metrics = run.run_tasks(out)
    finally:
        if lock:
            lock.release()
    print(json.dumps({"step": run.step, **metrics}, indent=1))
    print(f"tasks of step {run.step}: {out / 'tasks.json'}", file=sys.stderr)
    return 0


def _plugins(args: argparse.Namespace, host: PluginHost) -> int:
    rows = [{"name": p.name, "distribution": p.distribution, "version": p.version} for p in host.plugins]
    failed = [{"name": f.name, "distribution": f.distribution, "error": f.error} for f in host.failures]
    if args.json:
        print(json.dumps({"plugins": rows, "failed": failed}, indent=1))
        return 0
    for r in rows:
        print(f"{r['distribution']} {r['version']} (plugin '{r['name']}')")
    if not rows:
        print("no plugins loaded")
    return 0


def _report(args: argparse.Namespace, host: PluginHost) -> int:
    from ebmcore.train.report import write_report

    for d in args.run_dirs:  # the page is never written into a run's checkpoints
        _output(args.out, d, "--out")
    out = write_report(args.run_dirs, args.out)
    print(f"{out} ({out.stat().st_size / 2**20:.1f} MiB): {len(args.run_dirs)} run(s)")
    return 0


_COMMANDS = {"run": _run, "validate": _validate, "list": _list, "sample": _sample, "eval": _eval,
             "report": _report, "plugins": _plugins}
