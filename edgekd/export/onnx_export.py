"""PyTorch -> ONNX with a dynamic batch axis, constant folding, simplification and edgekd metadata.

Exporter: the TorchScript-based one (`torch.onnx.export(..., dynamo=False)`). For these static conv nets it gives
a plain, fully folded graph whose batch axis is symbolic via `dynamic_axes`, in about a second. The dynamo exporter
(torch 2.9+ default, `dynamic_shapes`) also produced a dynamic-batch graph for mobilefacenet here, but took 34 s on
the shared CPU and builds at opset 18, reaching opset 17 only through onnxscript's fallback version converter.
arcface_torch's exporter fixes the batch; here one file serves batch 1 and batch 37 alike.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import onnx

from edgekd.errors import EdgekdError
from edgekd.export import DEFAULT_OPSET, graph

INPUT, OUTPUT = "input", "embedding"
EXPORTER = "torch.onnx.export(dynamo=False) (TorchScript exporter)"



def simplify(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    """onnxslim (installed with edgekd), else onnxsim when present, else the graph as exported; says which ran."""
    try:
        import onnxslim

        return onnxslim.slim(model), f"onnxslim {onnxslim.__version__}"
    except ImportError:
        pass
    try:
        import onnxsim

        simplified, ok = onnxsim.simplify(model)
        if ok:
            return simplified, f"onnxsim {onnxsim.__version__}"
    except ImportError:
        pass
    return model, "none (neither onnxslim nor onnxsim importable)"


def to_onnx(model, input_size: tuple[int, int], opset: int = DEFAULT_OPSET) -> onnx.ModelProto:
    """Trace `model` (eval mode, CPU, float32) at batch 2 with a symbolic batch axis on input and output."""
    import torch

    h, w = input_size
    model = model.eval().float().cpu()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice; the choice is documented above
        torch.onnx.export(
            model, (torch.zeros(2, 3, h, w),), buf, dynamo=False, opset_version=opset, do_constant_folding=True,
            input_names=[INPUT], output_names=[OUTPUT],
            dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
        )
    return onnx.load_from_string(buf.getvalue())


def export_onnx(model, out: str | os.PathLike, meta: dict, input_size: tuple[int, int], opset: int = DEFAULT_OPSET,
                simplifier: bool = True) -> dict:
    """Export, simplify, check and write `out` atomically as one file; returns what was done for the report."""
    out = Path(out)
    proto = to_onnx(model, input_size, opset)
    used = "disabled"
    if simplifier:
        proto, used = simplify(proto)
    graph.ensure_node_names(proto)
    graph.set_metadata(proto, meta)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as e:
        raise EdgekdError(f"{out}: exported graph fails onnx.checker ({str(e).splitlines()[0][:160]})") from e
    _, dims = graph.input_spec(proto)
    if not isinstance(dims[0], str):
        raise EdgekdError(f"{out}: batch axis was baked in as {dims[0]} (expected a symbolic batch)")
    graph.save(proto, out)
    return {"path": str(out), "exporter": EXPORTER, "opset": opset, "simplifier": used, "input": INPUT,
            "input_shape": dims, "ops": graph.op_counts(proto), "bytes": out.stat().st_size}
