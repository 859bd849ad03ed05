"""PyTorch backend: a checkpoint (or a module) on CPU or CUDA, FP32/FP16/BF16, optional channels_last,
torch.compile and CUDA-graph replay (one static input buffer per batch size, captured after warm-up).

On cuda:N every stream, graph and event is made under `torch.cuda.device(N)`: they belong to the current device,
which is 0 unless set, not to the device of the tensors."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np
import torch

from edgekd.errors import EdgekdError
from edgekd.runtime.base import Runtime

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
GRAPH_WARMUP = 3


class TorchRuntime(Runtime):
    name = "torch"

    def __init__(
        self,
        weights: str | Path | None = None,
        model: str | None = None,
        module: torch.nn.Module | None = None,
        device: str = "cpu",
        precision: str = "fp32",
        channels_last: bool = False,
        compile: bool = False,
        cuda_graph: bool = False,
        **model_kw,
    ):
        """`weights` loads via edgekd.models.load_model (architecture auto-detected unless `model` names it);
        `model` alone builds a randomly initialised network (speed measurements); `module` wraps a live model."""
        if precision not in DTYPES:
            raise EdgekdError(f"precision must be one of {', '.join(DTYPES)} for PyTorch, got {precision!r}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise EdgekdError(f"device {device!r} requested but PyTorch sees no CUDA device")
        if cuda_graph and not device.startswith("cuda"):
            raise EdgekdError("CUDA-graph replay needs --device cuda")
        meta: dict = {}
        if module is None and weights is not None:
            from edgekd.models import load_model

            module, info = load_model(weights, name=model, **model_kw)
            meta = {"model": info.name, "model_kwargs": info.kwargs, "weights_sha256": info.weights_sha256,
                    **{k: v for k, v in (info.meta or {}).items() if k in ("method", "teacher", "version")}}
        elif module is None and model is not None:
            from edgekd.models import create_model

            warnings.warn(f"{model}: no weights given, using random initialisation (only speed is meaningful)")
            module = create_model(model, **model_kw)
            meta = {"model": model, "model_kwargs": model_kw, "random_init": True}
        elif module is None:
            raise EdgekdError("TorchRuntime needs weights, a model name or a module")
        meta.setdefault("model", getattr(module, "name", None) or model or type(module).__name__)
        meta["precision"] = precision
        super().__init__(module.preprocess, module.embedding_size, precision, device, meta,
                         Path(weights) if weights is not None else None)
        self._device = torch.device(device)
        self._dtype = DTYPES[precision]
        self._memory_format = torch.channels_last if channels_last else torch.contiguous_format
        module = module.eval().to(self._device, dtype=self._dtype, memory_format=self._memory_format)
        if precision != "fp32" and getattr(module, "fp16", False):
            # fp16=True is mixed-precision training (autocast body, float32 head); a module cast whole to fp16/bf16
            # has no float32 head left, and the cast back to float32 before forward_head would meet its weights
            module.fp16 = False
        self.module = module
        self._forward = torch.compile(module, dynamic=False) if compile else module
        self._graphs: dict[int, tuple] | None = {} if cuda_graph else None

    def _to_device(self, x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(self._check_input(x))
        if self._device.type == "cuda":
            t = t.pin_memory()
        return t.to(self._device, dtype=self._dtype, non_blocking=True).contiguous(memory_format=self._memory_format)

    def _on_device(self):
        return torch.cuda.device(self._device) if self._device.type == "cuda" else contextlib.nullcontext()

    def _graph(self, n: int) -> tuple:
        """Capture once per batch size: warm up on a side stream (cuDNN autotuning, lazy init), then record."""
        if n not in self._graphs:
            h, w = self.preprocess.input_size
            static_in = torch.zeros((n, 3, h, w), device=self._device, dtype=self._dtype).contiguous(
                memory_format=self._memory_format)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(GRAPH_WARMUP):
                    self._forward(static_in)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self._forward(static_in)
            self._graphs[n] = (graph, static_in, static_out)
        return self._graphs[n]

    @torch.no_grad()
    def _run(self, t: torch.Tensor) -> torch.Tensor:
        if self._graphs is None:
            return self._forward(t)
        with self._on_device():
            graph, static_in, static_out = self._graph(t.shape[0])
            static_in.copy_(t)
            graph.replay()
        return static_out

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = self._run(self._to_device(x))
        return y.float().cpu().numpy()

    @torch.no_grad()
    def device_time_ms(self, x: np.ndarray) -> float | None:
        """CUDA-event time of the forward (or graph replay) alone, input already on the device; None on CPU."""
        if self._device.type != "cuda":
            return None
        t = self._to_device(x)
        with self._on_device():
            if self._graphs is not None:
                graph, static_in, _ = self._graph(t.shape[0])
                static_in.copy_(t)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            if self._graphs is not None:
                graph.replay()
            else:
                self._forward(t)
            end.record()
            end.synchronize()
        return float(start.elapsed_time(end))

    def close(self) -> None:
        self._graphs = {} if self._graphs is not None else None
        self.module = self._forward = None
        if self._device.type == "cuda":
            with self._on_device():
                torch.cuda.empty_cache()
