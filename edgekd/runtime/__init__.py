"""Runtimes: one interface (float32 NCHW -> (N, D) embeddings) over PyTorch, ONNX Runtime and TensorRT.

Backends are imported lazily: opening an ONNX file or an engine never imports torch.
"""

from __future__ import annotations

from pathlib import Path

from edgekd.errors import EdgekdError
from edgekd.runtime.base import Runtime

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def registry_preprocess(model: str):
    """Preprocessing of a registry model (imports torch: only used when the user names --model).

    Built on the meta device: no weights are allocated just to read an attribute.
    """
    import torch

    from edgekd.models import create_model

    with torch.device("meta"):
        return create_model(model).preprocess


def open_runtime(engine=None, onnx=None, model=None, weights=None, device="cpu", precision="fp32", **kw) -> Runtime:
    """The backend for what the user passed: an engine, an ONNX file, or a checkpoint / model name (PyTorch).

    With `onnx`, `model` names a registry model whose preprocessing applies (for files without edgekd metadata).
    """
    if sum(x is not None for x in (engine, onnx, weights)) > 1:
        raise EdgekdError("give only one of an engine, an ONNX file or PyTorch weights")
    if engine is not None:
        from edgekd.runtime.tensorrt_runtime import TensorRTRuntime

        return TensorRTRuntime(engine, **kw)
    if onnx is not None:
        from edgekd.runtime.onnx_runtime import OnnxRuntime

        if model is not None and kw.get("preprocess") is None:
            kw["preprocess"] = registry_preprocess(model)
        rt = OnnxRuntime(onnx, device=device, **kw)
        if model is not None:
            rt.meta.setdefault("model", model)  # files without edgekd metadata: name them as the user did
        return rt
    if weights is None and model is None:
        raise EdgekdError("nothing to run: give an engine, an ONNX file, weights or a model name")
    from edgekd.runtime.torch_runtime import TorchRuntime

    return TorchRuntime(weights=weights, model=model, device=device, precision=precision, **kw)


def open_path(path: str | Path, **kw) -> Runtime:
    """Open any artifact by its suffix (.engine/.plan -> TensorRT, .onnx -> ONNX Runtime, else a checkpoint)."""
    suffix = Path(path).suffix.lower()
    if suffix in ENGINE_SUFFIXES:
        return open_runtime(engine=path, **kw)
    if suffix == ".onnx":
        return open_runtime(onnx=path, **kw)
    return open_runtime(weights=path, **kw)


__all__ = ["Runtime", "open_runtime", "open_path", "registry_preprocess"]
