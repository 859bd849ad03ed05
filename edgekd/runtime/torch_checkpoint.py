"""Opening a PyTorch checkpoint (the PyTorch side of edgekd.runtime.open_artifact): on CUDA a TorchRuntime; on CPU
the model exported to ONNX (a temporary file, deleted once the session holds it), checked for parity with PyTorch
on real faces, and run by ONNX Runtime. Parameters and GFLOPs (edgekd.models.complexity: the figures a registered
model's cfg records for its default build, else counted) go into the runtime's meta.

Why: PyTorch eager on CPU took 6.4x the wall time of a batched ONNX Runtime loop on the same LFW pairs (oneDNN
kernels per op, no graph-level fusion); the export costs a few seconds, so checkpoint evaluation and in-training
validation take about the ONNX time (benchmarks/results/eval_speed.md). A model the exporter mishandles fails the
parity check and the caller falls back to PyTorch. CUDA keeps PyTorch (it is fast there and supports AMP/graphs).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

from edgekd.errors import EdgekdError
from edgekd.runtime.onnx_runtime import OnnxRuntime

# odd and not the traced batch of 2, like export's 37; few, since this graph is never shipped (it only has to be the
# same net) and the PyTorch eager reference is the slow half of the check, paid at every `edgekd eval --weights`
PARITY_FACES = 3
EXECUTED_BY = "onnxruntime (in-memory ONNX export of the checkpoint, parity-checked against PyTorch)"


def onnx_runtime_from_module(module, threads: int | None = None, meta: dict | None = None,
                             artifact: str | Path | None = None, *, copy_module: bool = True) -> OnnxRuntime:
    """An OnnxRuntime computing what `module` (a face model, any device) computes in eval mode; EdgekdError when the
    ONNX graph differs from PyTorch beyond the export tolerance. It reports itself as the `torch` runtime of
    `artifact`: the figures are the checkpoint's, only the kernels are ONNX Runtime's (see meta["executed_by"]).
    `copy_module=False`: `module` is already an eval-mode float32 CPU model the caller lets go of (no copy made)."""
    import copy

    import torch

    from edgekd.export.onnx_export import export_onnx
    from edgekd.export.parity import check_parity, sample_faces

    # the caller's module keeps its device, dtype and mode
    cpu_model = (copy.deepcopy(module) if copy_module else module).eval().float().cpu()
    faces, _ = sample_faces(cpu_model.preprocess, n=PARITY_FACES)
    with tempfile.TemporaryDirectory(prefix="edgekd-ckpt-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(cpu_model, path, {}, tuple(cpu_model.preprocess.input_size), simplifier=False)
        rt = OnnxRuntime(path, intra_op_threads=threads or torch.get_num_threads(), preprocess=cpu_model.preprocess)
    try:
        parity = check_parity(path, cpu_model, faces, runtime=rt)
    except EdgekdError:
        rt.close()
        raise
    rt.name = "torch"
    rt.artifact = Path(artifact) if artifact is not None else None
    rt.meta = {**(meta or {}), "precision": "fp32", "executed_by": EXECUTED_BY,
               "parity_min_cosine": min(parity["min_cosine"], parity["batch1"]["min_cosine"])}
    return rt


def cpu_embed_fn(module, threads: int | None = None) -> OnnxRuntime | None:
    """The fast CPU embedding function of a live model (in-training validation): its ONNX Runtime twin, or None
    (with a warning saying why) when the export fails parity, so the caller keeps PyTorch. `module` is not changed."""
    try:
        return onnx_runtime_from_module(module, threads)
    except EdgekdError as e:
        warnings.warn(f"validating with PyTorch eager (slower): {e}")
        return None


def open_checkpoint(path, model: str | None = None, device: str = "cpu", precision: str = "fp32",
                    threads: int | None = None, checkpoint_backend: str = "auto", **torch_options):
    """A checkpoint (or, with no path, a random-init registry `model`) as a Runtime; see open_artifact."""
    import torch

    from edgekd.models import complexity
    from edgekd.runtime.torch_runtime import TorchRuntime

    if checkpoint_backend not in ("auto", "torch"):
        raise EdgekdError(f"checkpoint_backend must be auto or torch, got {checkpoint_backend!r}")
    if threads:
        torch.set_num_threads(int(threads))
    rt = TorchRuntime(weights=path, model=model, device=device, precision=precision, **torch_options)
    c = complexity(rt.module, rt.meta.get("model"))  # a registered model's default build: its cfg's figures
    rt.meta.update(params=c["params"], gflops=c["gflops"])
    if not (checkpoint_backend == "auto" and device == "cpu" and precision == "fp32" and path is not None
            and not any(torch_options.values())):
        return rt
    try:
        fast = onnx_runtime_from_module(rt.module, threads, rt.meta, rt.artifact, copy_module=False)  # CPU fp32 eval
    except EdgekdError as e:
        warnings.warn(f"{path}: evaluating with PyTorch eager (slower): {e}")
        return rt
    rt.close()
    return fast
