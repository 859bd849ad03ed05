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

from edgekd.bench.memory import TEGRA_RELEASE

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
    l4t = None
    try:
        major = first.split("R", 1)[1].split()[0]
        rev = first.split("REVISION:", 1)[1].split(",")[0].strip()
        l4t = f"{major}.{rev}"
    except IndexError:
        pass
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
    """Name, memory and driver of each NVIDIA GPU via NVML; [] where NVML is absent (CPU hosts, Jetson)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no driver/library: no GPU to describe
        return []
    try:
        def s(v):
            return v.decode() if isinstance(v, bytes) else v

        driver = s(pynvml.nvmlSystemGetDriverVersion())
        try:
            cuda = pynvml.nvmlSystemGetCudaDriverVersion()
            cuda = f"{cuda // 1000}.{cuda % 1000 // 10}"
        except Exception:  # noqa: BLE001
            cuda = None
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            try:
                cc = ".".join(map(str, pynvml.nvmlDeviceGetCudaComputeCapability(h)))
            except Exception:  # noqa: BLE001
                cc = None
            out.append({"index": i, "name": s(pynvml.nvmlDeviceGetName(h)),
                        "memory_bytes": int(pynvml.nvmlDeviceGetMemoryInfo(h).total),
                        "driver_version": driver, "cuda_driver_version": cuda, "compute_capability": cc})
        return out
    finally:
        pynvml.nvmlShutdown()


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
