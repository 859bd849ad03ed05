"""Parameters and GFLOPs of a deployed artifact without torch.

For an ONNX file: the figures export recorded (`edgekd.params` / `edgekd.gflops` metadata) when present, else
counted from the graph with the same convention as edgekd.models.complexity (multiply-adds of Conv / Gemm / MatMul
per image, GFLOPs = MACs * 1e-9). For a TensorRT engine: its sidecar's figures, else the ONNX of the same name.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.io import sha256_file


def _dims(shape_proto) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") else None for d in shape_proto.dim]


def onnx_graph_complexity(model) -> dict:
    """Count per-image multiply-adds of Conv, Gemm and MatMul from shape-inferred tensor shapes (batch = 1)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # noqa: BLE001 - fall back to whatever shapes the file already carries
        inferred = model
    g = inferred.graph
    shapes: dict[str, list[int | None]] = {}
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape"):
            shapes[vi.name] = _dims(vi.type.tensor_type.shape)
    init_names = set()
    params = 0
    for t in g.initializer:
        shapes[t.name] = list(t.dims)
        init_names.add(t.name)
    # Q/DQ graphs keep an int8 weight plus scales; count each weight once: skip scale/zero-point inputs.
    qparam = {n.input[i] for n in g.node if n.op_type in ("DequantizeLinear", "QuantizeLinear")
              for i in (1, 2) if len(n.input) > i}
    for t in g.initializer:
        if t.name not in qparam:
            params += int(np.prod(t.dims)) if len(t.dims) else 1

    def per_image(shape: list[int | None] | None) -> int | None:
        if not shape or any(d is None for d in shape[1:]):
            return None
        return int(np.prod(shape[1:])) if len(shape) > 1 else 1

    macs, unknown = 0, 0
    for n in g.node:
        if n.op_type in ("Conv", "QLinearConv", "ConvInteger"):
            w = n.input[3] if n.op_type == "QLinearConv" else n.input[1]
            out = per_image(shapes.get(n.output[0]))
            ws = shapes.get(w)
            if out is None or not ws or any(d is None for d in ws):
                unknown += 1
                continue
            macs += out * int(np.prod(ws[1:]))  # (Cin / groups) * kh * kw per output element
        elif n.op_type in ("Gemm", "MatMul", "MatMulInteger"):
            a, b = shapes.get(n.input[0]), shapes.get(n.input[1])
            out = per_image(shapes.get(n.output[0]))
            if out is None or not a or not b:
                unknown += 1
                continue
            trans_b = any(at.name == "transB" and at.i for at in n.attribute)
            k = b[-1] if (n.op_type == "Gemm" and trans_b) else b[-2] if len(b) >= 2 else b[0]
            if k is None:
                unknown += 1
                continue
            macs += out * int(k)
    return {"params": params, "macs": macs, "gflops": macs * 1e-9,
            "source": "onnx-graph" + (f" ({unknown} ops of unknown shape not counted)" if unknown else "")}


def onnx_complexity(path: str | Path) -> dict:
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001
        raise EdgekdError(f"{path}: not a readable ONNX model ({e})") from e
    meta = {p.key: p.value for p in model.metadata_props}
    if "edgekd.gflops" in meta:
        try:
            params = meta.get("edgekd.params")
            return {"params": int(params) if params is not None else None, "gflops": float(meta["edgekd.gflops"]),
                    "macs": round(float(meta["edgekd.gflops"]) * 1e9), "source": "onnx-metadata"}
        except ValueError:
            pass
    return onnx_graph_complexity(model)


def onnx_artifact_bytes(path: str | Path) -> int:
    """The .onnx file plus the external-data files it references (weights > 2 GB or saved beside it)."""
    import onnx

    path = Path(path)
    total = path.stat().st_size
    model = onnx.load(str(path), load_external_data=False)
    locations = set()
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                locations.add(e.value)
    for loc in locations:
        f = path.parent / loc
        if f.exists():
            total += f.stat().st_size
    return total


def engine_complexity(engine: str | Path) -> dict | None:
    """From the engine's sidecar JSON (`params`/`gflops`), else the same-named ONNX beside it when it is the one the
    engine was built from (sidecar `onnx_sha256`)."""
    engine = Path(engine)
    from edgekd.artifacts import sidecar_path

    sidecar = sidecar_path(engine)
    meta = {}
    if sidecar.exists():
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            meta = {}
    if not isinstance(meta, dict):  # the runtime refuses such a sidecar with its own one-line error
        meta = {}
    if meta.get("gflops") is not None:
        return {"params": meta.get("params"), "gflops": float(meta["gflops"]),
                "macs": round(float(meta["gflops"]) * 1e9), "source": "engine-sidecar"}
    onnx_path = engine.with_suffix(".onnx")
    if onnx_path.exists() and (meta.get("onnx_sha256") in (None, sha256_file(onnx_path))):
        c = onnx_complexity(onnx_path)
        c["source"] = f"{c['source']} of {onnx_path.name}"
        return c
    return None
