"""TensorRT backend for serialized engines (.engine/.plan). Imports numpy, tensorrt and pycuda (or cuda-python)
only, lazily: never torch, never click, so it runs on a bare JetPack install.

An engine only runs on the TensorRT version and GPU it was built for, so the JSON sidecar written by
`edgekd build` (`<engine>.json`) is checked BEFORE deserialising: a mismatch is a one-line error naming both,
instead of a deserialisation failure deep inside TensorRT.
Both binding APIs are supported: TensorRT >= 8.5 named tensors (set_input_shape / set_tensor_address /
execute_async_v3, the only one in 10.x) and the older binding indices (set_binding_shape / execute_async_v2).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.preprocess import ARCFACE, Preprocess
from edgekd.runtime.base import Runtime

INSTALL_HINT = "pip install edgekd[trt] (x86) or JetPack's python3-libnvinfer (Jetson)"


def sidecar_path(engine: str | Path) -> Path:
    """`model.engine` -> `model.engine.json` (the suffix is kept so .engine and .plan of one stem don't collide)."""
    return Path(str(engine) + ".json")


def read_sidecar(engine: str | Path) -> dict:
    """The build record of an engine; missing or unreadable is a one-line error naming the sidecar."""
    path = sidecar_path(engine)
    if not path.is_file():
        raise EdgekdError(f"{engine}: its build record {path.name} is missing (build engines with `edgekd build`, "
                          "which writes it; it says which TensorRT version and GPU the engine needs)")
    try:
        side = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EdgekdError(f"{path}: not a valid engine sidecar ({e})") from e
    missing = [k for k in ("tensorrt_version", "gpu_name", "compute_capability") if k not in side]
    if not isinstance(side, dict) or missing:
        raise EdgekdError(f"{path}: engine sidecar lacks {', '.join(missing) or 'its fields'}")
    return side


def _cc(value) -> str:
    """Compute capability as "8.7" whether written "8.7", "87", [8, 7] or (8, 7)."""
    if isinstance(value, (list, tuple)):
        return ".".join(str(int(v)) for v in value[:2])
    s = str(value).strip()
    return s if "." in s else f"{s[:-1]}.{s[-1:]}" if len(s) >= 2 else s


def check_sidecar(side: dict, engine: str | Path, tensorrt_version: str, gpu_name: str | None = None,
                  compute_capability=None) -> None:
    """Raise a one-line error when the engine was built for another TensorRT version or another GPU.

    `gpu_name`/`compute_capability` None skip the GPU check (EXPORT checks the version before it has a device).
    """
    built = str(side["tensorrt_version"])
    if built != str(tensorrt_version):
        raise EdgekdError(f"{engine}: built with TensorRT {built}, but this machine has TensorRT {tensorrt_version}; "
                          "rebuild the engine here (edgekd build)")
    if gpu_name is None and compute_capability is None:
        return
    want_cc, have_cc = _cc(side["compute_capability"]), _cc(compute_capability)
    if want_cc != have_cc or " ".join(str(side["gpu_name"]).split()).lower() != " ".join(str(gpu_name).split()).lower():
        raise EdgekdError(f"{engine}: built for {side['gpu_name']} (compute capability {want_cc}), but this machine "
                          f"has {gpu_name} (compute capability {have_cc}); rebuild the engine here (edgekd build)")


# ---- CUDA memory, streams and events: pycuda, else cuda-python --------------------------------------------------

class _PyCuda:
    def __init__(self):
        import pycuda.driver as cuda

        self.cuda = cuda
        cuda.init()
        self.dev = cuda.Device(0)
        self.ctx = self.dev.retain_primary_context()
        self.ctx.push()
        self.stream = cuda.Stream()
        self.handle = self.stream.handle
        self._mem = []

    def info(self) -> tuple[str, str]:
        return self.dev.name(), "%d.%d" % self.dev.compute_capability()

    def host(self, shape, dtype) -> np.ndarray:
        return self.cuda.pagelocked_empty(shape, dtype)

    def alloc(self, nbytes: int) -> int:
        self._mem.append(self.cuda.mem_alloc(max(int(nbytes), 1)))
        return int(self._mem[-1])

    def htod(self, ptr: int, host: np.ndarray) -> None:
        self.cuda.memcpy_htod_async(ptr, host, self.stream)

    def dtoh(self, host: np.ndarray, ptr: int) -> None:
        self.cuda.memcpy_dtoh_async(host, ptr, self.stream)

    def sync(self) -> None:
        self.stream.synchronize()

    def event(self):
        return self.cuda.Event()

    def record(self, ev) -> None:
        ev.record(self.stream)

    def elapsed_ms(self, start, end) -> float:
        end.synchronize()
        return float(end.time_since(start))

    def close(self) -> None:
        for m in self._mem:
            m.free()
        self._mem = []
        self.ctx.pop()


class _CudaPython:
    def __init__(self):
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart
        self.rt = cudart
        self.stream = self._ok(cudart.cudaStreamCreate())
        self.handle = int(self.stream)
        self._mem = []

    def _ok(self, ret):
        err, *rest = ret if isinstance(ret, tuple) else (ret,)
        if int(err) != 0:
            raise EdgekdError(f"CUDA error {err}")
        return rest[0] if len(rest) == 1 else rest

    def info(self) -> tuple[str, str]:
        props = self._ok(self.rt.cudaGetDeviceProperties(0))
        name = props.name.split(b"\0", 1)[0].decode() if isinstance(props.name, bytes) else str(props.name)
        return name, f"{props.major}.{props.minor}"

    def host(self, shape, dtype) -> np.ndarray:
        return np.empty(shape, dtype)

    def alloc(self, nbytes: int) -> int:
        self._mem.append(int(self._ok(self.rt.cudaMalloc(max(int(nbytes), 1)))))
        return self._mem[-1]

    def htod(self, ptr: int, host: np.ndarray) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._ok(self.rt.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, kind, self.stream))

    def dtoh(self, host: np.ndarray, ptr: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._ok(self.rt.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, kind, self.stream))

    def sync(self) -> None:
        self._ok(self.rt.cudaStreamSynchronize(self.stream))

    def event(self):
        return self._ok(self.rt.cudaEventCreate())

    def record(self, ev) -> None:
        self._ok(self.rt.cudaEventRecord(ev, self.stream))

    def elapsed_ms(self, start, end) -> float:
        self._ok(self.rt.cudaEventSynchronize(end))
        return float(self._ok(self.rt.cudaEventElapsedTime(start, end)))

    def close(self) -> None:
        for m in self._mem:
            self.rt.cudaFree(m)
        self._mem = []
        self.rt.cudaStreamDestroy(self.stream)


def cuda_backend():
    """pycuda when installed, else cuda-python; neither or no usable GPU is a one-line error."""
    for cls in (_PyCuda, _CudaPython):
        try:
            return cls()
        except ImportError:
            continue
        except Exception as e:  # driver present but no device, etc.
            raise EdgekdError(f"CUDA is not usable here ({str(e).strip().splitlines()[0] if str(e) else e!r})") from e
    raise EdgekdError(f"TensorRT needs pycuda or cuda-python for device memory ({INSTALL_HINT}, or pip install pycuda)")


def import_tensorrt():
    try:
        import tensorrt
    except ImportError as e:
        raise EdgekdError(f"the tensorrt Python package is not installed ({INSTALL_HINT})") from e
    return tensorrt


# ---- binding API generations --------------------------------------------------------------------------------

def select_api(engine, context) -> str:
    """'v3' (named tensors, TensorRT >= 8.5, required by 10.x) when available, else 'v2' (binding indices)."""
    return "v3" if hasattr(engine, "num_io_tensors") and hasattr(context, "execute_async_v3") else "v2"


def io_tensors(trt, engine, api: str) -> list[dict]:
    """[{name, index, input, dtype, shape, max_batch}] for every I/O tensor, in binding order."""
    out = []
    if api == "v3":
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            is_in = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            shape = tuple(engine.get_tensor_shape(name))
            maxb = engine.get_tensor_profile_shape(name, 0)[2][0] if is_in and shape[0] == -1 else shape[0]
            out.append(dict(name=name, index=i, input=is_in, dtype=np.dtype(trt.nptype(engine.get_tensor_dtype(name))),
                            shape=shape, max_batch=maxb))
    else:
        for i in range(engine.num_bindings):
            is_in = engine.binding_is_input(i)
            shape = tuple(engine.get_binding_shape(i))
            maxb = engine.get_profile_shape(0, i)[2][0] if is_in and shape[0] == -1 else shape[0]
            out.append(dict(name=engine.get_binding_name(i), index=i, input=is_in,
                            dtype=np.dtype(trt.nptype(engine.get_binding_dtype(i))), shape=shape, max_batch=maxb))
    return out


class TensorRTRuntime(Runtime):
    name = "tensorrt"

    def __init__(self, engine: str | Path):
        path = Path(engine)
        if not path.is_file():
            raise EdgekdError(f"{path}: no such file")
        side = read_sidecar(path)
        trt = import_tensorrt()
        check_sidecar(side, path, trt.__version__)
        self._cuda = cuda_backend()
        try:
            check_sidecar(side, path, trt.__version__, *self._cuda.info())
            self._setup(trt, path, side)
        except BaseException:
            self.close()
            raise

    def _setup(self, trt, path: Path, side: dict) -> None:
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._trt_runtime = trt.Runtime(self._logger)
        self.engine = self._trt_runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise EdgekdError(f"{path}: TensorRT could not deserialise the engine (see its messages above)")
        self.context = self.engine.create_execution_context()
        self.api = select_api(self.engine, self.context)
        tensors = io_tensors(trt, self.engine, self.api)
        inputs = [t for t in tensors if t["input"]]
        outputs = [t for t in tensors if not t["input"]]
        preprocess = Preprocess.from_dict(side["preprocess"]) if side.get("preprocess") else ARCFACE
        h, w = preprocess.input_size
        if len(inputs) != 1 or len(outputs) != 1 or list(inputs[0]["shape"][1:]) != [3, h, w]:
            raise EdgekdError(f"{path}: not a face model (I/O {[(t['name'], t['shape']) for t in tensors]}; "
                              f"expected one N x 3 x {h} x {w} input and one N x D output)")
        self._in, self._out = inputs[0], outputs[0]
        self._dynamic = self._in["shape"][0] == -1
        self._batch = int(self._in["max_batch"])
        dim = self._out["shape"][1] if self._out["shape"][1] > 0 else int(side["embedding_size"])
        self._h_in = self._cuda.host((self._batch, 3, h, w), self._in["dtype"])
        self._h_out = self._cuda.host((self._batch, dim), self._out["dtype"])
        self._d_in = self._cuda.alloc(self._h_in.nbytes)
        self._d_out = self._cuda.alloc(self._h_out.nbytes)
        if self.api == "v3":
            self.context.set_tensor_address(self._in["name"], self._d_in)
            self.context.set_tensor_address(self._out["name"], self._d_out)
        self._bindings = [self._d_in if t["input"] else self._d_out for t in tensors]
        meta = {k: side.get(k) for k in ("model", "method", "precision", "tensorrt_version", "gpu_name",
                                         "compute_capability", "profile", "api_path", "onnx_sha256")}
        meta["binding_api"] = self.api
        super().__init__(preprocess, dim, side.get("precision") or "fp32", "cuda", meta, path)

    def _enqueue(self, n: int) -> None:
        shape = (n, 3, *self.preprocess.input_size)
        if self.api == "v3":
            if self._dynamic:
                self.context.set_input_shape(self._in["name"], shape)
            self.context.execute_async_v3(self._cuda.handle)
        else:
            if self._dynamic:
                self.context.set_binding_shape(self._in["index"], shape)
            self.context.execute_async_v2(bindings=self._bindings, stream_handle=self._cuda.handle)

    def _stage(self, chunk: np.ndarray) -> int:
        """Copy a chunk into the pinned input buffer (zero-padded to the fixed batch); returns the batch to run."""
        n = chunk.shape[0]
        run = n if self._dynamic else self._batch
        self._h_in[:n] = chunk
        self._h_in[n:run] = 0
        self._cuda.htod(self._d_in, self._h_in[:run])
        return run

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = self._check_input(x)
        out = []
        for i in range(0, x.shape[0], self._batch):
            chunk = x[i : i + self._batch]
            run = self._stage(chunk)
            self._enqueue(run)
            self._cuda.dtoh(self._h_out[:run], self._d_out)
            self._cuda.sync()
            out.append(self._h_out[: chunk.shape[0]].astype(np.float32))
        return np.concatenate(out) if out else np.zeros((0, self.embedding_size), np.float32)

    def device_time_ms(self, x: np.ndarray) -> float | None:
        """CUDA-event time of one enqueue of the first max-batch chunk (copies excluded)."""
        run = self._stage(self._check_input(x)[: self._batch])
        self._cuda.sync()
        start, end = self._cuda.event(), self._cuda.event()
        self._cuda.record(start)
        self._enqueue(run)
        self._cuda.record(end)
        return self._cuda.elapsed_ms(start, end)

    def close(self) -> None:
        if getattr(self, "_cuda", None) is not None:
            self.context = self.engine = self._trt_runtime = None  # free TensorRT objects while CUDA is current
            self._cuda.close()
            self._cuda = None
