"""FP32 ONNX -> FP16 ONNX with float32 inputs/outputs, keeping numerically sensitive parts in FP32.

Kept in FP32: reductions and normalisation ops (an fp16 sum of squares over 512 values overflows or loses the
small components) and the embedding tail (GDC / flatten / FC / BatchNorm1d), which sets the embedding's direction
directly. Any L2 normalisation of embeddings happens later, in float64 numpy (eval), never in this graph.
The result runs in onnxruntime here and is the input of a strongly typed TensorRT FP16 build.
"""

from __future__ import annotations

import os
import warnings

from edgekd.export import graph

SENSITIVE_OPS = ["ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "LpNormalization", "Sqrt", "Pow",
                 "Div", "Softmax", "Exp", "Log", "Erf"]


def convert_fp16(src: str | os.PathLike, dst: str | os.PathLike, keep_tail: bool = True,
                 block_ops: list[str] | None = None) -> dict:
    """Write the FP16 model to `dst` atomically; returns the nodes kept in FP32 for the report."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = graph.ensure_node_names(graph.load(src))
    meta = graph.read_metadata(model)
    ops = SENSITIVE_OPS if block_ops is None else block_ops
    nodes = graph.tail_nodes(model) if keep_tail else []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "the model contains values out of fp16 range; clamped" is expected for BN eps
        half = convert_float_to_float16(model, keep_io_types=True, op_block_list=ops, node_block_list=nodes)
    if meta:
        graph.set_metadata(half, {**meta, "precision": "fp16"})
    graph.save(half, dst)
    return {"path": str(dst), "precision": "fp16", "fp32_op_types": ops, "fp32_nodes": nodes,
            "ops": graph.op_counts(half)}
