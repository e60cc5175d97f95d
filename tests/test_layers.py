"""The package's layers, as docs/architecture.md draws them, checked from the source.

Each top-level part of ``aekit`` (a subpackage or a module) may import only the parts listed for
it below: lower layers never import higher ones, ``viz`` turns tensors into figures without
knowing the trainer, and nothing but the command line imports ``cli`` or ``web``.  Imports
inside functions count as much as those at the top of a file.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "aekit"

FOUNDATION = {"errors", "config", "fileio", "registry"}
# part -> the parts it may import (besides itself).  Keep equal to docs/architecture.md.
ALLOWED = {
    "errors": set(),
    "fileio": {"errors"},
    "config": {"errors"},
    # the registry imports aekit.models only to make the built-in families register themselves
    "registry": {"errors", "config", "models"},
    "nn": {"errors"},
    "models": {"errors", "config", "registry", "nn"},
    "data": {"errors", "config", "fileio"},
    "eval": {"errors", "models"},
    "tasks": {"errors", "config", "data", "eval", "models"},
    "latent": {"errors", "eval", "models"},
    "viz": {"errors", "fileio"},
    "run": FOUNDATION | {"data", "tasks", "models"},
    "train": FOUNDATION | {"models", "data", "eval", "tasks", "run"},
    "app": FOUNDATION | {"nn", "models", "data", "eval", "tasks", "latent", "viz", "run", "train"},
    "web": {"errors", "config", "data", "latent", "viz", "run", "app"},
    "cli": FOUNDATION | {"data", "eval", "models", "tasks", "latent", "viz", "run", "train", "app", "web"},
    "__main__": {"cli"},
    # the package's own __init__: the lazy names it offers
    "__init__": {"errors", "train", "app", "run", "registry", "tasks"},
}


def part_of(module: str) -> str:
    """``aekit.run.folder`` -> ``run``; ``aekit`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imported_modules(path: Path) -> set[str]:
    """Every aekit module ``path`` imports, anywhere in the file, as absolute names."""
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    module = ".".join(relative.parts)
    package = module.removesuffix(".__init__") if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "aekit":  # `from aekit import x` / `from . import x` at the top: x is a part
                found |= {f"aekit.{alias.name}" for alias in node.names}
            elif target.startswith("aekit."):
                found.add(target)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("aekit")}
    return found


def source_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_part_of_the_package_has_a_rule():
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py") or (p / "__init__.py").is_file()}
    assert parts - set(ALLOWED) == set(), "a new part of aekit: add it to ALLOWED and docs/architecture.md"


@pytest.mark.parametrize("path", source_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_layers(path):
    relative = path.relative_to(PACKAGE)
    own = "__init__" if relative == Path("__init__.py") else relative.parts[0].removesuffix(".py")
    wrong = sorted(m for m in imported_modules(path)
                   if part_of(m) not in ALLOWED[own] | {own} and part_of(m) != "__version__")
    assert wrong == [], f"{relative} ({own}) may not import {wrong}; see docs/architecture.md"


def test_the_checker_sees_relative_function_level_imports(tmp_path, monkeypatch):
    """The rule test is only as good as its parser: a lazy relative import must be found."""
    fake = PACKAGE / "viz" / "plots.py"
    text = "def f():\n    from ..train import loop\n    from . import figures\n"
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: text)
    assert imported_modules(fake) == {"aekit.train", "aekit.viz"}


def test_docs_list_the_same_rules():
    doc = (PACKAGE.parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = dict(re.findall(r"^\| `([\w_]+)` \| ([^|]*) \|", doc, flags=re.MULTILINE))
    for part, allowed in ALLOWED.items():
        assert part in table, f"docs/architecture.md has no row for {part}"
        written = {name.strip("` ") for name in table[part].split(",") if name.strip() not in ("", "nothing")}
        assert written == allowed, (part, written ^ allowed)


def test_task_names_are_asked_of_tasks_not_compared():
    """No `kind ==` or `task.name ==` branches outside aekit/tasks: a task is asked, not tested."""
    pattern = re.compile(r"\bkind\s*==|task\.name\s*==|\.task\s*==\s*[\"']")
    offenders = [f"{p.relative_to(PACKAGE)}:{i}" for p in source_files() if "tasks" not in p.relative_to(PACKAGE).parts
                 for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert offenders == []


def test_the_command_line_imports_no_torch():
    """`aekit --help` must answer at once: importing the CLI (and aekit) leaves torch unloaded."""
    code = "import sys, aekit, aekit.cli; print(sorted(m for m in ('torch', 'numpy', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_aekit_train_stays_the_function_after_the_training_layer_is_imported():
    code = "import aekit, aekit.train.loop, aekit.train.checkpoint; print(callable(aekit.train))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"
