"""Runtimes: one interface (float32 NCHW -> (N, D) embeddings) over PyTorch, ONNX Runtime and TensorRT.

`open_artifact(path, **options)` is the only place that maps a file to a backend: an engine (edgekd.artifacts.ENGINE_SUFFIXES) to
TensorRT, an .onnx file to ONNX Runtime, anything else to a PyTorch checkpoint (on CPU run through an in-memory ONNX
export, see torch_checkpoint.py). eval, bench, export verification and the pipeline all open artifacts through it.
Backends are imported lazily: opening an ONNX file or an engine never imports torch (nor edgekd.models).
"""

from __future__ import annotations

from pathlib import Path

from edgekd.artifacts import ENGINE_SUFFIXES, artifact_kind
from edgekd.errors import EdgekdError
from edgekd.runtime.base import Runtime


def open_artifact(path: str | Path | None = None, *, model: str | None = None, device: str = "auto",
                  precision: str = "fp32", threads: int | None = None, providers: list[str] | None = None,
                  preprocess=None, checkpoint_backend: str = "auto", spin_between_runs: bool = True,
                  **torch_options) -> Runtime:
    """Open `path` as an embedding function (a Runtime; close it, or use it as a context manager).

    model: the architecture of a checkpoint (default: detected), or, with no path, a randomly initialised registry
        model (speed only). preprocess: overrides an ONNX file's metadata (files not exported by edgekd).
    device: "auto" resolves per backend (edgekd.devices.resolve_device). threads: CPU threads (ONNX Runtime
        intra-op; torch's global setting for PyTorch). precision / torch_options (channels_last, compile,
        cuda_graph): PyTorch only; artifacts carry their own precision.
    checkpoint_backend: "auto" runs an fp32 checkpoint on CPU through ONNX Runtime (same embeddings, parity-checked,
        several times faster) and on CUDA with PyTorch; "torch" always uses PyTorch.
    spin_between_runs: ONNX files; False stops ONNX Runtime's threads spinning when a run returns, for callers that
        alternate the embedder with other work on the same cores (the video pipeline detects between embeddings).
    """
    from edgekd.devices import resolve_device

    if path is None and model is None:
        raise EdgekdError("nothing to open: give an engine, an ONNX file, a checkpoint or a model name")
    if path is not None and not Path(path).is_file():
        raise EdgekdError(f"{path}: no such file")
    kind = artifact_kind(path) if path is not None else "checkpoint"
    if kind == "engine":
        from edgekd.runtime.tensorrt.runner import TensorRTRuntime

        return TensorRTRuntime(path, device=device)
    if kind == "onnx":
        from edgekd.runtime.onnx_runtime import OnnxRuntime

        rt = OnnxRuntime(path, device=resolve_device(device, "onnxruntime"), providers=providers,
                         intra_op_threads=threads, preprocess=preprocess,
                         spin_between_runs=spin_between_runs)
        if model is not None:
            rt.meta.setdefault("model", model)  # files without edgekd metadata: name them as the user did
        return rt
    from edgekd.runtime.torch_checkpoint import open_checkpoint

    return open_checkpoint(path, model, resolve_device(device, "torch"), precision, threads, checkpoint_backend,
                           **torch_options)


__all__ = ["Runtime", "open_artifact", "artifact_kind", "ENGINE_SUFFIXES"]
