"""FP16 / INT8 Q/DQ accuracy against FP32 on real LFW with the real pretrained MobileFaceNet (one fold, calibrated on
identity-disjoint folds). Slow on a shared 2-core CPU (several minutes), so marked slow."""

from __future__ import annotations

import pytest


@pytest.mark.slow
@pytest.mark.shared_data
def test_reduced_precision_accuracy_on_one_lfw_fold(shared_data, tmp_path):
    from edgekd.export.calib import make_calib
    from edgekd.export.run import export_model
    from edgekd.models import create_model

    name = "mobilefacenet_ms1m_foamliu"
    pairs = shared_data / "lfw" / "pairs.txt"
    make_calib(str(pairs), tmp_path / "calib", n=64, folds=[1, 2, 3, 4, 5], preprocess=create_model(name).preprocess,
               progress=False)
    report = export_model(model=name, out=tmp_path / "m.onnx", calib=tmp_path / "calib", calib_methods=("minmax",),
                          verify=pairs, folds=[6], log=lambda *a: None, progress=False)
    assert "real aligned LFW" in report["parity_faces"] and report["parity"]["passed"]
    art = report["artifacts"]
    assert art["fp32"]["verification"]["num_pairs"] == 600
    assert art["fp32"]["verification"]["accuracy_mean"] > 0.97  # a real model, not noise
    assert abs(art["fp16"]["accuracy_delta_pt"]) <= 0.1
    assert abs(art["int8-minmax"]["accuracy_delta_pt"]) <= 0.5
