"""One CUDA interface for TensorRT's buffers, streams and timing, with pycuda or cuda-python behind it.

pycuda is used when installed (it builds from source, so it is optional); cuda-python (`cuda.bindings.runtime`,
or `cuda.cudart` before 12.6) otherwise. Both give page-locked host buffers, so copies on the stream are really
asynchronous, and one reusable pair of CUDA events for timing. The device is CUDA's device `device` (CUDA order,
honouring CUDA_VISIBLE_DEVICES), the same one TensorRT runs on.

Contexts: pycuda's primary context is pushed on open and popped on close, and also at interpreter exit (a
weakref.finalize runs before pycuda's own cleanup, which aborts the process when the context stack is not empty).
"""

from __future__ import annotations

import ctypes
import weakref

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.runtime.tensorrt import INSTALL_HINT


class CudaDevice:
    """name, compute_capability; pinned(), alloc(), htod(), dtoh(), sync(), time_ms(fn); close() frees it all."""

    binding = "?"
    name: str
    compute_capability: str

    def identity(self) -> tuple[str, str]:
        """(GPU name, compute capability) as CUDA reports them: what an engine sidecar records and is checked against."""
        return self.name, self.compute_capability

    def __enter__(self) -> "CudaDevice":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _release_pycuda(cuda, context, allocations) -> None:
    for a in allocations:
        a.free()
    allocations.clear()
    context.pop()


class PyCudaDevice(CudaDevice):
    binding = "pycuda"

    def __init__(self, device: int = 0):
        import pycuda.driver as cuda

        self._cuda, self.index = cuda, int(device)
        cuda.init()
        dev = cuda.Device(device)
        self.name, self.compute_capability = dev.name(), "%d.%d" % dev.compute_capability()
        context = dev.retain_primary_context()
        context.push()
        self._allocations: list = []
        self._release = weakref.finalize(self, _release_pycuda, cuda, context, self._allocations)
        try:
            self.stream = cuda.Stream()
            self.handle = self.stream.handle
            self._events = None
        except BaseException:
            self.close()
            raise

    def pinned(self, shape, dtype) -> np.ndarray:
        return self._cuda.pagelocked_empty(shape, dtype)

    def alloc(self, nbytes: int) -> int:
        self._allocations.append(self._cuda.mem_alloc(max(int(nbytes), 1)))
        return int(self._allocations[-1])

    def htod(self, ptr: int, host: np.ndarray) -> None:
        self._cuda.memcpy_htod_async(ptr, host, self.stream)

    def dtoh(self, host: np.ndarray, ptr: int) -> None:
        self._cuda.memcpy_dtoh_async(host, ptr, self.stream)

    def sync(self) -> None:
        self.stream.synchronize()

    def time_ms(self, work) -> float:
        if self._events is None:
            self._events = (self._cuda.Event(), self._cuda.Event())
        start, end = self._events
        start.record(self.stream)
        work()
        end.record(self.stream)
        end.synchronize()
        return float(end.time_since(start))

    def close(self) -> None:
        self._events = None
        self._release()


DRIVER_HINT = ("for a CUDA 12 driver (JetPack 6, drivers 525-575) install pip install edgekd[trt-cu12] "
               "(tensorrt-cu12 + cuda-python>=12,<13), or upgrade the driver to R580+ for edgekd[trt-cu13]")


def _cuda_version(v) -> str | None:
    return f"{int(v) // 1000}.{int(v) % 1000 // 10}" if v else None


def cuda_versions(rt=None) -> dict:
    """{cuda_runtime_version, cuda_driver_version, cuda_family} as cuda-python reports them ("12.6", "13.0", "cu12");
    both calls answer without a usable driver. Nulls when cuda-python is absent."""
    try:
        rt = rt or _import_cudart()
        runtime = rt.cudaRuntimeGetVersion()
        driver = rt.cudaDriverGetVersion()
    except Exception:  # noqa: BLE001 - not installed or a broken install: the figures stay null
        return {"cuda_runtime_version": None, "cuda_driver_version": None, "cuda_family": None}
    r = runtime[1] if int(runtime[0]) == 0 else None
    d = driver[1] if int(driver[0]) == 0 else None
    return {"cuda_runtime_version": _cuda_version(r), "cuda_driver_version": _cuda_version(d),
            "cuda_family": f"cu{int(r) // 1000}" if r else None}


def _import_cudart():
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        from cuda import cudart  # cuda-python < 12.6
    return cudart


def _release_cudart(rt, stream, allocations, host, events) -> None:
    for ptr in allocations:
        rt.cudaFree(ptr)
    for ptr in host:
        rt.cudaFreeHost(ptr)
    for ev in events:
        rt.cudaEventDestroy(ev)
    allocations.clear(), host.clear(), events.clear()
    if stream is not None:
        rt.cudaStreamDestroy(stream)


class CudaPythonDevice(CudaDevice):
    binding = "cuda-python"

    def __init__(self, device: int = 0):
        self._rt = rt = _import_cudart()
        self.index = int(device)
        self._check_driver(rt)
        self._ok(rt.cudaSetDevice(device))
        props = self._ok(rt.cudaGetDeviceProperties(device))
        raw = props.name
        self.name = raw.split(b"\0", 1)[0].decode() if isinstance(raw, (bytes, bytearray)) else str(raw)
        self.compute_capability = f"{props.major}.{props.minor}"
        self._allocations: list[int] = []
        self._host: list[int] = []
        self._events: list = []
        self.stream = self._ok(rt.cudaStreamCreate())
        self.handle = int(self.stream)
        self._release = weakref.finalize(self, _release_cudart, rt, self.stream, self._allocations, self._host,
                                         self._events)

    def _check_driver(self, rt) -> None:
        """A CUDA runtime newer than the driver (cuda-python 13 on a CUDA 12 driver: JetPack 6, R535/R550) fails
        every call with cudaErrorInsufficientDriver; say which versions and which packages fit instead."""
        versions = cuda_versions(rt)
        err = rt.cudaGetDeviceCount()[0]
        if int(err) == int(getattr(rt.cudaError_t, "cudaErrorInsufficientDriver", 35)):
            raise EdgekdError(f"cuda-python's CUDA {versions['cuda_runtime_version']} runtime needs a newer driver "
                              f"than this one (CUDA {versions['cuda_driver_version']}): {DRIVER_HINT}")

    def _ok(self, ret):
        err, *rest = ret if isinstance(ret, tuple) else (ret,)
        if int(err) != 0:
            raise EdgekdError(f"CUDA error {getattr(err, 'name', err)} ({int(err)})")
        return rest[0] if len(rest) == 1 else rest

    def pinned(self, shape, dtype) -> np.ndarray:
        """Page-locked host memory (cudaMallocHost): a cudaMemcpyAsync from pageable memory is synchronous."""
        dtype = np.dtype(dtype)
        nbytes = max(int(np.prod(shape)) * dtype.itemsize, 1)
        ptr = int(self._ok(self._rt.cudaMallocHost(nbytes)))
        self._host.append(ptr)
        raw = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(ptr))
        return raw[: int(np.prod(shape)) * dtype.itemsize].view(dtype).reshape(shape)

    def alloc(self, nbytes: int) -> int:
        self._allocations.append(int(self._ok(self._rt.cudaMalloc(max(int(nbytes), 1)))))
        return self._allocations[-1]

    def htod(self, ptr: int, host: np.ndarray) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._ok(self._rt.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, kind, self.stream))

    def dtoh(self, host: np.ndarray, ptr: int) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._ok(self._rt.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, kind, self.stream))

    def sync(self) -> None:
        self._ok(self._rt.cudaStreamSynchronize(self.stream))

    def time_ms(self, work) -> float:
        """CUDA-event time of `work()` enqueued on the stream; the two events are created once and reused."""
        if not self._events:
            self._events += [self._ok(self._rt.cudaEventCreate()) for _ in range(2)]
        start, end = self._events
        self._ok(self._rt.cudaEventRecord(start, self.stream))
        work()
        self._ok(self._rt.cudaEventRecord(end, self.stream))
        self._ok(self._rt.cudaEventSynchronize(end))
        return float(self._ok(self._rt.cudaEventElapsedTime(start, end)))

    def close(self) -> None:
        self._release()


def open_cuda(device: int = 0) -> CudaDevice:
    """pycuda when installed, else cuda-python; neither, or no usable GPU, is a one-line error."""
    for cls in (PyCudaDevice, CudaPythonDevice):
        try:
            return cls(device)
        except ImportError:
            continue
        except EdgekdError:
            raise
        except Exception as e:  # driver present but no device, etc.
            first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
            raise EdgekdError(f"CUDA is not usable here ({cls.binding}: {first})") from e
    raise EdgekdError(f"TensorRT needs cuda-python (or pycuda) for device memory ({INSTALL_HINT})")
