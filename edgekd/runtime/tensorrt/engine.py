"""EngineRunner: any serialized engine as a function of named arrays (name -> array in, name -> array out).

For networks that are not a face model (a detector's stages, with dynamic height and width): every input shape is
set per call (checked against optimization profile 0, TensorRT refuses shapes outside it), the output shapes are
then read from the context, and the page-locked host / device buffers of each tensor grow to the largest call seen.
Named-tensor API (set_input_shape / set_tensor_address / execute_async_v3: TensorRT 8.5 to 11.x). The sidecar is
checked first (TensorRT version, then the GPU of `device`), as for TensorRTRuntime.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.runtime.tensorrt import fail_unavailable, import_tensorrt
from edgekd.runtime.tensorrt.cuda import open_cuda
from edgekd.runtime.tensorrt.loader import engine_from_path
from edgekd.runtime.tensorrt.sidecar import check_sidecar, read_sidecar


class EngineRunner:
    """`with EngineRunner(path, device="cuda:0") as run: outputs = run({"input": x})`; `inputs` / `outputs`:
    [{name, dtype, shape (-1 = dynamic), profile (min, opt, max) for inputs}]."""

    def __init__(self, engine: str | Path, device="cuda"):
        from edgekd.runtime.tensorrt.runner import parse_device

        self.path = path = Path(engine)
        if not path.is_file():
            raise EdgekdError(f"{path}: no such file")
        index, dla_core = parse_device(device)
        trt = import_tensorrt()
        check_sidecar(read_sidecar(path), path, trt.__version__)  # before touching the GPU
        self._cuda = open_cuda(index)
        self._buffers: dict[str, tuple[np.ndarray, int]] = {}
        try:
            self.engine, self._trt_runtime, self.sidecar = engine_from_path(path, trt, self._cuda, dla_core)
            self.context = self.engine.create_execution_context()
            if self.context is None:
                raise EdgekdError(f"{path}: TensorRT could not create an execution context (not enough free device "
                                  "memory for its activations?)")
            if not hasattr(self.context, "execute_async_v3"):
                fail_unavailable(trt, "the named-tensor API (execute_async_v3)")
            self.inputs, self.outputs = [], []
            for i in range(self.engine.num_io_tensors):
                name = self.engine.get_tensor_name(i)
                t = {"name": name, "dtype": np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))),
                     "shape": tuple(self.engine.get_tensor_shape(name))}
                if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                    t["profile"] = tuple(tuple(s) for s in self.engine.get_tensor_profile_shape(name, 0)) \
                        if -1 in t["shape"] else (t["shape"],) * 3
                    self.inputs.append(t)
                else:
                    self.outputs.append(t)
        except BaseException:
            self.close()
            raise

    def _buffer(self, name: str, shape: tuple, dtype) -> np.ndarray:
        """The pinned host view of `name` for `shape`, with its device buffer bound; both grow when too small."""
        nbytes = max(int(np.prod(shape)) * np.dtype(dtype).itemsize, 1)
        host, ptr = self._buffers.get(name, (None, 0))
        if host is None or host.nbytes < nbytes:
            host = self._cuda.pinned((nbytes,), np.uint8)
            ptr = self._cuda.alloc(nbytes)
            self._buffers[name] = (host, ptr)
            if not self.context.set_tensor_address(name, ptr):
                raise EdgekdError(f"{self.path}: set_tensor_address({name!r}) was refused")
        return host[:nbytes].view(dtype)[: int(np.prod(shape))].reshape(shape)

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = {t["name"] for t in self.inputs}
        if set(feeds) != names:
            raise EdgekdError(f"{self.path}: inputs are {', '.join(sorted(names))}, got {', '.join(sorted(feeds))}")
        for t in self.inputs:
            x = np.asarray(feeds[t["name"]])
            lo, _, hi = t["profile"]
            if x.ndim != len(lo) or not all(a <= s <= b for a, s, b in zip(lo, x.shape, hi)):
                raise EdgekdError(f"{self.path}: input {t['name']!r} of shape {x.shape} is outside the engine's "
                                  f"profile {tuple(lo)} .. {tuple(hi)}")
            if -1 in t["shape"] and not self.context.set_input_shape(t["name"], x.shape):
                raise EdgekdError(f"{self.path}: set_input_shape({t['name']!r}, {x.shape}) was refused")
            host = self._buffer(t["name"], x.shape, t["dtype"])
            host[...] = x
            self._cuda.htod(self._buffers[t["name"]][1], host)
        results = {}
        for t in self.outputs:
            shape = tuple(self.context.get_tensor_shape(t["name"]))
            if any(d < 0 for d in shape):
                raise EdgekdError(f"{self.path}: output {t['name']!r} has no shape after the inputs were set")
            results[t["name"]] = self._buffer(t["name"], shape, t["dtype"])
        if not self.context.execute_async_v3(self._cuda.handle):
            raise EdgekdError(f"{self.path}: execute_async_v3 failed (see TensorRT's messages above)")
        for t in self.outputs:
            self._cuda.dtoh(results[t["name"]], self._buffers[t["name"]][1])
        self._cuda.sync()
        return {k: v.copy() for k, v in results.items()}

    def close(self) -> None:
        if getattr(self, "_cuda", None) is not None:
            self.context = self.engine = self._trt_runtime = None  # before CUDA goes away
            self._buffers = {}
            self._cuda.close()
            self._cuda = None

    def __enter__(self) -> "EngineRunner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
