"""Structuring plain dicts (from TOML) into frozen attrs configs, with every problem
reported at once and named by its path (``$.sampler.step_size``).

Types are strict: a string where a number belongs (or the reverse) is an error, never a
silent conversion. Validators run after structuring so that all of them report, not just
the first.
"""

from __future__ import annotations

import math
import re
import typing
from typing import Any, Literal

import attrs
import cattrs
from cattrs.errors import BaseValidationError

from ebmcore.errors import RecipeError, did_you_mean

Problems = list[tuple[str, str]]


def _strict(kind: type, accepts: tuple[type, ...], name: str):
    def structure(value: Any, _type: Any) -> Any:
        if isinstance(value, bool) and kind is not bool:
            raise TypeError(f"expected {name}, got a boolean ({value!r})")
        if not isinstance(value, accepts):
            raise TypeError(f"expected {name}, got {describe(value)}")
        return kind(value)

    return structure


_number = _strict(float, (int, float), "a number")


def _finite(value: Any, type_: Any) -> float:
    # inf or nan for a step size, rate or scale passes every bound (nan compares false)
    # and only shows as a diverged run; no field has a meaning for them
    number = _number(value, type_)
    if not math.isfinite(number):
        raise ValueError(f"must be a finite number, got {value!r}")
    return number


def describe(value: Any) -> str:
    """``a string ('x')``: a value with its TOML type, for error messages."""
    names = {str: "a string", int: "an integer", float: "a float", bool: "a boolean",
             list: "an array", dict: "a table"}
    return f"{names.get(type(value), type(value).__name__)} ({value!r})"


def _structure_literal(value: Any, type_: Any) -> Any:
    options = typing.get_args(type_)
    if value not in options or type(value) is not type(options[0]):
        hint = did_you_mean(str(value), [str(o) for o in options])
        raise ValueError(f"must be one of {', '.join(repr(o) for o in options)}, got {value!r}{hint}")
    return value


def make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(int, _strict(int, (int,), "an integer"))
    conv.register_structure_hook(float, _finite)
    conv.register_structure_hook(str, _strict(str, (str,), "a string"))
    conv.register_structure_hook(bool, _strict(bool, (bool,), "a boolean"))
    conv.register_structure_hook_func(lambda t: typing.get_origin(t) is Literal, _structure_literal)
    # cattrs would iterate a string into characters; an array field takes arrays only
    elements = conv.copy()
    conv.register_structure_hook_func(lambda t: typing.get_origin(t) in (tuple, list), lambda value, t: (
        elements.structure(value, t) if isinstance(value, (list, tuple))
        else _raise(TypeError(f"expected an array, got {describe(value)}"))))
    return conv


def _raise(exc: Exception) -> Any:
    raise exc


converter = make_converter()


def _format(exc: BaseException, type_: Any) -> str:
    wrong_length = re.match(r"(?:Not enough|Too many) values in (.*) to structure as (.*)", str(exc))
    if wrong_length:
        return f"expected {wrong_length.group(2)}, got {wrong_length.group(1)}"
    if isinstance(exc, (TypeError, ValueError)) and str(exc):
        return str(exc)
    if isinstance(exc, cattrs.errors.IterableValidationError):
        return f"expected {_type_name(type_)}"
    return f"invalid value: expected {_type_name(type_)}"


def _type_name(type_: Any) -> str:
    if typing.get_origin(type_) is None and isinstance(type_, type):
        return type_.__name__
    return str(type_).replace("typing.", "")


def unknown_keys(data: dict, cls: type, path: str) -> Problems:
    """Keys of ``data`` that are not fields of attrs class ``cls``, with suggestions."""
    names = [a.alias for a in attrs.fields(cls)]
    return [(f"{path}.{k}", f"unknown key{did_you_mean(k, names)}; valid keys: {', '.join(names) or 'none'}")
            for k in data if k not in names]


def validate(instance: Any, path: str) -> Problems:
    """Run every attrs validator of ``instance`` (recursively), collecting all failures."""
    problems: Problems = []
    for a in attrs.fields(type(instance)):
        value = getattr(instance, a.name)
        if a.validator is not None:
            try:
                a.validator(instance, a, value)
            except (TypeError, ValueError) as exc:
                problems.append((f"{path}.{a.alias}", _validator_message(exc, value)))
        if attrs.has(type(value)):
            problems += validate(value, f"{path}.{a.alias}")
    return problems


def _validator_message(exc: Exception, value: Any) -> str:
    # attrs says "'step_size' must be > 0: -0.1"; the path already names the field
    text = str(exc.args[0]) if exc.args else str(exc)
    if text.startswith("'") and "' " in text:
        text = text.split("' ", 1)[1]
    text = text.removesuffix(f": {value!r}")
    return text if "got " in text else f"{text} (got {value!r})"


def structure(data: Any, cls: type, path: str) -> tuple[Any, Problems]:
    """Structure ``data`` into ``cls``; returns (instance or None, problems)."""
    if not isinstance(data, dict):
        return None, [(path, f"expected a table, got {describe(data)}")]
    unknown = unknown_keys(data, cls, path)
    known = {k: v for k, v in data.items() if k in {a.alias for a in attrs.fields(cls)}}
    with attrs.validators.disabled():
        try:
            instance = converter.structure(known, cls)
        except BaseValidationError as exc:
            return None, unknown + _paths(exc, path)
        except (TypeError, ValueError) as exc:
            return None, unknown + [(path, str(exc))]
    problems = unknown + validate(instance, path)
    return (None if problems else instance), problems


def structured(data: Any, cls: type, path: str) -> Any:
    """:func:`structure`, raising :class:`RecipeError` with every problem at once."""
    instance, problems = structure(data, cls, path)
    raise_problems(problems)
    return instance


def _paths(exc: BaseValidationError, path: str) -> Problems:
    out = []
    for line in cattrs.transform_error(exc, path=path, format_exception=_format):
        msg, _, where = line.rpartition(" @ ")
        out.append((where, msg))
    return out


def unstructure(instance: Any) -> dict:
    """A config as plain TOML-ready data (None values dropped: TOML has no null)."""
    return _drop_none(converter.unstructure(instance))


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_drop_none(v) for v in value]
    return value


def field_docs(cls: type) -> list[dict[str, str]]:
    """Name, type and default of every field of a config class (for ``ebm list``, docs)."""
    out = []
    for a in attrs.fields(cls):
        default = a.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory()
        out.append({"name": a.alias, "type": _type_name(a.type),
                    "default": "required" if default is attrs.NOTHING else repr(default),
                    "doc": a.metadata.get("doc", "")})
    return out


def positive(doc: str = "", **kw: Any) -> Any:
    """A field that must be > 0."""
    return attrs.field(validator=attrs.validators.gt(0), metadata={"doc": doc}, **kw)


def non_negative(doc: str = "", **kw: Any) -> Any:
    """A field that must be ≥ 0."""
    return attrs.field(validator=attrs.validators.ge(0), metadata={"doc": doc}, **kw)


def fraction(doc: str = "", **kw: Any) -> Any:
    """A field in [0, 1]."""
    return attrs.field(validator=[attrs.validators.ge(0), attrs.validators.le(1)],
                       metadata={"doc": doc}, **kw)


def positive_widths(_inst: Any, _attr: Any, value: Any) -> None:
    """Validator of a list of layer widths or channel counts: non-empty, each ≥ 1."""
    if not value or any(w < 1 for w in value):
        raise ValueError(f"must be a non-empty list of positive widths, got {list(value)}")


def low_below_high(_inst: Any, _attr: Any, value: Any) -> None:
    """Validator of an optional [low, high] range (a clamp, a box): low < high."""
    if value is not None and not value[0] < value[1]:
        raise ValueError(f"must be [low, high] with low < high, got {list(value)}")


def compile_flag() -> Any:
    """Every sampler's ``compile`` key (:mod:`ebmcore.compiled`)."""
    return doc("run the chain's steps through torch.compile, several per call (falls back to eager "
               "with a warning where compilation is unavailable)", default=False)


def doc(text: str, **kw: Any) -> Any:
    """A field with a one-line description (shown by ``ebm list`` and the docs)."""
    return attrs.field(metadata={"doc": text}, **kw)


def raise_problems(problems: Problems, source: str | None = None) -> None:
    if problems:
        raise RecipeError(problems, source)
