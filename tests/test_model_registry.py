"""Models are found by being in aekit/models/, each registers itself, and each has a tiny config."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch

import aekit.models
from aekit import registry
from aekit.registry import build_model, import_modules, lookup, model_names


def public_modules(folder: Path) -> set[str]:
    """Module names in a package folder that discovery must import: not ``_private``, not ``base``."""
    names = {p.stem for p in folder.glob("*.py")} | {p.name for p in folder.iterdir() if (p / "__init__.py").is_file()}
    return {name for name in names if not name.startswith("_") and name != "base"}


def modules_without_models(package: str, modules: set[str]) -> list[str]:
    """Those of ``modules`` (short names in ``package``) that define no registered model class."""
    registered = {model_cls.__module__ for _, model_cls in registry.MODELS.values()}
    return sorted(name for name in modules if f"{package}.{name}" not in registered)


def test_every_model_module_registers_a_model():
    model_names()  # loads the package
    modules = public_modules(Path(aekit.models.__file__).parent)
    assert {"vae", "conv_ae", "dense_ae"} <= modules  # the folder scan itself works
    assert set(aekit.models.FAMILIES) == modules, "discovery skipped a module"
    assert modules_without_models("aekit.models", modules) == [], "a model file registers nothing"


def test_every_registered_model_lives_in_aekit_models_beside_its_config():
    for name in model_names():
        config_cls, model_cls = lookup(name)
        package, _, module = model_cls.__module__.rpartition(".")
        assert package == "aekit.models" and module in aekit.models.FAMILIES, (name, model_cls.__module__)
        assert config_cls.__module__ == model_cls.__module__, (name, config_cls.__module__)
        assert model_cls.registry_name == name


@pytest.fixture
def fake_models(tmp_path, monkeypatch):
    """A package ``fakemodels`` in tmp_path laid out like aekit/models/, with its own empty registry."""
    package = tmp_path / "fakemodels"
    package.mkdir()
    files = {
        "__init__.py": "import sys\nfrom aekit.registry import import_modules\n"
                       "FAMILIES = tuple(import_modules(sys.modules[__name__]))\n",
        "base.py": "raise AssertionError('base is shared code, not a family')\n",
        "_helpers.py": "raise AssertionError('private modules are not families')\n",
        "widget.py": """
            from dataclasses import dataclass
            from aekit.registry import register

            @dataclass
            class WidgetConfig:
                in_shape: tuple = (1, 4, 4)

            @register("widget", WidgetConfig)
            class Widget:
                pass
        """,
        "empty.py": "X = 1\n",
    }
    for name, text in files.items():
        (package / name).write_text(textwrap.dedent(text))
    monkeypatch.setattr(registry, "MODELS", {})
    monkeypatch.syspath_prepend(str(tmp_path))
    yield package
    for name in [m for m in sys.modules if m == "fakemodels" or m.startswith("fakemodels.")]:
        del sys.modules[name]


def test_a_new_file_is_registered_by_being_there(fake_models):
    import fakemodels

    assert fakemodels.FAMILIES == ("empty", "widget")
    assert list(registry.MODELS) == ["widget"]
    # The check above on aekit.models would catch a file like empty.py, which registers nothing.
    assert modules_without_models("fakemodels", public_modules(fake_models)) == ["empty"]


def test_a_broken_model_file_fails_loudly(fake_models):
    (fake_models / "broken.py").write_text("import a_module_that_does_not_exist\n")
    with pytest.raises(ModuleNotFoundError, match="a_module_that_does_not_exist"):
        import_modules(__import__("fakemodels"))


@pytest.mark.parametrize("name", model_names())
def test_tiny_config_is_small_and_takes_overrides(name):
    config_cls, model_cls = lookup(name)
    cfg = config_cls.tiny()
    assert type(cfg) is config_cls
    if model_cls.data_kind == "image":
        assert cfg.in_shape == (1, 16, 16)
        assert config_cls.tiny((3, 12, 20)).in_shape == (3, 12, 20)
        assert config_cls.tiny(recon_loss="mse").recon_loss == "mse"  # the base class's loss reads it
    else:  # another kind of data (melodies: (steps,)) takes its own shape
        other = tuple(2 * s for s in cfg.in_shape)
        assert config_cls.tiny(other).in_shape == other
    with pytest.raises(TypeError):
        config_cls.tiny(no_such_option=1)
    torch.manual_seed(0)
    model = build_model(name, cfg)
    # Small enough that the contract tests run every model in seconds on a CPU.
    assert sum(p.numel() for p in model.parameters()) < 100_000
