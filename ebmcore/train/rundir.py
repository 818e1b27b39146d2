"""Claiming a run directory: a new run's must be empty, a resumed run's must hold the same
recipe (but for :data:`RESUMABLE` keys); either way it is locked to this process."""

from __future__ import annotations

from pathlib import Path

from ebmcore.errors import EbmError
from ebmcore.kit.files import remove_leftovers
from ebmcore.train.lock import NAME as LOCK_NAME
from ebmcore.train.lock import RunLock
from ebmcore.registry import Registry
from ebmcore.train.checkpoint import refuse_pickle
from ebmcore.train.recipe import Recipe, diff, parse_recipe, read_toml

#: keys a resumed run may change: they choose what is evaluated, drawn, logged or kept, and
#: where the directory is, never what is trained
RESUMABLE = ("run.steps", "run.out", "run.eval_samples", "run.log_every", "run.sample_every", "run.eval_every",
             "run.checkpoint_every", "run.hook_timeout_s", "tasks.")


def claim(out: Path, recipe: Recipe, registry: Registry, *, resume: bool) -> RunLock:
    """Create (or, to ``resume``, check) the run directory ``out`` for ``recipe`` and lock it.
    Temporary files a crash left there are removed."""
    try:
        if out.exists() and not out.is_dir():
            raise EbmError(f"{out}: not a directory (--out names the run directory)")
        if resume and not (out / "recipe.toml").is_file():
            raise EbmError(f"{out}: nothing to resume (not a run directory); drop --resume to start it")
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a name too long, a parent that is a file, /proc…
        raise EbmError(f"{out}: cannot create the run directory: {exc.strerror or exc}") from None
    lock = RunLock(out)
    lock.acquire()
    try:
        if resume:
            path = out / "recipe.toml"
            changed = diff(parse_recipe(read_toml(path), registry, source=str(path)), recipe, ignore=RESUMABLE)
            if changed:
                raise EbmError(f"{out}: --resume needs the run's own recipe; these keys differ: "
                               f"{', '.join(changed)} (only {', '.join(k.rstrip('.') for k in RESUMABLE)} "
                               "may change)")
        elif any(p.name != LOCK_NAME for p in out.iterdir()):
            raise EbmError(f"run directory {out} is not empty: continue it with --resume, "
                           "or choose another with --out DIR")
        remove_leftovers(out)
    except BaseException:
        lock.release()
        raise
    return lock


def recipe_path(out: Path) -> Path:
    """The recipe of the run directory ``out``, to read it (readers take no lock)."""
    if out.is_file():
        refuse_pickle(out, expected="a run directory")
        raise EbmError(f"{out}: a file, not a run directory (expected the directory `ebm run` wrote, "
                       "with recipe.toml and checkpoints/)")
    if not (out / "recipe.toml").is_file():
        raise EbmError(f"{out}: not a run directory (no recipe.toml)")
    return out / "recipe.toml"
