"""Configuration problems, and the translation of pydantic's errors into plain words.

A technician reads these on a plant-room laptop, so every message says what was expected
and what was found, and every issue points at a file, a line and a key path.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from edge_agent.config.base import Id
from edge_agent.config.models import Uplink
from edge_agent.i18n import N_, _

Loc = tuple[str | int, ...]
# An error makes the configuration unusable; a warning is legal but suspicious (printed by
# `config validate`, which fails on it only with --strict).
Level = Literal["error", "warning"]


@dataclass(frozen=True)
class ConfigIssue:
    file: str  # path as given/relative, e.g. "site.yaml" or "configs/points/chiller.yaml"
    line: int | None  # 1-based line of the offending key/value (of the parent for a missing key)
    path: str  # key path like "devices[3].points[7].scale" ("" for file-level errors)
    message: str  # what was expected, e.g. "expected a number, got 'x'"
    level: Level = "error"

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        message = self.message
        if self.level == "warning":
            message = _("warning: {message}").format(message=message)
        return f"{where} {self.path}: {message}" if self.path else f"{where}: {message}"


def ordered(issues: Iterable[ConfigIssue]) -> list[ConfigIssue]:
    """Sorted by file then line, each once (an included file can be reached twice: one point
    list for two chillers)."""
    return sorted(set(issues), key=lambda i: (i.file, i.line or 0, i.path, i.message, i.level))


class ConfigError(Exception):
    """Every problem found in a configuration, sorted by file then line; `warnings` are
    what else was found (legal but suspicious), for a caller that shows them too."""

    def __init__(self, issues: Iterable[ConfigIssue], warnings: Iterable[ConfigIssue] = ()) -> None:
        errors = ordered(issues)
        super().__init__(errors)
        self.issues: list[ConfigIssue] = errors
        self.warnings: list[ConfigIssue] = ordered(warnings)

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)


def format_path(path: Loc) -> str:
    """('devices', 3, 'points', 7, 'scale') -> 'devices[3].points[7].scale'."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def show(value: object) -> str:
    """A value as the technician wrote it in YAML, short enough for one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return _("nothing")
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, list):
        return _("a list")
    if isinstance(value, dict):
        return _("a mapping")
    return str(value)


@dataclass(frozen=True)
class Problem:
    """A problem at a key path, not yet placed in a file."""

    path: Loc
    message: str
    # An "expected X, got Y" of a type: X and Y apart, so that the members of a union
    # (`float | str`) merge into one message.
    wanted: str | None = None
    got: str | None = None


def _wanted(path: Loc, wanted: str, got: str) -> Problem:
    return Problem(
        path, _("expected {wanted}, got {got}").format(wanted=wanted, got=got), wanted, got
    )


# --- Walking the model types along an error location -----------------------------------


@dataclass(frozen=True)
class _Target:
    path: Loc  # the error location without union member labels
    parent: Any  # the type that holds the last key (a model class for unknown keys)
    leaf: Any  # the type at the location, when known
    in_union: bool  # pydantic tried every member of a union: merge their complaints


def _unwrap(tp: Any) -> tuple[Any, str | None]:
    """Strip Annotated and Optional; return the type and its union discriminator, if any."""
    discriminator = None
    while True:
        if get_origin(tp) is Annotated:
            for meta in tp.__metadata__:
                discriminator = getattr(meta, "discriminator", None) or discriminator
            tp = get_args(tp)[0]
        elif _is_union(tp) and len(_members(tp)) == 1:
            tp = _members(tp)[0]
        else:
            return tp, discriminator


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _members(tp: Any) -> tuple[Any, ...]:
    return tuple(arg for arg in get_args(tp) if arg is not type(None))


def _union_member(tp: Any, discriminator: str | None, label: str | int) -> Any:
    """The member of a union that pydantic named `label` in an error location."""
    # A discriminated union of one member is still a tagged union to pydantic.
    candidates = _members(tp) if _is_union(tp) else (tp,)
    for member in candidates:
        if discriminator and _is_model(member):
            field = member.model_fields.get(discriminator)
            if field is not None and label in get_args(field.annotation):
                return member
        elif getattr(member, "__name__", None) == label:
            return member
    return None


def _child(tp: Any, key: str | int) -> Any:
    if _is_model(tp) and isinstance(key, str):
        field = tp.model_fields.get(key)
        return field.annotation if field is not None else None
    origin = get_origin(tp)
    if origin in (list, tuple, set, frozenset) and isinstance(key, int):
        return get_args(tp)[0]
    if origin is dict:
        return get_args(tp)[1]
    return None


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _target(root: type[BaseModel], loc: Loc) -> _Target:
    path: list[str | int] = []
    parent: Any = None
    tp: Any = root
    in_union = False
    for part in loc:
        tp, discriminator = _unwrap(tp)
        if discriminator or (_is_union(tp) and len(_members(tp)) > 1):
            # pydantic inserts the member's tag or type name into the location. Only an
            # untagged union (`float | str`) tries every member and complains about each.
            tp, in_union = _union_member(tp, discriminator, part), discriminator is None
            continue
        path.append(part)
        parent, tp = tp, _child(tp, part)
    return _Target(tuple(path), _unwrap(parent)[0], _unwrap(tp)[0], in_union)


# --- Messages ------------------------------------------------------------------------------


def _pattern(tp: Any) -> str:
    return next(m.pattern for m in getattr(tp, "__metadata__", ()) if getattr(m, "pattern", None))


def _field_pattern(model: type[BaseModel], name: str) -> str:
    return next(m.pattern for m in model.model_fields[name].metadata if getattr(m, "pattern", None))


# What a regular expression means, in words. Patterns not listed are shown as they are.
_PATTERN_WORDS = {
    _pattern(Id): N_(
        "an id of letters, digits, '-' and '_' "
        "(starting with a letter or digit, at most 64 characters)"
    ),
    _field_pattern(Uplink, "topic_prefix"): N_(
        "a topic prefix without spaces, '+' or '#', not starting or ending with '/'"
    ),
}
_ALTERNATIVES = re.compile(r"^\^\(([\w-]+(?:\|[\w-]+)*)\)\$$")  # ^(a|b|c)$

# pydantic error type -> what was expected.
_EXPECTED = {
    "float_type": N_("a number"),
    "float_parsing": N_("a number"),
    "finite_number": N_("a finite number"),
    "int_type": N_("an integer"),
    "int_parsing": N_("an integer"),
    "int_from_float": N_("an integer"),
    "bool_type": N_("true or false"),
    "bool_parsing": N_("true or false"),
    "string_type": N_("text"),
    "list_type": N_("a list"),
    "tuple_type": N_("a list"),  # what pydantic says of a mapping given for some lists
    "set_type": N_("a list"),
    "dict_type": N_("a mapping"),
    "model_type": N_("a mapping"),
    "model_attributes_type": N_("a mapping"),
    "path_type": N_("a file path"),
    "byte_size": N_("a size such as 512MB or 2GiB"),
    "byte_size_unit": N_("a size such as 512MB or 2GiB"),
}
_BOUNDS = {
    "gt": N_("must be greater than {limit}, got {got}"),
    "ge": N_("must be at least {limit}, got {got}"),
    "lt": N_("must be less than {limit}, got {got}"),
    "le": N_("must be at most {limit}, got {got}"),
}
_BOUND_TYPES = {
    "greater_than": "gt",
    "greater_than_equal": "ge",
    "less_than": "lt",
    "less_than_equal": "le",
}


def _listed(options: Iterable[object]) -> str:
    return ", ".join(repr(o) for o in options)


def _got(value: object, raw: str | None) -> str:
    """The offending value; numbers and booleans as written (`.inf`, `yes`, `0x10`)."""
    return raw if raw and isinstance(value, int | float | date) else show(value)


def _expected(error: ErrorDetails, target: _Target, got: str) -> Problem | None:
    """'expected X, got Y' for type and format errors; None for other kinds of error."""
    kind, value, path = error["type"], error["input"], target.path
    if kind == "literal_error" and get_origin(target.leaf) is Literal:
        options = _listed(get_args(target.leaf))
        if not isinstance(value, str) and got in get_args(target.leaf):  # `protocol: 5`: 5
            message = _("expected one of {options} (got the number {got}; write '{got}' in quotes)")
            return Problem(path, message.format(options=options, got=got))
        return Problem(
            path, _("expected one of {options} (got {got})").format(options=options, got=got)
        )
    if kind == "string_pattern_mismatch":
        pattern = error.get("ctx", {}).get("pattern", "")
        alternatives = _ALTERNATIVES.match(pattern)
        if alternatives:
            options = _listed(alternatives.group(1).split("|"))
            return Problem(
                path, _("expected one of {options} (got {got})").format(options=options, got=got)
            )
        if pattern in _PATTERN_WORDS:
            return _wanted(path, _(_PATTERN_WORDS[pattern]), got)
        return _wanted(path, _("text matching {pattern}").format(pattern=pattern), got)
    if kind == "string_type" and isinstance(value, int | float | date):
        # YAML read an unquoted 0x10, 101 or "no" as a number or a boolean.
        message = _("expected text, got {got} (put it in quotes if it is meant as text)")
        return Problem(path, message.format(got=got))
    if kind in _EXPECTED:
        return _wanted(path, _(_EXPECTED[kind]), got)
    return None


def _unknown_key(key: str | int, model: Any) -> str:
    if not _is_model(model):
        return _("unknown key {key!r}").format(key=key)
    allowed = ", ".join(model.model_fields)
    close = difflib.get_close_matches(str(key), list(model.model_fields), n=1)
    if close:
        message = _("unknown key {key!r} (did you mean {close!r}? allowed: {allowed})")
        return message.format(key=key, close=close[0], allowed=allowed)
    return _("unknown key {key!r} (allowed: {allowed})").format(key=key, allowed=allowed)


def _sized(error: ErrorDetails) -> str:
    ctx = error.get("ctx", {})
    if error["type"] == "string_too_short":
        n = ctx["min_length"]
        return (
            _("must not be empty")
            if n == 1
            else _("must be at least {n} characters long").format(n=n)
        )
    if error["type"] == "string_too_long":
        return _("must be at most {n} characters long").format(n=ctx["max_length"])
    if error["type"] == "too_short":
        message = _("must have at least {n} item(s), got {got}")
        return message.format(n=ctx["min_length"], got=ctx["actual_length"])
    message = _("must have at most {n} item(s), got {got}")
    return message.format(n=ctx["max_length"], got=ctx["actual_length"])


def _problem(error: ErrorDetails, target: _Target, raw: str | None) -> Problem:
    kind, ctx, path = error["type"], error.get("ctx", {}), target.path
    got = _got(error["input"], raw)
    expected = _expected(error, target, got)
    if expected is not None:
        return expected
    if kind == "missing":
        return Problem(path, _("required key missing"))
    if kind == "extra_forbidden":
        return Problem(path, _unknown_key(path[-1], target.parent))
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        key = ctx["discriminator"].strip("'")
        tags = ctx["expected_tags"] if "expected_tags" in ctx else _tags(target.leaf, key)
        if kind == "union_tag_not_found":
            return Problem(
                (*path, key), _("required key missing (one of {tags})").format(tags=tags)
            )
        item = error["input"]  # pydantic's ctx["tag"] is str(value): show the value itself
        value = item.get(key, ctx["tag"]) if isinstance(item, dict) else ctx["tag"]
        message = _("expected one of {options} (got {got})")
        return Problem((*path, key), message.format(options=tags, got=show(value)))
    if kind in _BOUND_TYPES:
        bound = _BOUND_TYPES[kind]
        limit = ctx[bound]
        limit = f"{limit:g}" if isinstance(limit, float) else limit  # 0.0 -> 0
        return Problem(path, _(_BOUNDS[bound]).format(limit=limit, got=got))
    if kind in ("too_short", "too_long", "string_too_short", "string_too_long"):
        return Problem(path, _sized(error))
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return Problem(path, str(ctx["error"]))
    msg = error["msg"]
    return Problem(path, msg[:1].lower() + msg[1:])


def _tags(union: Any, key: str) -> str:
    members = _members(union) if _is_union(union) else (union,)
    tags = [t for m in members if _is_model(m) for t in get_args(m.model_fields[key].annotation)]
    return ", ".join(repr(t) for t in tags)


def _merge(problems: list[Problem]) -> Problem:
    """pydantic complains once per member of `float | str`: say 'a number or text' once."""
    wanted = _(" or ").join(p.wanted or "" for p in problems)
    return _wanted(problems[0].path, wanted, problems[-1].got or "")


def problems_from(
    error: ValidationError, root: type[BaseModel], raw: Callable[[Loc], str | None]
) -> list[Problem]:
    """Translate a pydantic ValidationError on `root`; `raw` gives a scalar's YAML text."""
    plain: list[Problem] = []
    union: dict[Loc, list[Problem]] = {}
    for details in error.errors(include_url=False):
        target = _target(root, details["loc"])
        input_raw = raw(target.path) if not isinstance(details["input"], str) else None
        problem = _problem(details, target, input_raw)
        if target.in_union and problem.wanted is not None:
            union.setdefault(problem.path, []).append(problem)
        else:
            plain.append(problem)
    merged = [_merge(group) if len(group) > 1 else group[0] for group in union.values()]
    return plain + merged
