"""Artifact names: formatting and parsing agree, and every member of a family maps back to its base stem."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekd import artifacts as a
from edgekd.errors import EdgekdError


@pytest.mark.parametrize("tag", ["fp32", "fp16", "int8-minmax", "int8-gated", "int8-cpu", "int8-qat-s2"])
def test_onnx_names_round_trip(tag):
    p = a.onnx_path("engines/r18.onnx", tag)
    assert a.family(p) == Path("engines/r18")
    assert a.variant_of(p).tag == tag
    assert a.onnx_path(p, "fp32") == Path("engines/r18.onnx")


def test_names_as_written_by_export():
    assert a.onnx_path("engines/r18", "fp16") == Path("engines/r18.fp16.onnx")
    assert a.onnx_path("engines/r18.onnx", a.Variant("int8", "entropy")) == Path("engines/r18.int8-entropy.onnx")
    assert a.export_report_path("engines/r18.int8-gated.onnx") == Path("engines/r18.export_report.json")


@pytest.mark.parametrize("member", ["x/r18.onnx", "x/r18.fp16.onnx", "x/r18.int8-gated.onnx", "x/r18.int8.engine"])
def test_engine_name_from_any_member(member):
    assert a.engine_path(member, "fp16") == Path("x/r18.fp16.engine")
    assert a.engine_path(member, "int8", engines_dir="e") == Path("e/r18.int8.engine")
    assert a.sidecar_path(a.engine_path(member, "fp16")) == Path("x/r18.fp16.engine.json")


def test_a_dotted_model_name_keeps_its_dots():
    assert a.family("m/mobilefacenet.v2.onnx") == Path("m/mobilefacenet.v2")
    assert a.engine_path("m/mobilefacenet.v2.fp16.onnx", "fp16") == Path("m/mobilefacenet.v2.fp16.engine")


def test_calib_cache_and_detector_names():
    assert a.calib_cache_path("e/r18.int8.engine", "ab" * 32) == Path("e/r18.int8.engine.calib-abababababab.cache")
    assert a.engine_path(Path("d") / (a.detector_stem("mtcnn", "pnet") + ".onnx"), "fp16") == \
        Path("d/mtcnn-pnet.fp16.engine")


def test_tensorrt_int8_prefers_the_gated_file(tmp_path):
    base = tmp_path / "r18.onnx"
    assert a.typed_onnx_for(base, "int8", "minmax") == tmp_path / "r18.int8-minmax.onnx"
    (tmp_path / "r18.int8-gated.onnx").write_bytes(b"x")
    assert a.typed_onnx_for(base, "int8", "minmax") == tmp_path / "r18.int8-gated.onnx"
    assert a.typed_onnx_for(base, "fp16", "minmax") == tmp_path / "r18.fp16.onnx"


@pytest.mark.parametrize("bad", [("int8", None), ("fp16", "minmax"), ("bf16", None)])
def test_invalid_variants_are_refused(bad):
    with pytest.raises(EdgekdError):
        a.Variant(*bad)


def test_artifact_kind():
    assert [a.artifact_kind(p) for p in ("m.engine", "m.PLAN", "m.onnx", "m.pt")] == \
        ["engine", "engine", "onnx", "checkpoint"]


def test_artifact_suffixes_are_spelled_only_in_the_naming_module():
    """A new INT8 form or artifact kind must not need edits all over the package: outside edgekd/artifacts.py no
    string (code, help text or docstring) spells an artifact suffix."""
    import ast
    import re

    root = Path(a.__file__).parent
    literal = re.compile(r"\.int8-|\.fp16\.|(?<!tensorrt)\.engine\b|(?<!data)\.plan\b|\.export_report\.json|\.calib-")
    found = [f"{p.relative_to(root)}:{node.lineno}: {node.value[:80]!r}" for p in sorted(root.rglob("*.py"))
             if p.name != "artifacts.py" for node in ast.walk(ast.parse(p.read_text()))
             if isinstance(node, ast.Constant) and isinstance(node.value, str) and literal.search(node.value)]
    assert found == []
