"""The machine a measurement was taken on, recorded with every benchmark.

Package versions come from importlib.metadata (no import), so benchmarking an engine or ONNX file never loads torch;
versions only a loaded module knows (torch's CUDA build, onnxruntime's providers) are read when already loaded.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from edgekd.runtime.tensorrt.sidecar import TEGRA_RELEASE, l4t_release

PACKAGES = ("edgekd", "numpy", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt", "pycuda", "torch",
            "torchvision", "nvidia-ml-py", "opencv-python", "opencv-python-headless", "pillow")


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def cpu_model() -> str:
    """`model name` from /proc/cpuinfo; ARM boards (Jetson) have none, so fall back to the device-tree model."""
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
            return value.strip()
    dt = _read("/proc/device-tree/model")
    return dt.strip("\x00\n ") if dt else (platform.processor() or platform.machine())


def memory_total_bytes() -> int | None:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    # JetPack installs tensorrt without pip metadata; a loaded module still knows its version.
    trt = sys.modules.get("tensorrt")
    if trt is not None and out["tensorrt"] is None:
        out["tensorrt"] = getattr(trt, "__version__", None)
    return out


def jetson_release(path: str | Path = TEGRA_RELEASE) -> dict | None:
    """L4T release from /etc/nv_tegra_release (`# R35 (release), REVISION: 3.1, ...` -> 35.3.1), JetPack via dpkg."""
    text = _read(path)
    if text is None:
        return None
    first = text.splitlines()[0] if text else ""
    l4t = l4t_release(first)
    jetpack = None
    if shutil.which("dpkg-query"):
        try:
            r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack"],
                               capture_output=True, text=True, timeout=5)
            jetpack = r.stdout.strip() or None
        except (OSError, subprocess.TimeoutExpired):
            pass
    model = _read("/proc/device-tree/model")
    return {"l4t": l4t, "nv_tegra_release": first.strip(), "jetpack": jetpack,
            "board": model.strip("\x00\n ") if model else None}


def gpus() -> list[dict]:
    """Name, memory and driver of each NVIDIA GPU via NVML, in NVML's order (PCI bus; CUDA's order may differ);
    [] where NVML is absent (CPU hosts). A figure NVML does not answer (JetPack 6: memory is NOT_SUPPORTED) is null,
    with `<field>_reason` saying why."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no driver/library: no GPU to describe
        return []

    def ask(query, *args):
        """(value, None) or (None, reason): NVML raises NVMLError for what a device does not support."""
        try:
            value = query(*args)
        except Exception as e:  # noqa: BLE001 - pynvml.NVMLError and its subclasses
            return None, f"NVML {getattr(query, '__name__', 'query')}: {e}"
        return (value.decode() if isinstance(value, bytes) else value), None

    try:
        driver, _ = ask(pynvml.nvmlSystemGetDriverVersion)
        cuda, _ = ask(pynvml.nvmlSystemGetCudaDriverVersion)
        cuda = f"{cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) else None
        count, _ = ask(pynvml.nvmlDeviceGetCount)
        out = []
        for i in range(count or 0):
            h, reason = ask(pynvml.nvmlDeviceGetHandleByIndex, i)
            if h is None:
                out.append({"nvml_index": i, "name": None, "name_reason": reason})
                continue
            name, _ = ask(pynvml.nvmlDeviceGetName, h)
            cc, _ = ask(pynvml.nvmlDeviceGetCudaComputeCapability, h)
            memory, memory_reason = ask(lambda: int(pynvml.nvmlDeviceGetMemoryInfo(h).total))
            entry = {"nvml_index": i, "name": name, "memory_bytes": memory, "driver_version": driver,
                     "cuda_driver_version": cuda, "compute_capability": ".".join(map(str, cc)) if cc else None}
            if memory_reason:
                entry["memory_bytes_reason"] = memory_reason.replace("<lambda>", "nvmlDeviceGetMemoryInfo")
            out.append(entry)
        return out
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


def loaded_runtime_info() -> dict:
    """Facts only an already-loaded runtime module knows; nothing is imported here."""
    info: dict = {}
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch_cuda"] = getattr(torch.version, "cuda", None)
        info["torch_threads"] = torch.get_num_threads()
        try:
            info["torch_cudnn"] = torch.backends.cudnn.version()
        except Exception:  # noqa: BLE001
            info["torch_cudnn"] = None
    ort = sys.modules.get("onnxruntime")
    if ort is not None:
        info["onnxruntime_providers"] = list(ort.get_available_providers())
    trt = sys.modules.get("tensorrt")
    if trt is not None:
        info["tensorrt_version"] = getattr(trt, "__version__", None)
    return info


def collect_environment() -> dict:
    """Everything needed to tell two measurements apart: host, CPU, GPU/driver/CUDA, Jetson release, versions."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_available": affinity,
        "load_average": load,
        "memory_total_bytes": memory_total_bytes(),
        "threads_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ},
        "gpus": gpus(),
        "jetson": jetson_release(),
        "packages": package_versions(),
        **loaded_runtime_info(),
    }
