"""Double of pycuda.driver: contexts on a stack that must be empty at exit, pinned host memory, async copies, events."""

from __future__ import annotations

import atexit
import os
import sys

import numpy as np

import _fakegpu

context_stack: list = []
_initialised = False


class Error(Exception):
    pass


class LogicError(Error):
    pass


def _need_context():
    if not context_stack:
        raise LogicError("cuFuncSetBlockShape failed: invalid device context - no currently active context?")


def init():
    global _initialised
    _initialised = True


class Context:
    def __init__(self, device):
        self.device = device

    def push(self):
        context_stack.append(self)

    def pop(self):  # pops the current context, whichever it is (pycuda: Context.pop() is a static operation)
        if not context_stack:
            raise LogicError("context::pop: cannot pop non-current context")
        context_stack.pop()

    def detach(self):
        pass


class Device:
    def __init__(self, ordinal):
        if not _initialised:
            raise LogicError("cuInit has not been called")
        devices = _fakegpu.state().cuda_devices()
        if not 0 <= ordinal < len(devices):
            raise LogicError("cuDeviceGet failed: invalid device ordinal")
        self._d = devices[ordinal]

    def name(self):
        return self._d["name"]

    def compute_capability(self):
        return tuple(self._d["cc"])

    def retain_primary_context(self):
        return Context(self)

    @staticmethod
    def count():
        return len(_fakegpu.state().cuda_devices())


class Stream:
    def __init__(self):
        _need_context()
        self.handle = 0x5000 + len(context_stack)

    def synchronize(self):
        _need_context()


class DeviceAllocation:
    def __init__(self, nbytes):
        self.ptr = _fakegpu.state().alloc(nbytes)
        self.freed = False

    def __int__(self):
        return self.ptr

    def free(self):
        if not self.freed:
            _fakegpu.state().free(self.ptr)
            self.freed = True


def mem_alloc(nbytes):
    _need_context()
    return DeviceAllocation(nbytes)


def pagelocked_empty(shape, dtype):
    _need_context()
    a = np.empty(shape, dtype)
    _fakegpu.state().pinned.add(a.ctypes.data)
    return a


def memcpy_htod_async(dest, src, stream=None):
    _need_context()
    _fakegpu.state().copy_to_device(int(dest), src)


def memcpy_dtoh_async(dest, src, stream=None):
    _need_context()
    _fakegpu.state().copy_to_host(dest, int(src))


class Event:
    def __init__(self, flags=0):
        _need_context()
        self.t = None
        _fakegpu.state().events_live += 1

    def __del__(self):  # pycuda frees events when the Python object goes away
        _fakegpu.state().events_live -= 1

    def record(self, stream=None):
        _need_context()
        self.t = _fakegpu.state().clock_ms
        return self

    def synchronize(self):
        return self

    def time_since(self, start):
        if self.t is None or start.t is None:
            raise LogicError("cuEventElapsedTime failed: invalid resource handle")
        return self.t - start.t


def _module_cleanup():
    """pycuda's context-stack destructor runs at module cleanup, after every atexit handler registered later."""
    if context_stack and os.environ.get("EDGEKD_DOUBLES_ABORT") == "1":
        sys.stderr.write("PyCUDA ERROR: The context stack was not empty upon module cleanup.\n"
                         "-------------------------------------------------------------------\n"
                         "A context was still active when the context stack was being\ncleaned up.\n")
        sys.stderr.flush()
        os.abort()


atexit.register(_module_cleanup)
