"""The JSON record written beside every engine (`<engine>.json`): what it was built with, for what, from what.

An engine is only valid for the TensorRT version and GPU that built it; EVAL's runtime (runtime/tensorrt_runtime.py,
`check_sidecar`) refuses a mismatch using exactly these fields. numpy-free, torch-free.
"""

from __future__ import annotations

import platform
from pathlib import Path

from edgekd import __version__
from edgekd.io import sha256_file, write_json_atomic

TEGRA_RELEASE = Path("/etc/nv_tegra_release")


def jetpack_release(path: Path = TEGRA_RELEASE) -> str | None:
    """L4T release line on a Jetson ("# R36 (release), REVISION: 3.0, ..." -> "R36.3.0"), else None."""
    try:
        head = path.read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    parts = [p.strip() for p in head.lstrip("# ").split(",")]
    major = parts[0].split()[0] if parts and parts[0] else ""
    rev = next((p.split(":", 1)[1].strip() for p in parts if p.upper().startswith("REVISION")), "")
    return f"{major}.{rev}" if major and rev else head.strip()


def gpu_environment() -> dict:
    """driver / CUDA / GPU name / compute capability via NVML; name and capability from CUDA itself where NVML is
    absent (Jetson), so EVAL's runtime can compare them with what it sees."""
    env = {"cuda_version": None, "driver_version": None, "gpu_name": None, "compute_capability": None}
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        cuda = pynvml.nvmlSystemGetCudaDriverVersion_v2()
        name = pynvml.nvmlDeviceGetName(h)
        env.update(driver_version=str(pynvml.nvmlSystemGetDriverVersion()), cuda_version=f"{cuda // 1000}.{cuda % 1000 // 10}",
                   gpu_name=name.decode() if isinstance(name, bytes) else name,
                   compute_capability="%d.%d" % pynvml.nvmlDeviceGetCudaComputeCapability(h))
        pynvml.nvmlShutdown()
    except Exception:  # no NVML (Jetson) or no driver
        pass
    if env["gpu_name"] is None:
        try:
            from edgekd.runtime.tensorrt_runtime import cuda_backend

            cuda = cuda_backend()
            env["gpu_name"], env["compute_capability"] = cuda.info()
            cuda.close()
        except Exception:  # no CUDA bindings either: the fields stay null and the runtime will refuse the engine
            pass
    return env


def make_sidecar(trt_version: str, env: dict, *, precision: str, profile: dict, api_path: str, onnx_path,
                 engine_bytes: int, build_seconds: float, calib_sha256: str | None, meta: dict,
                 dla_core: int | None = None) -> dict:
    """The contract fields plus the model identity copied from the ONNX metadata."""
    return {
        "kind": "engine", "tensorrt_version": str(trt_version), **env, "jetpack": jetpack_release(),
        "precision": precision, "profile": profile, "calib_sha256": calib_sha256,
        "onnx": str(onnx_path), "onnx_sha256": sha256_file(onnx_path), "build_seconds": round(build_seconds, 3),
        "engine_bytes": int(engine_bytes), "api_path": api_path, "dla_core": dla_core,
        "model": meta.get("model"), "method": meta.get("method"), "preprocess": meta.get("preprocess"),
        "embedding_size": int(meta["embedding_size"]) if meta.get("embedding_size") else None,
        "host": platform.node(), "edgekd_version": __version__,
    }


def write_sidecar(engine: str | Path, side: dict) -> Path:
    from edgekd.runtime.tensorrt_runtime import sidecar_path

    return write_json_atomic(sidecar_path(engine), side)
