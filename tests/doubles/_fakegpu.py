"""The simulated machine behind the doubles: GPUs, device memory, the device clock, leak counters."""

from __future__ import annotations

import json
import os

import numpy as np

MS_PER_IMAGE = 0.01  # simulated device time per image executed; only ever compared with itself
DESKTOP = [{"name": "NVIDIA GeForce RTX 4090", "cc": [8, 9], "pci": 1, "memory": 24 << 30},
           {"name": "NVIDIA RTX A2000", "cc": [8, 6], "pci": 0, "memory": 6 << 30}]
JETSON = [{"name": "Orin", "nvml_name": "Orin (nvgpu)", "cc": [8, 7], "pci": 0, "memory": 8 << 30}]


class State:
    def __init__(self, profile="desktop", devices=None, nvml_not_supported=None, pid_offset=0, trt_version="10.3.0",
                 fail_execute=False, dla_cores=0, fail_context=False, refuse_address=False, cuda_runtime=12060,
                 cuda_driver=12060):
        self.profile = profile
        self.devices = devices or (JETSON if profile == "jetson" else DESKTOP)
        self.nvml_not_supported = profile == "jetson" if nvml_not_supported is None else nvml_not_supported
        self.pid_offset = pid_offset
        self.trt_version = trt_version
        self.fail_execute = fail_execute
        self.dla_cores = dla_cores
        self.fail_context = fail_context  # create_execution_context() -> None (activation memory not allocatable)
        self.refuse_address = refuse_address  # set_tensor_address() -> False
        # CUDA versions as 1000 * major + 10 * minor: the runtime the CUDA packages were built for (cuda-python 13 ->
        # 13000) and the newest the driver supports (R550 -> 12040, JetPack 6 -> 12020..12060)
        self.cuda_runtime, self.cuda_driver = cuda_runtime, cuda_driver
        self.builds: list[dict] = []  # one record per build_serialized_network: header, flags, workspace
        self.calibration: list[str] = []  # "cache-hit" or "calibrated:<batches>" per calibrated build
        self.deserialized: list[int] = []  # bytes handed to Runtime.deserialize_cuda_engine, per call
        self.dla_runs: list = []  # DLA core (or None: GPU) of every execution
        self.memory: dict[int, np.ndarray] = {}  # device pointer -> bytes
        self.next_ptr = 0x10000
        self.pinned: set[int] = set()  # host addresses of page-locked buffers
        self.clock_ms = 0.0
        self.events_live = 0
        self.sync_copies = 0  # "async" copies from pageable memory (synchronous in reality)
        self.executions: list[tuple] = []
        self.used_extra = 0  # device memory in use by this process (for NVML's used figure)

    # CUDA orders devices fastest first and honours CUDA_VISIBLE_DEVICES; NVML uses PCI order and ignores it.
    def cuda_devices(self) -> list[dict]:
        order = sorted(self.devices, key=lambda d: -d["cc"][0] * 10 - d["cc"][1])
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None:  # indices into the default (fastest-first) enumeration
            order = [order[int(i)] for i in visible.split(",") if i.strip() and int(i) < len(order)]
        return order

    def nvml_devices(self) -> list[dict]:
        return sorted(self.devices, key=lambda d: d["pci"])

    def alloc(self, nbytes: int) -> int:
        ptr = self.next_ptr
        self.next_ptr += (int(nbytes) + 0xFFF) & ~0xFFF
        self.memory[ptr] = np.zeros(int(nbytes), np.uint8)
        self.used_extra += int(nbytes)
        return ptr

    def free(self, ptr: int) -> None:
        self.used_extra -= self.memory.pop(int(ptr)).size

    def buffer(self, ptr: int, nbytes: int) -> np.ndarray:
        for base, mem in self.memory.items():
            if base <= ptr and ptr + nbytes <= base + mem.size:
                return mem[ptr - base : ptr - base + nbytes]
        raise RuntimeError(f"illegal address {ptr:#x} (+{nbytes})")

    def copy_to_device(self, ptr: int, host: np.ndarray) -> None:
        if host.ctypes.data not in self.pinned:
            self.sync_copies += 1
        self.buffer(int(ptr), host.nbytes)[:] = np.ascontiguousarray(host).view(np.uint8).reshape(-1)

    def copy_to_host(self, host: np.ndarray, ptr: int) -> None:
        if host.ctypes.data not in self.pinned:
            self.sync_copies += 1
        host.view(np.uint8).reshape(-1)[:] = self.buffer(int(ptr), host.nbytes)


STATE = State()


def configure(**kw) -> State:
    global STATE
    STATE = State(**kw)
    return STATE


def state() -> State:
    return STATE


if os.environ.get("EDGEKD_DOUBLES"):
    configure(**json.loads(os.environ["EDGEKD_DOUBLES"]))
