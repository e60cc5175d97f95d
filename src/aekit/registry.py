"""The model registry: a name maps to its config dataclass and its model class.

Models register themselves with a decorator beside their definition, so nothing else in the
package branches on a model's name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from .errors import ConfigError

MODELS: dict[str, tuple[type, type]] = {}


def register(name: str, config_cls: type) -> Callable[[type], type]:
    def wrap(model_cls: type) -> type:
        if name in MODELS:
            raise RuntimeError(f"model name {name!r} registered twice")
        MODELS[name] = (config_cls, model_cls)
        model_cls.registry_name = name
        return model_cls

    return wrap


def _ensure_loaded() -> None:
    # Importing the package registers every built-in model.
    from . import models  # noqa: F401


def model_names() -> list[str]:
    _ensure_loaded()
    return sorted(MODELS)


def lookup(name: str) -> tuple[type, type]:
    _ensure_loaded()
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def config_from_dict(name: str, values: dict[str, Any]):
    """Build a model's config from plain JSON values, refusing unknown keys and wrong types."""
    config_cls, _ = lookup(name)
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"model {name!r} has no option(s) {', '.join(unknown)}; known: {', '.join(fields)}")
    cleaned = {}
    for key, value in values.items():
        cleaned[key] = _coerce(name, key, value, fields[key].default)
    return config_cls(**cleaned)


def _coerce(model: str, key: str, value: Any, default: Any) -> Any:
    """JSON has lists where configs hold tuples; check types against the field's default."""
    if default is dataclasses.MISSING or default is None:
        return tuple(value) if isinstance(value, list) else value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{model}.{key} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{model}.{key} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{model}.{key} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{model}.{key} must be a string, got {value!r}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{model}.{key} must be a list of integers, got {value!r}")
        return tuple(value)
    return value


def build_model(name: str, config):
    _, model_cls = lookup(name)
    return model_cls(config)
