"""Import direction, read from the source (AST), counting imports inside functions too (lazy imports are still
dependencies: they run on the path that needs them, e.g. on a torch-free Jetson).

cli -> everything; pipeline/report -> result files; distill -> train -> models, losses, data; export -> models;
eval takes an embedding function and knows no runtime; runtime backends other than PyTorch import neither torch nor
click nor the models; the foundation (errors, paths, io, preprocess, options, devices, artifacts) and models, data, losses
import nothing above them. Rules name packages, not files, so modules added later are held to them too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "edgekd"

# What each low layer may import from edgekd (besides itself). Anything else is "above" it.
FOUNDATION = {"errors", "paths", "io", "preprocess", "options", "devices", "artifacts"}
ALLOWED_BELOW = {
    "errors": set(),
    "paths": {"errors"},
    "io": {"errors"},
    "preprocess": {"errors"},
    "options": {"errors"},
    "devices": {"errors"},
    "artifacts": {"errors"},
    "losses": FOUNDATION,
    "data": FOUNDATION,
    "models": FOUNDATION,
}
# PyTorch backends of the runtime package: the only runtime modules that may import torch and the models.
TORCH_RUNTIME_PREFIX = "torch"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every import statement, at any depth."""
    mod = module_name(path)
    package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            out.append((base, [a.name for a in node.names], node.lineno))
    return out


SOURCES = sorted(PACKAGE.rglob("*.py"))
GRAPH = {p: imports(p) for p in SOURCES}


def top(module: str) -> str | None:
    """`edgekd.eval.run` -> "eval"; None for modules outside edgekd."""
    parts = module.split(".")
    return parts[1] if parts[0] == "edgekd" and len(parts) > 1 else None


def where(path: Path, line: int) -> str:
    return f"{path.relative_to(PACKAGE.parent)}:{line}"


def violations(select, forbidden) -> list[str]:
    """Imports of files chosen by `select(module_name)` that `forbidden(imported, names)` rejects."""
    found = []
    for path, edges in GRAPH.items():
        mod = module_name(path)
        if not select(mod):
            continue
        for imported, names, line in edges:
            why = forbidden(mod, imported, names)
            if why:
                found.append(f"{where(path, line)} imports {imported} ({why})")
    return found


def test_the_scan_sees_the_package_and_lazy_imports():
    assert len(SOURCES) > 40
    lazy = [e for e in GRAPH[PACKAGE / "cli" / "eval_cmd.py"] if e[0] == "edgekd.eval.run"]
    assert lazy, "imports inside functions must be counted"


def test_nothing_imports_cli():
    assert violations(lambda m: top(m) != "cli", lambda m, i, n: top(i) == "cli" and "only cli imports cli") == []


def test_eval_imports_no_runtime_and_no_torch():
    def forbidden(mod, imported, names):
        if top(imported) == "runtime":
            return "eval knows no runtime: callers open artifacts and pass them in"
        if imported.split(".")[0] in ("torch", "torchvision", "click"):
            return "eval is numpy only"
        return None

    assert violations(lambda m: top(m) == "eval", forbidden) == []


def test_runtime_backends_other_than_pytorch_import_no_torch_models_or_click():
    def is_non_torch_runtime(mod):
        parts = mod.split(".")
        return top(mod) == "runtime" and not (len(parts) > 2 and parts[2].startswith(TORCH_RUNTIME_PREFIX))

    def forbidden(mod, imported, names):
        if imported.split(".")[0] in ("torch", "torchvision", "click"):
            return "the ONNX / TensorRT path runs without torch and click"
        if top(imported) in ("models", "train", "distill", "export", "cli"):
            return "runtime backends (and the opener) do not build models"
        return None

    assert violations(is_non_torch_runtime, forbidden) == []


def test_the_detector_pipeline_imports_no_torch_models_or_click():
    """edgekd.detect is the deployed detection path (numpy between the networks): it runs in the torch-free venv."""
    def forbidden(mod, imported, names):
        if imported.split(".")[0] in ("torch", "torchvision", "click", "cv2"):
            return "the deployed detector runs without torch, click and OpenCV"
        if top(imported) in ("models", "train", "distill", "export", "cli"):
            return "the detector pipeline builds no models (edgekd.models.mtcnn holds the PyTorch networks)"
        return None

    assert violations(lambda m: top(m) == "detect", forbidden) == []


def test_export_uses_no_private_runtime_helpers():
    def forbidden(mod, imported, names):
        if top(imported) != "runtime":
            return None
        private = [n for n in names if n.startswith("_")] + [p for p in imported.split(".")[2:] if p.startswith("_")]
        return f"private {', '.join(private)}" if private else None

    found = violations(lambda m: top(m) == "export", forbidden)
    for path, edges in GRAPH.items():  # also `import edgekd.runtime.x as m` ... m._helper
        if top(module_name(path)) != "export":
            continue
        tree = ast.parse(path.read_text())
        aliases = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
                   if top(a.name) == "runtime"}
        aliases |= {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                    and top(n.module or "") == "runtime" for a in n.names if not a.name[0].isupper()}
        for n in ast.walk(tree):
            if (isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in aliases
                    and n.attr.startswith("_") and not n.attr.startswith("__")):
                found.append(f"{where(path, n.lineno)} uses {n.value.id}.{n.attr}")
    assert found == []


@pytest.mark.parametrize("layer", sorted(ALLOWED_BELOW))
def test_low_layers_import_nothing_above_them(layer):
    allowed = ALLOWED_BELOW[layer] | {layer}

    def forbidden(mod, imported, names):
        t = top(imported)
        if imported == "edgekd":
            return "the package root" if any(n != "__version__" for n in names) else None
        return f"{t} is above {layer}" if t is not None and t not in allowed else None

    assert violations(lambda m: top(m) == layer, forbidden) == []


def test_rules_fail_on_a_violation(tmp_path, monkeypatch):
    """The checker itself: a file importing upwards inside a function is caught."""
    bad = PACKAGE / "eval" / "_probe_for_test.py"
    edges = [("edgekd.runtime", ["open_artifact"], 3)]
    monkeypatch.setitem(GRAPH, bad, edges)
    with pytest.raises(AssertionError):
        test_eval_imports_no_runtime_and_no_torch()
