"""Tiny face-model-shaped ONNX files built with onnx.helper (no torch), for bench/report/pipeline tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def tiny_onnx(path: Path, *, size: int = 16, channels: int = 4, dim: int = 8, seed: int = 0,
              metadata: dict | None = None) -> Path:
    """Conv 3x3 (3->channels) -> Relu -> GlobalAveragePool -> Flatten -> Gemm (channels->dim); input N x 3 x size x size."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((channels, 3, 3, 3)).astype(np.float32), "w")
    fc = numpy_helper.from_array(rng.standard_normal((dim, channels)).astype(np.float32), "fc")
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["embedding"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", dim])],
        initializer=[w, fc],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {
        "edgekd.model": "tiny", "edgekd.method": "vanilla", "edgekd.precision": "fp32",
        "edgekd.embedding_size": str(dim),
        "edgekd.preprocess": json.dumps({"input_size": [size, size], "mean": [127.5] * 3, "std": [127.5] * 3,
                                         "crop": None}),
        **(metadata or {}),
    }
    for k, v in meta.items():
        p = model.metadata_props.add()
        p.key, p.value = k, v
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def tiny_macs(size: int = 16, channels: int = 4, dim: int = 8) -> int:
    return size * size * channels * 3 * 3 * 3 + dim * channels
