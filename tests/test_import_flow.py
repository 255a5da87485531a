"""Stages flow one way: datasets → training → export → registry (DESIGN.md, issue #13).

Every ``.py`` under the four stage packages is parsed with :mod:`ast`; every import is checked, including
imports inside functions, relative imports, and string targets handed to ``importlib.import_module``,
``__import__`` or ``hydra.utils.get_method``/``get_class``/``get_object``/``instantiate`` (``_target_``). A
later stage may import an earlier one, never the reverse. The checker itself is tested on synthetic sources so
a checker that finds nothing cannot pass silently.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: stage → the stages it may import (itself included)
ALLOWED: dict[str, frozenset[str]] = {
    "datasets": frozenset({"datasets"}),
    "training": frozenset({"datasets", "training"}),
    "export": frozenset({"datasets", "training", "export"}),
    "registry": frozenset({"datasets", "training", "export", "registry"}),
}
#: calls whose first string argument names a module (or a dotted attribute inside one)
_STRING_IMPORTERS = {"import_module", "__import__", "get_method", "get_class", "get_object", "_locate"}


def _call_name(node: ast.Call) -> str | None:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _resolve_relative(module: str | None, level: int, source_module: str, is_package: bool) -> str:
    """Absolute name of ``from .x import y`` written in ``source_module``."""
    parts = source_module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, module] if module else base)


def imported_modules(source: str, source_module: str = "", is_package: bool = False) -> list[tuple[int, str]]:
    """``(line, dotted module name)`` for every import in ``source``, at any depth, plus string targets."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            name = node.module or ""
            if node.level:
                name = _resolve_relative(node.module, node.level, source_module, is_package)
            found.append((node.lineno, name))
        elif isinstance(node, ast.Call) and _call_name(node) in _STRING_IMPORTERS and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.append((node.lineno, arg.value))
        elif isinstance(node, ast.Dict):  # {"_target_": "pkg.mod.fn"} handed to hydra.utils.instantiate
            for key, value in zip(node.keys, node.values):
                if (isinstance(key, ast.Constant) and key.value == "_target_" and isinstance(value, ast.Constant)
                        and isinstance(value.value, str)):
                    found.append((node.lineno, value.value))
        elif isinstance(node, ast.keyword) and node.arg == "_target_":
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                found.append((node.value.lineno, node.value.value))
    return found


def violations(source: str, stage: str, where: str = "<string>", source_module: str = "",
               is_package: bool = False) -> list[str]:
    """One line per import in ``source`` (a module of ``stage``) that goes against the flow."""
    out = []
    for line, name in imported_modules(source, source_module or stage, is_package):
        top = name.split(".")[0]
        if top in ALLOWED and top not in ALLOWED[stage]:
            out.append(f"{where}:{line}: {stage} imports {name} (allowed: {', '.join(sorted(ALLOWED[stage]))})")
    return out


def _stage_files() -> list[tuple[str, Path]]:
    return [(stage, path) for stage in ALLOWED for path in sorted((ROOT / stage).rglob("*.py"))
            if "__pycache__" not in path.parts]


def test_checker_sees_every_kind_of_import():
    source = '''
import export.engine
from registry import lineage
def f():
    from export.int8.save import save_int8_inference
    import importlib
    importlib.import_module("registry.publish")
    from hydra.utils import get_method, instantiate
    get_method("export.evaluate.evaluate_model")
    instantiate({"_target_": "registry.publish.after_training"})
    __import__("export")
from datasets.charset import Charset
from . import quant
from .. import export
'''
    found = violations(source, "training", "t.py", "training.models.x")
    names = sorted(v.split("imports ")[1].split(" ")[0] for v in found)
    assert names == sorted(["export.engine", "registry", "export.int8.save", "registry.publish",
                            "export.evaluate.evaluate_model", "registry.publish.after_training", "export"])
    assert all(v.startswith("t.py:") for v in found)
    assert violations(source, "registry") == []
    assert violations("import training\n", "datasets", "d.py")[0].startswith("d.py:1: datasets imports training")
    assert violations("from export import x\n", "export") == []


def test_relative_imports_resolve_against_the_package():
    assert imported_modules("from .. import registry\n", "export.int8.save") == [(1, "export")]
    assert imported_modules("from ...registry import x\n", "export.int8.save") == [(1, "registry")]
    assert violations("from ...registry import x\n", "export", source_module="export.int8.save")


@pytest.mark.parametrize("stage", list(ALLOWED))
def test_stage_imports_follow_the_flow(stage):
    problems = []
    files = [p for s, p in _stage_files() if s == stage]
    assert files, f"no .py files under {stage}/"
    for path in files:
        rel = path.relative_to(ROOT)
        module = ".".join(rel.with_suffix("").parts)
        is_package = path.name == "__init__.py"
        if is_package:
            module = module.rsplit(".", 1)[0]
        problems += violations(path.read_text(encoding="utf-8"), stage, str(rel), module, is_package)
    assert not problems, "imports against the flow datasets → training → export → registry:\n" + "\n".join(problems)
