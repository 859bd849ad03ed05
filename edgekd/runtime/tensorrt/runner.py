"""TensorRTRuntime: a serialized engine as an edgekd Runtime (float32 NCHW faces in, (N, D) embeddings out).

Buffers are page-locked on the host and allocated once for the profile's maximum batch. A batch above the maximum
runs in chunks; one below the profile minimum is zero-padded up to it (TensorRT refuses shapes outside the profile).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.preprocess import ARCFACE, Preprocess
from edgekd.runtime.base import Runtime
from edgekd.runtime.tensorrt import import_tensorrt
from edgekd.runtime.tensorrt.bindings import Bindings, io_tensors, select_api
from edgekd.runtime.tensorrt.cuda import open_cuda
from edgekd.runtime.tensorrt.loader import engine_from_path
from edgekd.runtime.tensorrt.sidecar import check_sidecar, read_sidecar


def parse_device(device) -> tuple[int, int | None]:
    """(CUDA device, DLA core or None) of a --device value: "cuda:N" -> (N, None), "dla:N" -> (0, N);
    "auto", "cuda", "cpu" (a command's default) and None -> (0, None): an engine always runs on a CUDA device."""
    if device is None or isinstance(device, int):
        return int(device or 0), None
    kind, _, index = str(device).partition(":")
    if kind in ("auto", "cpu", "cuda") and not index or kind == "cuda" and index.isdigit():
        return int(index or 0), None
    if kind == "dla" and index.isdigit():
        return 0, int(index)
    raise EdgekdError(f"device {device!r}: a TensorRT engine runs on cuda, cuda:N or dla:N")


class TensorRTRuntime(Runtime):
    name = "tensorrt"

    def __init__(self, engine: str | Path, device="cuda"):
        """`device`: "cuda:N" opens CUDA device N (and checks the sidecar against that GPU); "dla:N" runs a DLA
        engine on DLA core N instead of the core it was built on."""
        path = Path(engine)
        if not path.is_file():
            raise EdgekdError(f"{path}: no such file")
        index, self._dla_core = parse_device(device)
        trt = import_tensorrt()
        check_sidecar(read_sidecar(path), path, trt.__version__)  # before touching the GPU
        self._cuda = open_cuda(index)
        try:
            self._setup(trt, path)
        except BaseException:
            self.close()
            raise

    def _setup(self, trt, path: Path) -> None:
        self.engine, self._trt_runtime, side = engine_from_path(path, trt, self._cuda, self._dla_core)
        self.context = self.engine.create_execution_context()
        if self.context is None:  # TensorRT returns None when the activation memory cannot be allocated
            raise EdgekdError(f"{path}: TensorRT could not create an execution context (not enough free device "
                              "memory for its activations? a smaller --profile maximum needs less)")
        self.api = select_api(self.engine, self.context)
        tensors = io_tensors(trt, self.engine, self.api)
        inputs = [t for t in tensors if t["input"]]
        outputs = [t for t in tensors if not t["input"]]
        preprocess = Preprocess.from_dict(side["preprocess"]) if side.get("preprocess") else ARCFACE
        h, w = preprocess.input_size
        if len(inputs) != 1 or len(outputs) != 1 or list(inputs[0]["shape"][1:]) != [3, h, w] \
                or len(outputs[0]["shape"]) != 2:
            raise EdgekdError(f"{path}: not a face model (I/O {[(t['name'], t['shape']) for t in tensors]}; "
                              f"expected one N x 3 x {h} x {w} input and one N x D output)")
        inp, out = inputs[0], outputs[0]
        self._dynamic = inp["shape"][0] == -1
        self._min_batch, self._batch = int(inp["min_batch"]), int(inp["max_batch"])
        dim = out["shape"][1] if out["shape"][1] > 0 else int(side["embedding_size"])
        self._h_in = self._cuda.pinned((self._batch, 3, h, w), inp["dtype"])
        self._h_out = self._cuda.pinned((self._batch, dim), out["dtype"])
        self._d_in = self._cuda.alloc(self._h_in.nbytes)
        self._d_out = self._cuda.alloc(self._h_out.nbytes)
        self._bindings = Bindings(self.context, self.api, tensors, {inp["name"]: self._d_in, out["name"]: self._d_out},
                                  path)
        meta = {k: side.get(k) for k in ("model", "method", "precision", "tensorrt_version", "gpu_name",
                                         "compute_capability", "profile", "api_path", "onnx_sha256", "dla_core",
                                         "thresholds")}  # thresholds: what eval, verify and the video bench match at
        meta.update(binding_api=self.api, cuda_binding=self._cuda.binding)
        super().__init__(preprocess, dim, side.get("precision") or "fp32", "cuda" if not self._cuda.index else f"cuda:{self._cuda.index}", meta, path)

    def _stage(self, chunk: np.ndarray) -> int:
        """Copy a chunk into the pinned input (zero-padded to the profile minimum, or to the fixed batch), set the
        input shape; returns the batch that will run."""
        n = chunk.shape[0]
        run = max(n, self._min_batch) if self._dynamic else self._batch
        self._h_in[:n] = chunk
        self._h_in[n:run] = 0
        self._cuda.htod(self._d_in, self._h_in[:run])
        if self._dynamic:
            self._bindings.set_batch((run, 3, *self.preprocess.input_size))
        return run

    def _chunks(self, x: np.ndarray):
        x = self._check_input(x)
        return [x[i : i + self._batch] for i in range(0, x.shape[0], self._batch)]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = []
        for chunk in self._chunks(x):
            run = self._stage(chunk)
            self._bindings.execute(self._cuda.handle)
            self._cuda.dtoh(self._h_out[:run], self._d_out)
            self._cuda.sync()
            out.append(self._h_out[: chunk.shape[0]].astype(np.float32))
        return np.concatenate(out) if out else np.zeros((0, self.embedding_size), np.float32)

    def device_time_ms(self, x: np.ndarray) -> float | None:
        """CUDA-event time of the enqueues of every chunk of `x` (copies excluded), summed."""
        total = 0.0
        for chunk in self._chunks(x):
            self._stage(chunk)
            self._cuda.sync()
            total += self._cuda.time_ms(lambda: self._bindings.execute(self._cuda.handle))
        return total

    def close(self) -> None:
        if getattr(self, "_cuda", None) is not None:
            self._bindings = self.context = self.engine = self._trt_runtime = None  # before CUDA goes away
            self._h_in = self._h_out = None
            self._cuda.close()
            self._cuda = None
