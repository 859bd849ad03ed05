"""One meaning of `--device auto` everywhere: a CUDA device when the backend doing the work can use one, else CPU.

"The backend" matters because a machine can have a GPU that torch sees while onnxruntime is the CPU-only wheel:
`auto` then trains on CUDA and runs ONNX files on CPU, instead of failing. Explicit devices pass through unchanged
(the backend reports a device it cannot use). Imports torch / onnxruntime only when asked about them.
"""

from __future__ import annotations

BACKENDS = ("torch", "onnxruntime", "tensorrt")


def cuda_usable(backend: str) -> bool:
    """Can `backend` run on a CUDA device here?"""
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    if backend == "onnxruntime":
        import onnxruntime

        return "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    if backend == "tensorrt":
        return True  # a TensorRT engine only runs on a GPU
    raise ValueError(f"unknown backend {backend!r} (one of {', '.join(BACKENDS)})")


def resolve_device(device: str | None = "auto", backend: str = "torch") -> str:
    """"auto" (or None) -> "cuda" when `backend` can use CUDA here, else "cpu"; anything else unchanged."""
    if device in (None, "auto"):
        return "cuda" if cuda_usable(backend) else "cpu"
    return device
