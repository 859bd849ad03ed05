"""The MTCNN detector as `edgekd export --detector mtcnn` writes it, exported once per test session (the export and
its real-photo parity check take ~10 s) into the session's base temp folder; tests that need it skip cleanly when
the weights (make setup) are absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekd.paths import mtcnn_weights_dir


def exported_detector(tmp_path_factory) -> Path:
    """The export folder (FP32 + FP16 ONNX and the export report), shared by every test of the session."""
    if not (mtcnn_weights_dir() / "onet.pt").is_file():
        pytest.skip("MTCNN weights absent (make setup)")
    out = tmp_path_factory.getbasetemp() / "mtcnn-export"
    if not (out / "mtcnn.export_report.json").is_file():
        from edgekd.export.detector import export_detector

        export_detector("mtcnn", out)
    return out
