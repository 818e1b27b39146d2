"""Recipes: TOML files that combine components into an experiment.

Each component section (``[data]``, ``[energy]``, ``[sampler]``, ``[generator]``,
``[objective]``) names its ``type``; the rest of the section is structured with that
component's config class. ``[run]`` and ``[optim.<group>]`` belong to the runner.
``[tasks.<label>]`` tables (any number) are components of kind ``task``, structured the
same way and run after training.
"""

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import attrs
import tomli_w

from ebmcore import config as cfg
from ebmcore.errors import WHY_NO_PICKLE, EbmError, PluginError, did_you_mean, pickle_format
from ebmcore.kit.files import atomic_write, read_regular
from ebmcore.registry import KINDS, Registry

ALWAYS_REQUIRED = ("data", "energy", "objective")


@attrs.frozen
class RunConfig:
    """How a run is driven: length, seed, outputs."""

    seed: int = cfg.doc("seed of every random number generator of the run", default=0)
    steps: int = cfg.positive("optimisation steps", default=1000)
    out: str = cfg.doc("run directory", default="runs/run")
    device: str = attrs.field(
        default="cpu", validator=lambda _i, _a, v: _device(v),
        metadata={"doc": "torch device: 'auto' (cuda, then mps, then cpu), 'cpu', 'cuda', 'cuda:N' or "
                         "'mps'; under torchrun 'cuda' and 'auto' mean cuda:LOCAL_RANK"})
    threads: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0)),
        metadata={"doc": "torch's intra-op CPU threads for the run (torch.set_num_threads; default: torch's, "
                         "one per core). Small models (2-D toys) run faster and use less CPU on one"})
    precision: Literal["fp32", "bf16"] = cfg.doc(
        "'bf16': the objective's loss (the energy's forward) runs under bf16 autocast; parameters, "
        "gradients and optimizer state stay fp32", default="fp32")
    sampling_precision: Literal["fp32", "bf16"] = cfg.doc(
        "precision of MCMC chains: 'fp32' (even when precision = 'bf16') or 'bf16' autocast", default="fp32")
    log_every: int = cfg.positive("steps between metrics.jsonl records", default=10)
    sample_every: int = cfg.non_negative("steps between sample pictures (0: only at the end)", default=0)
    checkpoint_every: int = cfg.non_negative("steps between checkpoints (0: only at the end)", default=500)
    eval_every: int = cfg.non_negative("steps between evaluations (0: only at the end)", default=0)
    eval_samples: int = cfg.positive("samples drawn by fresh chains for evaluation and pictures", default=2000)
    on_divergence: Literal["stop", "rollback"] = cfg.doc(
        "when a loss, energy, gradient or sample is non-finite or an energy exceeds max_abs_energy: "
        "'stop' (exit 1, naming the step and the quantity; the last good checkpoint is kept) or "
        "'rollback' (reload the last good checkpoint, scale the learning rates by rollback_lr_factor, "
        "continue)", default="stop")
    max_abs_energy: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0)),
        metadata={"doc": "an energy metric (energy/...) whose magnitude exceeds this counts as "
                         "divergence (default: only non-finite values do)"})
    rollback_lr_factor: float = attrs.field(
        default=0.5, validator=[attrs.validators.gt(0), attrs.validators.lt(1)],
        metadata={"doc": "on_divergence = 'rollback': learning rates are multiplied by this after each "
                         "rollback, in (0, 1)"})
    max_rollbacks: int = cfg.positive("on_divergence = 'rollback': rollbacks allowed before the run "
                                      "stops as with 'stop'", default=3)
    hook_timeout_s: float = cfg.positive(
        "seconds an observer hook (a plugin's ebm_step_end, ebm_log…) may take; after that the run "
        "checkpoints and stops, naming the plugin", default=300.0)


DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _device(value: str) -> None:
    if not DEVICE_PATTERN.match(value):
        raise ValueError(f"must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {value!r}")


def _betas(_inst: Any, _attr: Any, value: tuple[float, float]) -> None:
    if not all(0 <= b < 1 for b in value):
        raise ValueError(f"must both be in [0, 1), got {list(value)}")


@attrs.frozen
class OptimConfig:
    """The optimizer of one parameter group."""

    type: Literal["adam", "adamw", "sgd"] = cfg.doc("optimizer", default="adam")
    lr: float = cfg.positive("learning rate", default=1e-4)
    betas: tuple[float, float] = attrs.field(default=(0.9, 0.999), validator=_betas,
                                             metadata={"doc": "Adam's (β1, β2)"})
    momentum: float = cfg.non_negative("SGD momentum", default=0.0)
    weight_decay: float = cfg.non_negative("weight decay", default=0.0)
    grad_clip: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0)),
        metadata={"doc": "clip the group's gradient norm to this value"})
    warmup_steps: int = cfg.non_negative("updates over which the learning rate rises linearly from lr/warmup_steps "
                                         "to lr (JEM's warm-up; 0: none)", default=0)
    cooldown_steps: int = cfg.non_negative("the run's last updates (of run.steps), over which the learning rate "
                                           "falls linearly from lr to lr/cooldown_steps (0: none)", default=0)


@attrs.frozen
class Section:
    """A component section: the registry name and its structured config."""

    type: str
    config: Any


@attrs.frozen
class Recipe:
    run: RunConfig
    sections: dict[str, Section]
    optim: dict[str, OptimConfig]
    #: ``[tasks.<label>]``: components of kind ``task``, by label, in recipe order
    tasks: dict[str, Section] = attrs.field(factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The fully resolved recipe as plain data (defaults filled in)."""
        out: dict[str, Any] = {"run": cfg.unstructure(self.run)}
        for kind, sec in self.sections.items():
            out[kind] = {"type": sec.type, **cfg.unstructure(sec.config)}
        if self.optim:
            out["optim"] = {g: cfg.unstructure(o) for g, o in self.optim.items()}
        if self.tasks:
            out["tasks"] = {label: {"type": sec.type, **cfg.unstructure(sec.config)}
                            for label, sec in self.tasks.items()}
        return out

    def write(self, path: Path) -> None:
        atomic_write(path, tomli_w.dumps(self.to_dict()).encode())


#: the largest recipe file read (a recipe is a few KiB; this only stops a huge or endless input)
MAX_RECIPE_BYTES = 16 * 2**20
#: tables and arrays nested inside each other, at most (recipes use 3; structuring recurses)
MAX_DEPTH = 64


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file; any problem (missing, not a regular file, too large, not UTF-8, not
    TOML, nested too deeply) names the file."""
    path = Path(path)
    if not os.path.exists(path):  # never raises (a name too long is no such file either)
        raise EbmError(f"{path}: no such recipe file")
    raw = read_regular(path, limit=MAX_RECIPE_BYTES, what="a recipe")
    if (kind := pickle_format(raw)) is not None:
        raise EbmError(f"{path}: this is {kind}, not a recipe; {WHY_NO_PICKLE}")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise EbmError(f"{path}: not UTF-8 text (byte {exc.start}): is it really a recipe?") from None
    except tomllib.TOMLDecodeError as exc:
        raise EbmError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib parses nested arrays and inline tables recursively
        raise EbmError(f"{path}: tables or arrays nested too deeply to parse "
                       f"(at most {MAX_DEPTH} levels)") from None
    _check_depth(data, str(path))
    return data


def _check_depth(data: dict[str, Any], source: str) -> None:
    """Refuse tables or arrays nested more than :data:`MAX_DEPTH` deep, naming the key where
    they go too deep. Iterative: the data it refuses is too deep for recursion."""
    stack: list[tuple[Any, str, int]] = [(data, "$", 0)]
    while stack:
        node, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise EbmError(f"{source}: {where}: tables or arrays nested more than {MAX_DEPTH} deep")
        children = node.items() if isinstance(node, dict) else enumerate(node)
        stack += [(v, f"{where}.{k}" if isinstance(node, dict) else f"{where}[{k}]", depth + 1)
                  for k, v in children if isinstance(v, (dict, list))]


#: a task label: it names metrics (``<label>/<metric>``) and a folder of the run directory
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$")
_BARE_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-./]*$")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"sampler.step_size=0.02"`` → (["sampler", "step_size"], 0.02).

    The value is TOML; a bare word that is not TOML (``data.name=moons``) is a string.
    """
    key, sep, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not _KEY.match(key):
        raise EbmError(f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. sampler.step_size=0.02")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        if not _BARE_WORD.match(value):
            raise EbmError(f"--set {text!r}: cannot parse {value!r} as a TOML value "
                           "(quote strings: key='text')") from None
        parsed = value
    except RecursionError:
        raise EbmError(f"--set {key}: tables or arrays nested too deeply to parse "
                       f"(at most {MAX_DEPTH} levels)") from None
    path = key.split(".")
    nested = parsed
    for part in reversed(path):  # the override as the recipe it makes: its key counts as nesting
        nested = {part: nested}
    _check_depth(nested, "--set")
    return path, parsed


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides to a recipe dict (a new dict; the input is untouched)."""
    import copy

    data = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for i, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(path[: i + 1])
                raise EbmError(f"--set {text!r}: '{where}' is a value, not a table")
            node = child
        node[path[-1]] = value
    return data


def parse_recipe(data: dict[str, Any], registry: Registry, source: str | None = None) -> Recipe:
    """Structure a recipe dict; raises :class:`RecipeError` listing every problem."""
    problems: cfg.Problems = []
    known = ("run", "optim", *KINDS, "tasks")
    for key in data:
        if key not in known:
            problems.append((f"$.{key}", f"unknown section{did_you_mean(key, known)}; "
                                         f"sections: {', '.join(known)}"))
    run, p = cfg.structure(data.get("run", {}), RunConfig, "$.run")
    problems += p

    sections: dict[str, Section] = {}
    required = set(ALWAYS_REQUIRED)
    who_needs: dict[str, list[str]] = {}  # section → the components that need it
    for kind in KINDS:
        if kind not in data:
            continue
        section, p, needs = _structure_section(kind, data[kind], registry)
        problems += p
        required |= set(needs)
        for need in needs:
            who_needs.setdefault(need, []).append(f"{kind} '{section.type if section else data[kind].get('type')}'")
        if section is not None:
            sections[kind] = section

    tasks: dict[str, Section] = {}
    raw_tasks = data.get("tasks", {})
    if not isinstance(raw_tasks, dict):
        problems.append(("$.tasks", f"expected a table of [tasks.<label>] tables, got {cfg.describe(raw_tasks)}"))
        raw_tasks = {}
    for label, raw in raw_tasks.items():
        path = f"$.tasks.{label}"
        if not _LABEL.match(label):
            problems.append((path, "a task label is a letter or _ then letters, digits, _ or - "
                                   "(it names metrics '<label>/<metric>' and a folder)"))
            continue
        section, p, needs = _structure_section("task", raw, registry, path=path, table=f"[tasks.{label}]")
        problems += p
        required |= set(needs)
        for need in needs:
            who_needs.setdefault(need, []).append(f"task '{raw.get('type')}' ({path})")
        if section is not None:
            tasks[label] = section

    for kind in KINDS:
        if kind in required and kind not in data:
            who = who_needs.get(kind, [])
            why = f" (needed by {', '.join(who)})" if who else ""
            problems.append((f"$.{kind}", f"missing section [{kind}]{why}"))

    optim: dict[str, OptimConfig] = {}
    raw_optim = data.get("optim", {})
    if not isinstance(raw_optim, dict):
        problems.append(("$.optim", "expected a table of [optim.<group>] tables"))
        raw_optim = {}
    for group, raw in raw_optim.items():
        o, p = cfg.structure(raw, OptimConfig, f"$.optim.{group}")
        problems += p
        if o is not None:
            optim[group] = o
    cfg.raise_problems(problems, source)
    return Recipe(run=run, sections=sections, optim=optim, tasks=tasks)


def _structure_section(kind: str, raw: Any, registry: Registry, *, path: str | None = None,
                       table: str | None = None) -> tuple[Section | None, cfg.Problems, tuple[str, ...]]:
    path = path or f"$.{kind}"
    table = table or f"[{kind}]"
    if not isinstance(raw, dict):
        return None, [(path, f"expected a table {table}, got {cfg.describe(raw)}")], ()
    name = raw.get("type")
    if name is None:
        installed = ", ".join(registry.names(kind)) or "none installed"
        return None, [(f"{path}.type", f"missing: which {kind}? installed: {installed}")], ()
    if not isinstance(name, str):
        return None, [(f"{path}.type", f"expected a string, got {cfg.describe(name)}")], ()
    try:
        component = registry.get(kind, name)
    except PluginError as exc:
        return None, [(f"{path}.type", str(exc))], ()
    body = {k: v for k, v in raw.items() if k != "type"}
    config, problems = cfg.structure(body, component.config, path)
    return (Section(name, config) if config is not None else None), problems, component.requires


def load_recipe(path: str | Path, registry: Registry, overrides: list[str] = ()) -> Recipe:
    """Read, override and structure a recipe file."""
    data = apply_overrides(read_toml(path), list(overrides))
    return parse_recipe(data, registry, source=str(path))


def diff(a: Recipe, b: Recipe, ignore: tuple[str, ...] = ()) -> list[str]:
    """Dotted keys whose values differ between two recipes; an ``ignore`` entry ending in
    ``.`` ignores every key under it (``"tasks."``)."""
    flat_a, flat_b = _flatten(a.to_dict()), _flatten(b.to_dict())

    def ignored(k: str) -> bool:
        return any(k == i or (i.endswith(".") and k.startswith(i)) for i in ignore)

    return sorted(k for k in flat_a.keys() | flat_b.keys()
                  if not ignored(k) and flat_a.get(k) != flat_b.get(k))


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out
