"""engine_from_path: check the sidecar (TensorRT version first, then the GPU), then deserialise on the right core."""

from __future__ import annotations

from pathlib import Path

from edgekd.errors import EdgekdError
from edgekd.runtime.tensorrt.sidecar import check_sidecar, gpu_identity, read_sidecar


def engine_from_path(path: str | Path, trt, cuda, dla_core: int | None = None) -> tuple[object, object, dict]:
    """(engine, trt.Runtime, sidecar) of a serialized engine on the open CUDA device `cuda`.

    The version check needs no device and runs first; the GPU check compares the sidecar with `gpu_identity(cuda)`.
    A DLA engine deserialises only on a Runtime whose DLA_core is set; Runtime.DLA_core chooses the core it runs
    on: `dla_core`, else the one it was built for (from the sidecar). The returned Runtime must outlive the engine."""
    path = Path(path)
    side = read_sidecar(path)
    check_sidecar(side, path, trt.__version__)
    check_sidecar(side, path, trt.__version__, gpu_identity(cuda))
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    if dla_core is not None and side.get("dla_core") is None:
        raise EdgekdError(f"{path}: DLA core {dla_core} requested, but the engine was built for the GPU "
                          "(build it with --dla-core)")
    if side.get("dla_core") is not None:
        core = int(side["dla_core"] if dla_core is None else dla_core)
        cores = int(getattr(runtime, "num_DLA_cores", 0))  # IRuntime::getNbDLACores
        if not 0 <= core < cores:
            raise EdgekdError(f"{path}: DLA core {core} requested, but this device has {cores} DLA core(s)")
        runtime.DLA_core = core
        side = {**side, "dla_core": core}
    engine = runtime.deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        raise EdgekdError(f"{path}: TensorRT could not deserialise the engine (see its messages above)")
    return engine, runtime, side
