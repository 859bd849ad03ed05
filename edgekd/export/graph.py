"""Small ONNX graph helpers shared by export, FP16, INT8 and the TensorRT build (load, save, inspect, metadata)."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import onnx

from edgekd.errors import EdgekdError
from edgekd.io import atomic_path

META_PREFIX = "edgekd."


def load(path: str | os.PathLike) -> onnx.ModelProto:
    path = Path(path)
    if not path.is_file():
        raise EdgekdError(f"{path}: no such file")
    try:
        return onnx.load(str(path))
    except Exception as e:  # protobuf DecodeError and friends
        raise EdgekdError(f"{path}: not a readable ONNX model ({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})") from e


def save(model: onnx.ModelProto, path: str | os.PathLike) -> Path:
    """One self-contained file (weights inline: these models are far below protobuf's 2 GB), written atomically."""
    with atomic_path(path) as tmp:
        onnx.save_model(model, str(tmp), save_as_external_data=False)
    return Path(path)


def set_metadata(model: onnx.ModelProto, meta: dict) -> onnx.ModelProto:
    """Write `edgekd.<key>` metadata_props (dicts as JSON), replacing earlier values of the same keys."""
    keys = {META_PREFIX + k for k in meta}
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in keys]
    del model.metadata_props[:]
    for k, v in kept:
        model.metadata_props.add(key=k, value=v)
    for k, v in meta.items():
        model.metadata_props.add(key=META_PREFIX + k, value=json.dumps(v) if isinstance(v, (dict, list)) else str(v))
    return model


def read_metadata(model: onnx.ModelProto) -> dict:
    out = {}
    for p in model.metadata_props:
        if p.key.startswith(META_PREFIX):
            k = p.key[len(META_PREFIX):]
            out[k] = json.loads(p.value) if k == "preprocess" else p.value
    return out


def input_spec(model: onnx.ModelProto) -> tuple[str, list]:
    """(name, dims) of the single graph input; symbolic dims are returned as their names (str)."""
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        return "", []
    i = inputs[0]
    dims = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in i.type.tensor_type.shape.dim]
    return i.name, dims


def check_face_input(model: onnx.ModelProto, path, input_size: tuple[int, int]) -> tuple[str, list]:
    """Refuse graphs that are not an N x 3 x H x W face embedder of the declared size."""
    name, dims = input_spec(model)
    h, w = input_size
    if len(dims) != 4 or dims[1:] != [3, h, w]:
        raise EdgekdError(f"{path}: not a face model: input {name or '?'} {dims} (expected N x 3 x {h} x {w})")
    outs = model.graph.output
    if len(outs) != 1 or len(outs[0].type.tensor_type.shape.dim) != 2:
        raise EdgekdError(f"{path}: not a face model: expected one N x D embedding output, got {len(outs)} output(s)")
    return name, dims


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    return dict(sorted(Counter(n.op_type for n in model.graph.node).items()))


def first_conv(model: onnx.ModelProto) -> str | None:
    return next((n.name for n in model.graph.node if n.op_type == "Conv"), None)


def tail_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes of the embedding tail: everything producing rank <= 2 or 1x1-spatial tensors (GDC, flatten, FC, BN1d).

    These few nodes set the embedding's direction directly, so reduced precision there costs the most accuracy.
    """
    inferred = onnx.shape_inference.infer_shapes(model)
    ranks = {}
    for v in list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = v.type.tensor_type.shape.dim
        ranks[v.name] = [d.dim_value if d.HasField("dim_value") else -1 for d in dims]
    tail = []
    for n in model.graph.node:
        shapes = [ranks.get(o) for o in n.output]
        if any(s is not None and (len(s) <= 2 or (len(s) == 4 and s[2:] == [1, 1])) for s in shapes):
            tail.append(n.name)
    return tail


def ensure_node_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give unnamed nodes stable names so block/exclude lists can refer to them."""
    for i, n in enumerate(model.graph.node):
        if not n.name:
            n.name = f"{n.op_type}_{i}"
    return model
