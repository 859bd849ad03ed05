"""Double of cuda.bindings.runtime (cuda-python >= 12.6; older releases: `from cuda import cudart`): every call
returns a tuple whose first element is a cudaError_t.

A driver older than the CUDA runtime of the installed cuda-python (e.g. cuda-python 13 on a CUDA 12 driver: R535/R550
desktops, JetPack 6) fails every device call with cudaErrorInsufficientDriver (35); cudaRuntimeGetVersion and
cudaDriverGetVersion still answer (CUDA runtime API reference, cudaDriverGetVersion / error codes)."""

from __future__ import annotations

import ctypes
import enum
import types

import numpy as np

import _fakegpu


class cudaError_t(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorInsufficientDriver = 35
    cudaErrorInvalidDevice = 101
    cudaErrorNoDevice = 100
    cudaErrorInvalidResourceHandle = 400


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


_current = 0
_events: dict[int, float | None] = {}
_host: dict[int, ctypes.Array] = {}
_streams: set[int] = set()
OK = cudaError_t.cudaSuccess


def _devices():
    return _fakegpu.state().cuda_devices()


def _driver_too_old() -> bool:
    state = _fakegpu.state()
    return state.cuda_driver // 1000 < state.cuda_runtime // 1000


def cudaRuntimeGetVersion():
    return (OK, _fakegpu.state().cuda_runtime)


def cudaDriverGetVersion():
    return (OK, _fakegpu.state().cuda_driver)


def cudaGetDeviceCount():
    if _driver_too_old():
        return (cudaError_t.cudaErrorInsufficientDriver, 0)
    n = len(_devices())
    return (cudaError_t.cudaErrorNoDevice, 0) if n == 0 else (OK, n)


def cudaSetDevice(device):
    global _current
    if _driver_too_old():
        return (cudaError_t.cudaErrorInsufficientDriver,)
    if not 0 <= device < len(_devices()):
        return (cudaError_t.cudaErrorInvalidDevice,)
    _current = device
    return (OK,)


def cudaGetDevice():
    return (OK, _current)


def cudaGetDeviceProperties(device):
    if _driver_too_old():
        return (cudaError_t.cudaErrorInsufficientDriver, None)
    devices = _devices()
    if not 0 <= device < len(devices):
        return (cudaError_t.cudaErrorInvalidDevice, None)
    d = devices[device]
    return (OK, types.SimpleNamespace(name=d["name"].encode() + b"\0" * 8, major=d["cc"][0], minor=d["cc"][1],
                                      totalGlobalMem=d["memory"]))


def cudaStreamCreate():
    if not _devices():
        return (cudaError_t.cudaErrorNoDevice, None)
    handle = 0x7000 + len(_streams)
    _streams.add(handle)
    return (OK, handle)


def cudaStreamDestroy(stream):
    if int(stream) not in _streams:
        return (cudaError_t.cudaErrorInvalidResourceHandle,)
    _streams.discard(int(stream))
    return (OK,)


def cudaStreamSynchronize(stream):
    return (OK,) if int(stream) in _streams else (cudaError_t.cudaErrorInvalidResourceHandle,)


def cudaMalloc(nbytes):
    return (OK, _fakegpu.state().alloc(nbytes))


def cudaFree(ptr):
    _fakegpu.state().free(int(ptr))
    return (OK,)


def cudaMallocHost(nbytes):
    buf = (ctypes.c_uint8 * max(int(nbytes), 1))()
    addr = ctypes.addressof(buf)
    _host[addr] = buf
    _fakegpu.state().pinned.add(addr)
    return (OK, addr)


def cudaFreeHost(ptr):
    if int(ptr) not in _host:
        return (cudaError_t.cudaErrorInvalidValue,)
    del _host[int(ptr)]
    _fakegpu.state().pinned.discard(int(ptr))
    return (OK,)


def cudaMemcpyAsync(dst, src, count, kind, stream):
    state = _fakegpu.state()
    if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
        host = np.ctypeslib.as_array((ctypes.c_uint8 * count).from_address(int(src)))
        if int(src) not in state.pinned:
            state.sync_copies += 1
        state.buffer(int(dst), count)[:] = host
    elif kind == cudaMemcpyKind.cudaMemcpyDeviceToHost:
        host = np.ctypeslib.as_array((ctypes.c_uint8 * count).from_address(int(dst)))
        if int(dst) not in state.pinned:
            state.sync_copies += 1
        host[:] = state.buffer(int(src), count)
    else:
        return (cudaError_t.cudaErrorInvalidValue,)
    return (OK,)


def cudaEventCreate():
    handle = 0x9000 + len(_events) + 1
    while handle in _events:
        handle += 1
    _events[handle] = None
    _fakegpu.state().events_live += 1
    return (OK, handle)


def cudaEventDestroy(event):
    if int(event) not in _events:
        return (cudaError_t.cudaErrorInvalidResourceHandle,)
    del _events[int(event)]
    _fakegpu.state().events_live -= 1
    return (OK,)


def cudaEventRecord(event, stream):
    if int(event) not in _events:
        return (cudaError_t.cudaErrorInvalidResourceHandle,)
    _events[int(event)] = _fakegpu.state().clock_ms
    return (OK,)


def cudaEventSynchronize(event):
    return (OK,) if int(event) in _events else (cudaError_t.cudaErrorInvalidResourceHandle,)


def cudaEventElapsedTime(start, end):
    a, b = _events.get(int(start)), _events.get(int(end))
    if a is None or b is None:
        return (cudaError_t.cudaErrorInvalidResourceHandle, 0.0)
    return (OK, b - a)
