"""Double of nvidia-ml-py's pynvml. NVML orders devices by PCI bus and ignores CUDA_VISIBLE_DEVICES; on JetPack 6
('jetson' profile) the GPU is "Orin (nvgpu)" and memory / process queries raise NVML_ERROR_NOT_SUPPORTED."""

from __future__ import annotations

import os
import types

import _fakegpu

NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
_init = 0


class NVMLError(Exception):
    def __init__(self, value):
        self.value = value
        super().__init__({1: "Uninitialized", 2: "Invalid Argument", 3: "Not Supported"}.get(value, "Unknown Error"))


def _need_init():
    if _init <= 0:
        raise NVMLError(NVML_ERROR_UNINITIALIZED)


def nvmlInit():
    global _init
    _init += 1


def nvmlShutdown():
    global _init
    _need_init()
    _init -= 1


def nvmlSystemGetDriverVersion():
    _need_init()
    return "540.4.0" if _fakegpu.state().profile == "jetson" else "550.54.15"


def nvmlSystemGetCudaDriverVersion():
    _need_init()
    return _fakegpu.state().cuda_driver


nvmlSystemGetCudaDriverVersion_v2 = nvmlSystemGetCudaDriverVersion


def nvmlDeviceGetCount():
    _need_init()
    return len(_fakegpu.state().nvml_devices())


def nvmlDeviceGetHandleByIndex(index):
    _need_init()
    devices = _fakegpu.state().nvml_devices()
    if not 0 <= index < len(devices):
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    return types.SimpleNamespace(device=devices[index])


def nvmlDeviceGetName(handle):
    _need_init()
    return handle.device.get("nvml_name", handle.device["name"])


def nvmlDeviceGetCudaComputeCapability(handle):
    _need_init()
    return tuple(handle.device["cc"])


def nvmlDeviceGetMemoryInfo(handle):
    _need_init()
    state = _fakegpu.state()
    if state.nvml_not_supported:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    used = 300 << 20
    if handle.device is state.cuda_devices()[0]:
        used += state.used_extra
    return types.SimpleNamespace(total=handle.device["memory"], used=used, free=handle.device["memory"] - used)


def nvmlDeviceGetComputeRunningProcesses(handle):
    _need_init()
    state = _fakegpu.state()
    if state.nvml_not_supported:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    if handle.device is not state.cuda_devices()[0] or not state.used_extra:
        return []
    return [types.SimpleNamespace(pid=os.getpid() + state.pid_offset, usedGpuMemory=state.used_extra + (80 << 20))]
