"""The model registry: a name maps to its config dataclass and its model class.

Models register themselves with a decorator beside their definition, so nothing else in the
package branches on a model's name.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Collection
from types import ModuleType
from typing import Any

from .config import fill_absent
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


def import_modules(package: ModuleType, *, skip: Collection[str] = ("base",)) -> list[str]:
    """Import every public module of ``package``, so that a model file registers by being there.

    Modules whose name starts with ``_`` and those in ``skip`` (the shared base classes) are
    left out.  An import error propagates: a broken model file fails loudly instead of
    silently vanishing from the registry.  Returns the imported modules' short names, sorted.
    """
    names = sorted(info.name for info in pkgutil.iter_modules(package.__path__)
                   if not info.name.startswith("_") and info.name not in skip)
    for name in names:
        importlib.import_module(f"{package.__name__}.{name}")
    return names


def _ensure_loaded() -> None:
    # Importing the package runs import_modules over it, which registers every built-in model.
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
    """Build a model's config from plain JSON values, with the checks every config gets
    (:func:`aekit.config.from_plain`: unknown keys, types and ranges, named in the error)."""
    from .config import from_plain

    config_cls, _ = lookup(name)
    return from_plain(config_cls, values, source=f"model {name!r}", error=ConfigError)


def fill_absent_model_config(name: str, values: Any) -> Any:
    """:func:`aekit.config.fill_absent` for model ``name``'s stored config, so a run saved before
    one of its fields existed loads as it was trained; an unknown model or a malformed config is
    left as it is, for the checks that build the model to refuse in one line."""
    if not isinstance(values, dict):
        return values
    try:
        config_cls, _ = lookup(name)
    except ConfigError:
        return values
    return fill_absent(config_cls, values)


def build_model(name: str, config):
    _, model_cls = lookup(name)
    return model_cls(config)
