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
    # not monkeypatch.syspath_prepend: its undo restores the whole sys.path, dropping entries that imports made
    # meanwhile (onnxruntime.transformers appends its own folder, and its fusion_utils import then fails)
    if str(DOUBLES) not in sys.path:
        sys.path.insert(0, str(DOUBLES))
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
    while str(DOUBLES) in sys.path:
        sys.path.remove(str(DOUBLES))
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


def tiny_conv_face_onnx(path, dim=8):
    """tiny_face_onnx with three 3x3 convs in front: the exporter's quantizer keeps the first conv and the tail in
    float, so only this body gets Q/DQ nodes."""
    rng = np.random.default_rng(0)
    inits, nodes, prev, ch = [], [], "input", 3
    for i, out_ch in enumerate((4, 4, 4)):
        w = helper.make_tensor(f"cw{i}", TensorProto.FLOAT, [out_ch, ch, 3, 3],
                               rng.normal(scale=0.3, size=(out_ch, ch, 3, 3)).astype(np.float32).ravel())
        inits.append(w)
        nodes += [helper.make_node("Conv", [prev, f"cw{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
        prev, ch = f"r{i}", out_ch
    nodes += [helper.make_node("GlobalAveragePool", [prev], ["p"], name="gap"),
              helper.make_node("Flatten", ["p"], ["f"], name="flat"),
              helper.make_node("Gemm", ["f", "W"], ["embedding"], name="fc")]
    inits.append(helper.make_tensor("W", TensorProto.FLOAT, [ch, dim], rng.normal(size=(ch, dim)).astype(np.float32).ravel()))
    g = helper.make_graph(nodes, "tinyconv",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 112, 112])],
                          [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    graph.set_metadata(m, {"model": "tinyconv", "method": "test", "precision": "fp32", "embedding_size": dim,
                           "preprocess": ARCFACE.to_dict()})
    graph.save(m, path)
    return Path(path)


def faces(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, 3, 112, 112)).astype(np.float32)
