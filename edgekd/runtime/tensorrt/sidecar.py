"""The JSON build record beside every engine (`<engine>.json`): the one module that writes, reads and checks it.

An engine runs only on the TensorRT version and the GPU that built it, so the runtime checks the sidecar BEFORE
deserialising: a mismatch is a one-line error naming both, not a failure deep inside TensorRT.
GPU identity has one definition, `gpu_identity`: name and compute capability of the CUDA device TensorRT runs on,
as CUDA reports them. NVML is not used for it: NVML orders GPUs by PCI bus and ignores CUDA_VISIBLE_DEVICES, and
on JetPack 6 names the GPU "Orin (nvgpu)" where CUDA says "Orin". NVML only adds the driver version, informative.
"""

from __future__ import annotations

import json
import platform
import re
from pathlib import Path

from edgekd import __version__
from edgekd.artifacts import sidecar_path
from edgekd.errors import EdgekdError
from edgekd.io import sha256_file, write_json_atomic

TEGRA_RELEASE = Path("/etc/nv_tegra_release")
REQUIRED = ("tensorrt_version", "gpu_name", "compute_capability")


def l4t_release(first_line: str) -> str | None:
    """The L4T release in /etc/nv_tegra_release's first line ("# R36 (release), REVISION: 3.0, ..." -> "36.3.0"),
    None when the line has no such fields. The one parser: the sidecar and the bench environment both use it."""
    try:
        major = first_line.split("R", 1)[1].split()[0]
        rev = first_line.split("REVISION:", 1)[1].split(",")[0].strip()
    except IndexError:
        return None
    return f"{major}.{rev}" if major and rev else None


def jetpack_release(path: Path = TEGRA_RELEASE) -> str | None:
    """L4T release line on a Jetson ("# R36 (release), REVISION: 3.0, ..." -> "R36.3.0"), else None."""
    try:
        head = path.read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    l4t = l4t_release(head)
    return f"R{l4t}" if l4t else head.strip()


def gpu_identity(cuda) -> dict:
    """{gpu_name, compute_capability} of the CUDA device `cuda` (an open edgekd.runtime.tensorrt.cuda device)."""
    name, cc = cuda.identity()
    return {"gpu_name": str(name), "compute_capability": normalise_cc(cc)}


def driver_versions() -> dict:
    """Driver and CUDA driver versions from NVML where it answers (informative only; never part of the check)."""
    out = {"driver_version": None, "cuda_version": None}
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no NVML: the fields stay null
        return out
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        out["driver_version"] = driver.decode() if isinstance(driver, bytes) else str(driver)
        cuda = pynvml.nvmlSystemGetCudaDriverVersion()
        out["cuda_version"] = f"{cuda // 1000}.{cuda % 1000 // 10}"
    except Exception:  # noqa: BLE001
        pass
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass
    return out


def _detector_identity(meta: dict) -> dict | None:
    """Which detector network an engine is (None for a face model): what edgekd.detect.open checks."""
    if meta.get("kind") != "detector":
        return None
    settings = meta.get("settings")
    return {"name": meta.get("detector"), "network": meta.get("network"),
            "outputs": str(meta.get("outputs", "")).split(","),
            "settings": json.loads(settings) if isinstance(settings, str) else settings}


def make_sidecar(trt_version: str, identity: dict, *, precision: str, profile: dict, api_path: str, onnx_path,
                 engine_bytes: int, build_seconds: float, calib_sha256: str | None, meta: dict,
                 dla_core: int | None = None) -> dict:
    """The contract fields plus the model identity copied from the ONNX metadata (a detector network's: which
    detector, which network, its output order)."""
    return {
        "kind": "engine", "tensorrt_version": str(trt_version), **identity, **driver_versions(),
        "jetpack": jetpack_release(), "precision": precision, "profile": profile, "calib_sha256": calib_sha256,
        "onnx": str(onnx_path), "onnx_sha256": sha256_file(onnx_path), "build_seconds": round(build_seconds, 3),
        "engine_bytes": int(engine_bytes), "api_path": api_path, "dla_core": dla_core,
        "model": meta.get("model"), "method": meta.get("method"), "preprocess": meta.get("preprocess"),
        "embedding_size": int(meta["embedding_size"]) if meta.get("embedding_size") else None,
        "thresholds": json.loads(meta["thresholds"]) if isinstance(meta.get("thresholds"), str) else None,
        "host": platform.node(), "edgekd_version": __version__,
        "detector": _detector_identity(meta),
    }


def write_sidecar(engine: str | Path, side: dict) -> Path:
    return write_json_atomic(sidecar_path(engine), side)


def read_sidecar(engine: str | Path) -> dict:
    """The build record of an engine; missing, unreadable or mistyped is a one-line error naming the sidecar."""
    path = sidecar_path(engine)
    if not path.is_file():
        raise EdgekdError(f"{engine}: its build record {path.name} is missing (build engines with `edgekd build`, "
                          "which writes it; it says which TensorRT version and GPU the engine needs)")
    try:
        side = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise EdgekdError(f"{path}: not a valid engine sidecar ({e})") from e
    if not isinstance(side, dict):
        raise EdgekdError(f"{path}: not a valid engine sidecar (a JSON object is expected, found "
                          f"{'null' if side is None else type(side).__name__})")
    missing = [k for k in REQUIRED if not isinstance(side.get(k), (str, list)) or not side.get(k)]
    if missing:
        raise EdgekdError(f"{path}: engine sidecar lacks {', '.join(missing)}")
    try:
        cc = normalise_cc(side["compute_capability"])
    except (TypeError, ValueError):
        cc = ""
    if not re.fullmatch(r"\d+\.\d+", cc):
        raise EdgekdError(f"{path}: engine sidecar field 'compute_capability' is "
                          f"{json.dumps(side['compute_capability'])[:40]}, expected a version such as \"8.7\"")
    for key, kind in (("dla_core", int), ("profile", dict), ("preprocess", dict), ("embedding_size", int)):
        if side.get(key) is not None and (not isinstance(side[key], kind) or isinstance(side[key], bool)):
            raise EdgekdError(f"{path}: engine sidecar field {key!r} should be {kind.__name__}, "
                              f"found {type(side[key]).__name__}")
    return side


def normalise_cc(value) -> str:
    """Compute capability as "8.7" whether written "8.7", "87", [8, 7] or (8, 7)."""
    if isinstance(value, (list, tuple)):
        return ".".join(str(int(v)) for v in value[:2])
    s = str(value).strip()
    return s if "." in s else f"{s[:-1]}.{s[-1:]}" if len(s) >= 2 else s


def _same_name(a, b) -> bool:
    return " ".join(str(a).split()).lower() == " ".join(str(b).split()).lower()


def check_sidecar(side: dict, engine: str | Path, tensorrt_version: str, identity: dict | None = None) -> None:
    """Raise a one-line error when the engine was built for another TensorRT version or another GPU.

    `identity` None checks the version only (done before any CUDA device is opened)."""
    built = str(side["tensorrt_version"])
    if built != str(tensorrt_version):
        raise EdgekdError(f"{engine}: built with TensorRT {built}, but this machine has TensorRT {tensorrt_version}; "
                          "rebuild the engine here (edgekd build)")
    if identity is None:
        return
    want_cc, have_cc = normalise_cc(side["compute_capability"]), normalise_cc(identity["compute_capability"])
    if want_cc != have_cc or not _same_name(side["gpu_name"], identity["gpu_name"]):
        raise EdgekdError(f"{engine}: built for {side['gpu_name']} (compute capability {want_cc}), but this machine "
                          f"has {identity['gpu_name']} (compute capability {have_cc}); rebuild the engine here "
                          "(edgekd build)")
