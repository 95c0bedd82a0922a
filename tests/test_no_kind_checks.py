"""No code outside the attention view asks which kind a classifier is: every kind answers the base interface
(``batch_predictor``, ``set_device``, ``device_notice``), so the CLI, the Batch tab and the Review tab share one
prediction pipeline (``allgui.core.classify.classify_paths``)."""

from __future__ import annotations

import ast
from pathlib import Path

import allgui

PACKAGE = Path(allgui.__file__).parent
# The attention view may ask whether the model has an SE attention view at all.
ALLOWED = {PACKAGE / "ui" / "attention_view.py", PACKAGE / "ui" / "review_attention.py"}
# Names that identify a classifier kind or something only one kind used to have (with every "...Classifier").
KIND_NAMES = {
    "FastSECNN",
    "BatchPredictor",
    "set_device",
    "set_engine",
    "engine_name",
    "device_notice",
    "batch_predictor",
    "predict_prepared",
}
# Modules whose presence in sys.modules was taken as "the model is an SE-CNN".
MODEL_MODULES = ("allgui.core.models", "allgui.core.inference")


def _names(node: ast.AST) -> set[str]:
    """Identifiers and string constants in an expression (``isinstance(x, (A, B))``, ``getattr(x, "y")``)."""
    found = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            found.add(child.id)
        elif isinstance(child, ast.Attribute):
            found.add(child.attr)
        elif isinstance(child, ast.Constant) and isinstance(child.value, str):
            found.add(child.value)
    return found


def _kind_checks(tree: ast.AST) -> list[tuple[int, str]]:
    problems = []
    for node in ast.walk(tree):
        checks = {"isinstance", "hasattr", "getattr"}
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in checks and node.args[1:]:
            names = _names(node.args[1])
            if any(name in KIND_NAMES or name.endswith("Classifier") for name in names):
                problems.append((node.lineno, ast.unparse(node)))
        # "allgui.core.models.secnn" in sys.modules, sys.modules.get(...) or sys.modules[...] of a model module
        if isinstance(node, ast.Compare | ast.Call | ast.Subscript):
            names = _names(node)
            if "modules" in names and "sys" in names and any(name.startswith(MODEL_MODULES) for name in names):
                problems.append((node.lineno, ast.unparse(node)))
    return problems


def test_the_scan_finds_the_checks_it_is_meant_to_find() -> None:
    code = (
        "import sys\n"
        "a = 'allgui.core.models.secnn' in sys.modules\n"
        "b = isinstance(model, SECNNClassifier)\n"
        "c = hasattr(model, 'set_device')\n"
        "d = getattr(model, 'device_notice', None)\n"
        "e = sys.modules.get('allgui.core.inference')\n"
        "f = isinstance(value, float) or getattr(os, 'O_BINARY', 0) or 'torch' in sys.modules\n"
    )
    assert sorted({line for line, _ in _kind_checks(ast.parse(code))}) == [2, 3, 4, 5, 6]


def test_no_model_kind_checks_outside_the_attention_view() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in ALLOWED:
            continue
        for line, text in _kind_checks(ast.parse(path.read_text(encoding="utf-8"))):
            found.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {text}")
    assert not found, "kind checks left:\n" + "\n".join(found)
