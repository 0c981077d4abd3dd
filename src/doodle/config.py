"""Typed configs: dataclasses with a doc line per field, YAML presets and `key=value` overrides.

A config is a (nested) dataclass whose fields carry a docstring on the line after them, as in
LitGPT. This module turns YAML and command-line overrides into such a dataclass, checking every key
and type so a typo fails loudly with the valid names, and turns it back into plain data that is
saved beside every run:

    cfg = load_config(TrainConfig, "configs/cpu.yaml", ["optim.lr=3e-3", "model.arch=resnet34"])
    save_config(cfg, "run/config.yaml")
    field_docs(TrainConfig)["epochs"]  # -> "Passes over the training data."
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import os
import textwrap
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import yaml

from doodle.errors import DoodleError

T = TypeVar("T")


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """`cls` built from a YAML file (optional) with dotted `key=value` overrides applied on top.

    Values are parsed as YAML (`lr=1e-3`, `flags=[a, b]`, `pretrained_path=null`). A preset may name
    another one with `base: other.yaml` (resolved relative to it) to inherit and override it.
    """
    data: dict[str, Any] = read_yaml(Path(path)) if path else {}
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DoodleError(f"override {item!r} is not of the form key=value (e.g. optim.lr=0.001)")
        _set_dotted(data, key.strip(), yaml.safe_load(value) if value.strip() else None)
    return from_dict(cls, data)


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping, following `base:` inheritance (the child's keys win, merged recursively)."""
    if not path.is_file():
        raise DoodleError(f"config file {path} not found")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise DoodleError(f"{path}: a config must be a mapping of keys to values")
    base = data.pop("base", None)
    if base:
        return _merge(read_yaml((path.parent / base).resolve()), data)
    return data


def _merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in child.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise DoodleError(f"override {key!r}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = value


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric config field may take: [low, high], either end open or absent."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def holds(self, value: float) -> bool:
        if value != value:  # NaN is in no range
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or not (value > self.high or (self.high_open and value == self.high))

    def __str__(self) -> str:
        if self.high is None:
            return f"{'above' if self.low_open else 'at least'} {_number(self.low)}"
        low, high = _number(self.low), _number(self.high)
        return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"


def _number(value: float | None) -> str:
    """4294967295, not 4.29497e+09; 0.5, not 0.500000."""
    return str(int(value)) if value is not None and float(value).is_integer() else f"{value:g}"


AT_LEAST_0 = Range(0)
AT_LEAST_1 = Range(1)
POSITIVE = Range(0, low_open=True)
PROBABILITY = Range(0, 1)
FRACTION = Range(0, 1, high_open=True)
"""Ranges most config fields share (a probability may be 1, a fraction of something kept may not)."""


class RangeError(ValueError):
    """A config field outside its `Range`; the message starts with the field's name."""


def check_ranges(obj: Any, **ranges: Range) -> None:
    """Raise RangeError naming the first field of `obj` outside its range (each item of a tuple or
    list field is checked). Called from a config's `__post_init__`, so a bad value fails where the
    config is built, before any work, and `from_dict` names the full key."""
    for name, allowed in ranges.items():
        value = getattr(obj, name)
        for item in value if isinstance(value, list | tuple) else [value]:
            if not allowed.holds(item):
                raise RangeError(f"{name} must be {allowed}, got {value!r}")


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from a mapping, converting and checking every value against its type."""
    if not isinstance(data, dict):
        raise DoodleError(f"{where or cls.__name__}: expected a mapping, got {data!r:.60}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        hints = "".join(f"; did you mean {near}?" for near in (nearest_key(cls, k, where) for k in unknown) if near)
        raise DoodleError(f"unknown config key{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(where + k for k in unknown)}{hints}; valid keys here: {', '.join(fields)}")
    hints = typing.get_type_hints(cls, include_extras=True)  # extras: the Parsed markers
    kwargs = {name: _convert(hints[name], value, f"{where}{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except RangeError as err:
        raise DoodleError(f"{where}{err}") from None
    except (TypeError, ValueError) as err:
        raise DoodleError(f"{where or cls.__name__}: {err}") from None


def dotted_keys(cls: type, prefix: str = "") -> list[str]:
    """Every settable key of config class `cls`, dotted: ["epochs", "optim.lr", ...]."""
    keys = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = typing.get_type_hints(cls)[f.name]
        keys += dotted_keys(tp, f"{prefix}{f.name}.") if dataclasses.is_dataclass(tp) else [prefix + f.name]
    return keys


def nearest_key(cls: type, key: str, where: str = "") -> str | None:
    """The valid key a misspelt `key` (found in section `where` of `cls`) most likely meant: a
    close spelling at the same level, else a field of that name in a sub-section ("lr" -> "optim.lr")."""
    import difflib

    names = [f.name for f in dataclasses.fields(cls) if f.init]
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.7)
    if close:
        return where + close[0]
    nested = [k for k in dotted_keys(cls) if "." in k]
    deeper = [k for k in nested if k.rsplit(".", 1)[1] == key]
    deeper = deeper or difflib.get_close_matches(key, nested, n=1, cutoff=0.85)
    return where + deeper[0] if deeper else None


_YAML_BOOL_WORDS = {False: ("off", "no", "false"), True: ("on", "yes", "true")}


@dataclasses.dataclass(frozen=True)
class Parsed:
    """A field's marker, `Annotated[float, Parsed(parse_duration)]`: a string value in YAML or an
    override is given to `parse` first ("15m" -> 900.0), then checked as the field's type."""

    parse: Any


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *extras = typing.get_args(tp)
        for marker in extras:
            if isinstance(marker, Parsed) and isinstance(value, str):
                try:
                    value = marker.parse(value)
                except DoodleError as err:
                    raise DoodleError(f"{where}: {err}") from None
        return _convert(base, value, where)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _convert(option, value, where)
            except DoodleError as err:
                errors.append(str(err))
        raise DoodleError(errors[0] if len(errors) == 1 else f"{where}: {value!r:.60} matches none of {tp}")
    if origin is typing.Literal:
        if isinstance(value, bool):  # YAML 1.1 reads off/on/no/yes as booleans: take the word back
            value = next((w for w in _YAML_BOOL_WORDS[value] if w in typing.get_args(tp)), value)
        if value not in typing.get_args(tp):
            raise DoodleError(f"{where}: {value!r} is not one of {', '.join(map(repr, typing.get_args(tp)))}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value if value is not None else {}, f"{where}.")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise DoodleError(f"{where}: expected a list, got {value!r:.60}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise DoodleError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
        item = args[0] if args else Any
        items = [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise DoodleError(f"{where}: expected a mapping, got {value!r:.60}")
        key_type, value_type = typing.get_args(tp) or (Any, Any)
        return {_convert(key_type, k, where): _convert(value_type, v, f"{where}.{k}") for k, v in value.items()}
    return _scalar(tp, value, where)


def _scalar(tp: Any, value: Any, where: str) -> Any:
    if tp is Any:
        return value
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 3e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is bool and isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        return value
    if tp is Path and isinstance(value, str | Path):
        return Path(value)
    if tp is type(None) and value is None:
        return None
    name = getattr(tp, "__name__", str(tp))
    raise DoodleError(f"{where}: expected {name}, got {value!r:.60}")


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain data (dicts, lists, scalars) for YAML, JSON or a checkpoint."""
    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, Path):
            return str(value)
        return value

    return plain(cfg)


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (every field, defaults included), atomically: a reader (a
    resuming process of a multi-process run) sees the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Each field's doc line: the string literal right after the field in the class body."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, nxt in zip(body, body[1:], strict=False):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def describe_config(cfg: Any, prefix: str = "") -> list[str]:
    """`key: value  # doc` lines for every field, nested sections flattened with dots."""
    lines = []
    docs = field_docs(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            lines += describe_config(value, f"{prefix}{f.name}.")
        else:
            doc = docs.get(f.name, "")
            lines.append(f"{prefix}{f.name} = {to_dict(value)!r}" + (f"  # {doc}" if doc else ""))
    return lines
