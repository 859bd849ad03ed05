"""The one interface every backend offers: a batch of preprocessed float32 NCHW faces in, float32 (N, D) out.

numpy only, so the ONNX and TensorRT backends stay free of torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.errors import EdgekdError

# One vocabulary for "precision": the number format a model computes in, wherever it runs. A PyTorch checkpoint
# computes in fp32 / fp16 / bf16 (a torch dtype); an exported artifact (ONNX file, TensorRT engine) is fp32, fp16 or
# int8 and carries its precision in its metadata. Every CLI choice and setting takes its values from here.
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
TORCH_PRECISIONS = ("fp32", "fp16", "bf16")
ARTIFACT_PRECISIONS = ("fp32", "fp16", "int8")
from edgekd.preprocess import Preprocess


class Runtime:
    """Base of TorchRuntime / OnnxRuntime / TensorRTRuntime; usable as an `embed_fn` for edgekd.eval.evaluate."""

    name = "runtime"

    def __init__(
        self,
        preprocess: Preprocess,
        embedding_size: int,
        precision: str = "fp32",
        device: str = "cpu",
        meta: dict | None = None,
        artifact: Path | None = None,
    ):
        self.preprocess = preprocess
        self.embedding_size = int(embedding_size)
        self.precision = precision
        self.device = device
        self.meta = dict(meta or {})
        self.artifact = Path(artifact) if artifact is not None else None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def device_time_ms(self, x: np.ndarray) -> float | None:
        """Accelerator time of one forward on `x` (CUDA events); None where it cannot be measured."""
        return None

    def close(self) -> None:
        """Release sessions / device memory; the runtime is unusable afterwards."""

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> dict:
        """The identity of what ran, for result JSON files."""
        return {
            "runtime": self.name,
            "precision": self.precision,
            "device": self.device,
            "artifact": str(self.artifact) if self.artifact else None,
            "embedding_size": self.embedding_size,
            "preprocess": self.preprocess.to_dict(),
            "meta": self.meta,
        }

    def _check_input(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        h, w = self.preprocess.input_size
        if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != (h, w):
            raise EdgekdError(f"{self.artifact or self.name}: expects input N x 3 x {h} x {w}, got {tuple(x.shape)}")
        return np.ascontiguousarray(x, dtype=np.float32)
