"""ONNX -> serialized TensorRT engine with TensorRT's Python API, for both API generations.

- "builder-flags" (TensorRT 8.6 and 10.0): FP32 ONNX + BuilderFlag.FP16/INT8, INT8 scales from an
  IInt8EntropyCalibrator2 over a calib/ set (with a calibration cache file).
- "strongly-typed" (TensorRT >= 10.1, where the calibrator API and implicit quantization are deprecated, and 11.x,
  where BuilderFlag.FP16/INT8 and int8_calibrator are removed): the precision is in the graph itself, so the input
  is the FP16 ONNX or the Q/DQ INT8 ONNX written by `edgekd export`.
The choice is made by probing the module (features first, version second) and recorded as `api_path`.
`edgekd build` / device-check hand INT8 builds a Q/DQ graph on both paths (edgekd.export.run); the calibrator here
serves callers of build_engine with a calib set on TensorRT 8.6/10.x (11.x has none). `build_network_engine`
builds any network (one profile per dynamic input) for edgekd.runtime.tensorrt.engine.EngineRunner.
tensorrt and the CUDA binding are imported lazily (edgekd.runtime.tensorrt): this module imports without them.
The GPU identity in the sidecar comes from the CUDA device the build ran on, the same definition the runtime checks.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgekd.export.calib import CalibSet
from edgekd.artifacts import PRECISIONS
from edgekd.errors import EdgekdError
from edgekd.export import graph
from edgekd.runtime.tensorrt import fail_unavailable, import_tensorrt
from edgekd.runtime.tensorrt.cuda import open_cuda
from edgekd.runtime.tensorrt.sidecar import gpu_identity, make_sidecar, write_sidecar
from edgekd.export.trt_ops import check_trt_ops
from edgekd.io import atomic_path, write_bytes_atomic
from edgekd.preprocess import ARCFACE, Preprocess

API_PATHS = ("builder-flags", "strongly-typed")


def _version(trt) -> tuple[int, int]:
    parts = str(trt.__version__).split(".")
    return int(parts[0]), int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def choose_api(trt, requested: str = "auto") -> str:
    """'builder-flags' or 'strongly-typed' for this tensorrt module (or check that `requested` is available)."""
    has_flags = hasattr(trt.BuilderFlag, "INT8") and hasattr(trt, "IInt8EntropyCalibrator2")
    has_typed = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED") or not has_flags
    available = {"builder-flags": has_flags, "strongly-typed": has_typed}
    if requested != "auto":
        if requested not in available:
            raise EdgekdError(f"unknown TensorRT API path {requested!r} (auto, {', '.join(API_PATHS)})")
        if not available[requested]:
            raise EdgekdError(f"TensorRT {trt.__version__} does not offer the {requested} API")
        return requested
    if not has_flags or (has_typed and _version(trt) >= (10, 1)):
        return "strongly-typed"
    return "builder-flags"


def make_calibrator(trt, calib: CalibSet, cache: Path | None, batch_size: int, cuda):
    """IInt8EntropyCalibrator2 over a calib/ set, staging batches through the build's CUDA device `cuda` (pinned host
    buffer, one device buffer); a calibration-cache hit never calls get_batch."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches = (b for b in calib.batches(batch_size) if len(b) == batch_size)  # fixed calib profile
            self.ptr = self.host = None

        def get_batch_size(self):
            return batch_size

        def get_batch(self, names):
            b = next(self.batches, None)
            if b is None:
                return None
            if self.ptr is None:
                self.host = cuda.pinned(b.shape, np.float32)
                self.ptr = cuda.alloc(self.host.nbytes)
            self.host[...] = b
            cuda.htod(self.ptr, self.host)
            cuda.sync()
            return [self.ptr]

        def read_calibration_cache(self):
            return cache.read_bytes() if cache is not None and cache.is_file() else None

        def write_calibration_cache(self, data):
            if cache is not None:
                write_bytes_atomic(cache, bytes(data))

    return EntropyCalibrator()


def build_engine(onnx_path, engine_path, precision: str | None = None, profile: tuple[int, int, int] = (1, 8, 64),
                 workspace_mib: int = 2048, timing_cache=None, dla_core: int | None = None,
                 calib: CalibSet | None = None, calib_cache=None, api: str = "auto", trt=None) -> dict:
    """Parse, configure, build and write `engine_path` + its sidecar atomically; returns the sidecar dict.
    `precision` None: the graph's own (edgekd.precision metadata), so FP16 / Q/DQ files build as themselves."""
    if trt is None:
        trt = import_tensorrt()
    if len(profile) != 3 or not all(isinstance(b, int) and not isinstance(b, bool) for b in profile):
        raise EdgekdError(f"batch profile must be three whole numbers MIN,OPT,MAX, got {profile}")
    lo, opt, hi = profile
    if not 1 <= lo <= opt <= hi:
        raise EdgekdError(f"batch profile must satisfy 1 <= min <= opt <= max, got {profile}")
    if not isinstance(workspace_mib, int) or isinstance(workspace_mib, bool) or workspace_mib < 1:
        raise EdgekdError(f"workspace must be a whole number of MiB >= 1, got {workspace_mib!r}")
    model = graph.load(onnx_path)
    meta = graph.read_metadata(model)
    pre = Preprocess.from_metadata(meta, ARCFACE)
    name, _ = graph.check_face_input(model, onnx_path, pre.input_size)
    precision, path = _precision_and_path(trt, model, meta, onnx_path, precision, api)
    graph_precision = meta.get("precision", "fp32")
    needs_calib = path == "builder-flags" and precision == "int8" and graph_precision != "int8"
    if needs_calib and calib is None:
        raise EdgekdError(f"{onnx_path}: an INT8 build with TensorRT {trt.__version__} calibrates: pass --calib calib/NAME")
    if dla_core is not None:
        if precision not in ("fp16", "int8"):
            raise EdgekdError(f"{onnx_path}: DLA runs fp16 or int8 only (got {precision}); pass --precision fp16")
        profile = (opt, opt, opt)  # DLA needs a static shape: min = opt = max, else layers fall back to the GPU
    h, w = pre.input_size
    shapes = {k: [b, 3, h, w] for k, b in zip(("min", "opt", "max"), profile)}
    with open_cuda() as cuda:
        return _build(trt, onnx_path, engine_path, precision, {name: tuple(shapes.values())}, shapes, workspace_mib,
                      timing_cache, dla_core, calib if needs_calib else None, calib_cache, path, meta, cuda)


def build_network_engine(onnx_path, engine_path, shapes: dict, precision: str | None = None,
                         workspace_mib: int = 2048, timing_cache=None, api: str = "auto", trt=None) -> dict:
    """Any network (not only a face model, e.g. a detector's): `shapes` maps every dynamic input to its
    (min, opt, max) shapes, e.g. {"input": ((1, 3, 12, 12), (1, 3, 240, 320), (1, 3, 720, 1280))}. INT8 only from a
    Q/DQ graph (no calibrator). Writes the engine + sidecar (profile: name -> min/opt/max); returns the sidecar.
    Run it with edgekd.runtime.tensorrt.engine.EngineRunner."""
    if trt is None:
        trt = import_tensorrt()
    model = graph.load(onnx_path)
    meta = graph.read_metadata(model)
    inits = {i.name for i in model.graph.initializer}
    dims = {i.name: [d.dim_value if d.HasField("dim_value") else -1 for d in i.type.tensor_type.shape.dim]
            for i in model.graph.input if i.name not in inits}
    unknown = sorted(set(shapes) - set(dims))
    missing = sorted(n for n, d in dims.items() if -1 in d and n not in shapes)
    if unknown or missing:
        raise EdgekdError(f"{onnx_path}: shapes must cover exactly the dynamic inputs ({', '.join(dims)}): "
                          + (f"unknown {', '.join(unknown)}" if unknown else f"missing {', '.join(missing)}"))
    checked = {}
    for n, triple in shapes.items():
        lo, opt, hi = (tuple(int(v) for v in s) for s in triple)
        if not (len(lo) == len(opt) == len(hi) == len(dims[n])) or not all(
                1 <= a <= b <= c for a, b, c in zip(lo, opt, hi)):
            raise EdgekdError(f"{onnx_path}: input {n!r}: shapes must have its rank {len(dims[n])} and satisfy "
                              f"1 <= min <= opt <= max per dimension, got {triple}")
        if any(d != -1 and not a == b == c == d for d, a, b, c in zip(dims[n], lo, opt, hi)):
            raise EdgekdError(f"{onnx_path}: input {n!r}: the fixed dimensions {dims[n]} do not match {triple}")
        checked[n] = (lo, opt, hi)
    precision, path = _precision_and_path(trt, model, meta, onnx_path, precision, api)
    if precision == "int8" and meta.get("precision") != "int8":
        raise EdgekdError(f"{onnx_path}: an INT8 engine of this network needs its Q/DQ ONNX")
    profile = {n: {"min": list(lo), "opt": list(opt), "max": list(hi)} for n, (lo, opt, hi) in checked.items()}
    with open_cuda() as cuda:
        return _build(trt, onnx_path, engine_path, precision, checked, profile, workspace_mib, timing_cache, None,
                      None, None, path, meta, cuda)


def _precision_and_path(trt, model, meta, onnx_path, precision, api) -> tuple[str, str]:
    """(precision, API path) of a build: the graph's own precision by default; the op check against this
    TensorRT's parser; a strongly typed build takes its precision from the graph."""
    precision = precision or meta.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise EdgekdError(f"unknown precision {precision!r} ({', '.join(PRECISIONS)})")
    ops = check_trt_ops(model, trt.__version__)
    if not ops["ok"]:
        raise EdgekdError(f"{onnx_path}: TensorRT's ONNX parser would reject it: {'; '.join(ops['problems'])}")
    path = choose_api(trt, api)
    graph_precision = meta.get("precision", "fp32")
    if path == "strongly-typed" and graph_precision != precision:
        raise EdgekdError(f"{onnx_path}: is {graph_precision}, but a strongly typed {precision} build takes its "
                          f"precision from the graph: pass the {precision} ONNX written by `edgekd export`")
    if path == "builder-flags" and graph_precision not in ("fp32", precision):
        raise EdgekdError(f"{onnx_path}: is {graph_precision}; a {precision} build needs the FP32 ONNX")
    return precision, path


def _build(trt, onnx_path, engine_path, precision, shapes, sidecar_profile, workspace_mib, timing_cache, dla_core,
           calib, calib_cache, path, meta, cuda) -> dict:
    """The TensorRT part of a build on an open CUDA device (calibration buffers, GPU identity); `shapes`: input
    name -> (min, opt, max) of optimization profile 0."""
    needs_calib = calib is not None
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if _version(trt) < (10, 0):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if path == "strongly-typed" and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errs = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EdgekdError(f"{onnx_path}: TensorRT's ONNX parser failed: {errs[0] if errs else 'no error reported'}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
    if shapes:
        prof = builder.create_optimization_profile()
        for name, (lo, opt, hi) in shapes.items():
            prof.set_shape(name, tuple(lo), tuple(opt), tuple(hi))
        config.add_optimization_profile(prof)
    if path == "builder-flags" and precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # INT8 builds may keep layers without INT8 kernels in FP16
    if path == "builder-flags" and precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        if needs_calib:
            batch = min(32, calib.count)
            (name, (_, opt, _)), = shapes.items()  # a face model: one input
            cprof = builder.create_optimization_profile()
            cprof.set_shape(name, *([(batch, *opt[1:])] * 3))
            config.set_calibration_profile(cprof)
            config.int8_calibrator = make_calibrator(trt, calib, Path(calib_cache) if calib_cache else None, batch, cuda)
    if dla_core is not None:
        if not hasattr(trt, "DeviceType") or not hasattr(builder, "num_DLA_cores"):
            fail_unavailable(trt, "DLA")
        if dla_core >= builder.num_DLA_cores:
            raise EdgekdError(f"DLA core {dla_core} requested, but this device has {builder.num_DLA_cores} DLA core(s)")
        if path == "builder-flags":
            config.set_flag(trt.BuilderFlag.FP16)  # DLA has no FP32: without it every layer falls back to the GPU
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(dla_core)
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    cache_state = _use_timing_cache(config, timing_cache)

    start = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if plan is None:
        raise EdgekdError(f"{engine_path}: TensorRT build failed (see TensorRT's messages above); nothing was written")
    data = bytes(memoryview(plan))
    side = make_sidecar(trt.__version__, gpu_identity(cuda), precision=precision, profile=sidecar_profile, api_path=path,
                        onnx_path=onnx_path, engine_bytes=len(data), build_seconds=seconds,
                        calib_sha256=(calib.sha256 if needs_calib else meta.get("calib")), meta=meta,
                        dla_core=dla_core)
    side["timing_cache"] = cache_state
    with atomic_path(engine_path) as tmp:  # engine appears only together with its sidecar
        tmp.write_bytes(data)
        write_sidecar(engine_path, side)
    cache = config.get_timing_cache() if timing_cache is not None else None
    if cache is not None:  # None when no cache was accepted: nothing to save
        write_bytes_atomic(timing_cache, bytes(memoryview(cache.serialize())))
    return side


def _use_timing_cache(config, timing_cache) -> str | None:
    """Load the timing cache file into `config`: "reused", "new", or "replaced (...)" when TensorRT refuses it
    (set_timing_cache returns False for a cache of another TensorRT version or GPU; create_timing_cache may
    return None for an unreadable one): the build then starts from an empty cache, which is saved after it."""
    if timing_cache is None:
        return None
    tc = Path(timing_cache)
    data = tc.read_bytes() if tc.is_file() else b""
    cache = config.create_timing_cache(data) if data else None
    if cache is not None and config.set_timing_cache(cache, False):
        return "reused"
    fresh = config.create_timing_cache(b"")
    if fresh is None or not config.set_timing_cache(fresh, False):
        return "not used (TensorRT refused an empty timing cache)"
    return "new" if not data else "replaced (made by another TensorRT version or GPU)"
