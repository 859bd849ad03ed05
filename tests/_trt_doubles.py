"""Helpers for the TensorRT / CUDA / NVML contract tests: put the strict doubles of tests/doubles/ in place of the
real modules (in process, or for a subprocess), and make a tiny face ONNX to build engines from."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

from edgekd.export import graph
from edgekd.preprocess import ARCFACE

DOUBLES = Path(__file__).parent / "doubles"
MODULES = ("tensorrt", "pycuda", "cuda", "pynvml", "_fakegpu")


def _purge() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in MODULES:
            del sys.modules[name]


def install(monkeypatch, hide=(), **machine):
    """Import the doubles instead of the real modules; `machine` configures _fakegpu.State; `hide`: modules that
    must look uninstalled (e.g. "pycuda" to get the cuda-python backend). Returns the simulated machine."""
    _purge()
    monkeypatch.syspath_prepend(str(DOUBLES))
    import _fakegpu

    state = _fakegpu.configure(**machine)
    for name in hide:
        monkeypatch.setitem(sys.modules, name, None)
    return state


def uninstall() -> None:
    """Check pycuda's exit contract (empty context stack) and drop the doubles from sys.modules."""
    driver = sys.modules.get("pycuda.driver")
    leaked = list(driver.context_stack) if driver is not None else []
    if driver is not None:
        driver.context_stack.clear()
    _purge()
    assert not leaked, f"pycuda context stack not empty at the end of the test ({len(leaked)} context(s))"


def subprocess_env(abort_on_leak: bool = True, **machine) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(DOUBLES), str(Path(__file__).parent),
                                                         os.environ.get("PYTHONPATH", "")]),
               EDGEKD_DOUBLES=json.dumps(machine))
    if abort_on_leak:
        env["EDGEKD_DOUBLES_ABORT"] = "1"
    return env


def tiny_face_onnx(path, precision="fp32", size=(112, 112), out_rank=2, dim=8):
    """A minimal N x 3 x H x W -> N x dim graph (GlobalAveragePool, Flatten, Gemm) with edgekd metadata."""
    h, w = size
    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["p"], name="gap"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "W"], ["embedding"], name="fc")]
    weights = np.random.default_rng(0).normal(size=(3, dim)).astype(np.float32)
    W = helper.make_tensor("W", TensorProto.FLOAT, [3, dim], weights.ravel())
    out_shape = ["batch", dim] if out_rank == 2 else ["batch", dim, 1]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, h, w])],
                          [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, out_shape)], [W])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    graph.set_metadata(m, {"model": "tiny", "method": "test", "precision": precision, "embedding_size": dim,
                           "preprocess": ARCFACE.to_dict()})
    graph.save(m, path)
    return Path(path)


def faces(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, 3, 112, 112)).astype(np.float32)
