"""The one interface every backend offers: a batch of preprocessed float32 NCHW faces in, float32 (N, D) out.

numpy only, so the ONNX and TensorRT backends stay free of torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.errors import EdgekdError, NonFiniteEmbeddings

# A PyTorch checkpoint computes in fp32 / fp16 / bf16 (a torch dtype); an exported artifact is fp32, fp16 or int8
# (edgekd.artifacts.PRECISIONS) and carries its precision in its metadata.
TORCH_PRECISIONS = ("fp32", "fp16", "bf16")
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
        if self.embedding_size < 2:  # an N x 1 "embedding" has cosine +-1 for every pair: any threshold scores it
            raise EdgekdError(f"{artifact or self.name}: embedding size {self.embedding_size}; a face embedding "
                              "needs at least 2 dimensions")
        self.precision = precision
        self.device = device
        self.meta = dict(meta or {})
        self.artifact = Path(artifact) if artifact is not None else None

    def __init_subclass__(cls, **kwargs):
        """Every backend's `__call__` goes through `check_embeddings`: the one place that refuses non-finite or
        degenerate output, so no backend (present or future) can hand NaN or zero vectors to the scoring."""
        super().__init_subclass__(**kwargs)
        call = cls.__dict__.get("__call__")
        if call is not None and not getattr(call, "_checked", False):
            def checked(self, x, _call=call):
                return self.check_embeddings(_call(self, x))

            checked._checked = True
            checked.__doc__ = call.__doc__
            cls.__call__ = checked

    def __call__(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def check_embeddings(self, y) -> np.ndarray:
        """Float (N, D) embeddings, finite, no all-zero row: a NaN model would otherwise score 50 % ("AUC 0.55") and
        an integer or zero output a meaningless number; the error names the artifact before anything is scored."""
        where = self.artifact or self.name
        y = np.asarray(y)
        if not np.issubdtype(y.dtype, np.floating):
            raise EdgekdError(f"{where}: embeddings are {y.dtype}, expected floating point (not a face model's output)")
        if y.ndim != 2 or y.shape[1] < 2:
            raise EdgekdError(f"{where}: embeddings of shape {tuple(y.shape)}, expected N x D with D >= 2")
        bad = ~np.isfinite(y).all(axis=1)
        if bad.any():
            raise NonFiniteEmbeddings(f"{where}: {int(bad.sum())} of {len(y)} embeddings contain NaN or infinite values "
                              "(broken weights or an overflow)")
        zero = ~y.any(axis=1)
        if zero.any():
            raise EdgekdError(f"{where}: {int(zero.sum())} of {len(y)} embeddings are all zeros (a zero vector has "
                              "no direction to compare)")
        return y

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
