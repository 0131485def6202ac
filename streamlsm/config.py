"""Configuration: frozen dataclass sections, built from TOML/dicts and validated once, errors name the key path.

Each component owns one frozen section class (with seeds as fields). ``from_dict(Section, data)``
builds a section (recursively for nested sections), checking unknown keys, types and the section's
own ``validate()`` hook; every error is a ``ConfigError`` whose key is the dotted path.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigError

__all__ = [
    "from_dict",
    "to_dict",
    "load_toml",
    "data_root",
    "default_cache_dir",
    "DATA_ENV",
    "DEFAULT_DATA_ROOT",
    "CACHE_ENV",
]

T = TypeVar("T")

DATA_ENV = "STREAMLSM_DATA"
DEFAULT_DATA_ROOT = "../shared/data"
CACHE_ENV = "STREAMLSM_CACHE"


def data_root() -> Path:
    """The real-data root: $STREAMLSM_DATA, else ../shared/data (relative to the working directory)."""
    return Path(os.environ.get(DATA_ENV, DEFAULT_DATA_ROOT))


def default_cache_dir() -> Path:
    """Where generated data and trained bundles are cached: $STREAMLSM_CACHE, else the platform's
    user cache directory for "streamlsm" (e.g. ~/.cache/streamlsm on Linux). Not created here."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("streamlsm", appauthor=False))


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, key)
            except ConfigError as exc:
                errors.append(exc.problem)
        raise ConfigError(key, "; ".join(errors) or f"unexpected value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(key, f"must be one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return from_dict(tp, value, key)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"must be a list, got {type(value).__name__}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(key, f"must have {len(args)} items, got {len(value)}")
            return tuple(_convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
        item = args[0] if args else Any
        out = [_convert(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, f"must be a table, got {type(value).__name__}")
        vt = args[1] if args else Any
        return {str(k): _convert(vt, v, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if type(value) is not bool:
            raise ConfigError(key, f"must be true or false, got {value!r}")
        return value
    if tp is int:
        if type(value) is not int:
            raise ConfigError(key, f"must be an integer, got {value!r}")
        return value
    if tp is float:
        if type(value) not in (int, float):
            raise ConfigError(key, f"must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(key, f"must be a path string, got {value!r}")
        return Path(value)
    raise ConfigError(key, f"unsupported field type {tp!r}")


def from_dict(cls: type[T], data: Any, key: str = "") -> T:
    """Build the frozen section ``cls`` from a mapping; unknown keys and bad types raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(key, f"must be a table, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{key}." if key else ""
        raise ConfigError(f"{where}{unknown[0]}", f"unknown key; known keys: {sorted(fields)}")
    kwargs = {}
    for name, f in fields.items():
        sub = f"{key}.{name}" if key else name
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], sub)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(sub, "missing required key")
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if callable(check):
        try:
            check()
        except ConfigError as exc:
            if key and not exc.key.startswith(key):
                raise ConfigError(f"{key}.{exc.key}", exc.problem) from None
            raise
    return obj


def to_dict(obj: Any) -> Any:
    """Plain dict/list/scalars of a section (paths as strings), e.g. for a JSON manifest."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def load_toml(path: str | Path, cls: type[T]) -> T:
    """Read a TOML file into section ``cls``; syntax errors and bad values raise ConfigError."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("", f"config file {p} not found") from None
    except IsADirectoryError:
        raise ConfigError("", f"config file {p} is a directory") from None
    except PermissionError:
        raise ConfigError("", f"config file {p}: permission denied") from None
    except UnicodeDecodeError as exc:
        raise ConfigError("", f"{p}: not UTF-8 text (byte {exc.start}): not a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{p}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError("", f"config file {p}: {exc.strerror or exc}") from None
    return from_dict(cls, data)
