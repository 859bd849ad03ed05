"""Double of the tensorrt Python module, one surface per TensorRT generation (see tests/doubles/README.md).

The generation comes from the simulated machine's `trt_version` (8.6.x -> _v86, 10.x -> _v10, 11.x -> _v11); each
spec module says which API that release has, with its source, and this module exposes only that. An "engine" is a
JSON header plus the ONNX bytes it was built from; execution runs that ONNX with ONNX Runtime on the simulated device
memory, so the control flow around it is checked end to end. Never a measurement.

Contracts modelled beyond the happy path: create_execution_context returns None when activation memory cannot be
allocated; set_tensor_address returns False for an unknown name or a null address; set_timing_cache returns False
for a cache made by another TensorRT version or GPU, get_timing_cache is None unless a cache was set; a calibrator's
read_calibration_cache is asked first and a hit skips get_batch, write_calibration_cache receives a buffer
(memoryview), not bytes; a profile with min == max keeps -1 in the engine's shape, so set_input_shape is still
needed; a DLA engine deserialises on any core chosen with Runtime.DLA_core; I/O dtypes follow the graph.
"""

from __future__ import annotations

import enum
import json
import types

import numpy as np

import _fakegpu

__version__ = _fakegpu.state().trt_version
_MAJOR = int(__version__.split(".")[0])
if _MAJOR >= 11:
    from ._v11 import SPEC
elif _MAJOR == 10:
    from ._v10 import SPEC
else:
    from ._v86 import SPEC
_MAGIC = b"FAKE-TRT-ENGINE\n"
if _MAJOR == 10 and int(__version__.split(".")[1]) >= 15:
    SPEC = {**SPEC, "opset_range": (9, 24)}  # onnx-tensorrt docs/operators.md at 10.15


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4


_ONNX_DTYPE = {1: DataType.FLOAT, 10: DataType.HALF, 3: DataType.INT8, 6: DataType.INT32, 9: DataType.BOOL}


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DeviceType(enum.IntEnum):
    GPU = 0
    DLA = 1


MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
BuilderFlag = types.SimpleNamespace(**{f: f for f in SPEC["builder_flags"]})
NetworkDefinitionCreationFlag = types.SimpleNamespace(**SPEC["network_flags"])


def nptype(dtype):
    return {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8,
            DataType.INT32: np.int32, DataType.BOOL: np.bool_}[dtype]


class Logger:
    WARNING = 2
    ERROR = 1

    def __init__(self, level=WARNING):
        self.messages: list[str] = []

    def log(self, severity, msg):
        self.messages.append(msg)


if SPEC["calibrators"]:
    class IInt8EntropyCalibrator2:
        def __init__(self):
            pass


class _Strict:
    """pybind11 objects refuse attributes they do not define (AttributeError), unlike plain Python objects."""

    _attrs: tuple = ()

    def __setattr__(self, name, value):
        if name not in self._attrs:
            raise AttributeError(f"'tensorrt.{type(self).__name__}' object has no attribute '{name}'")
        object.__setattr__(self, name, value)


# ---- builder ---------------------------------------------------------------------------------------------------

class IOptimizationProfile(_Strict):
    _attrs = ("shapes",)

    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, min, opt, max):  # noqa: A002 - TensorRT's own argument names
        if not all(a <= b <= c for a, b, c in zip(min, opt, max)):
            raise ValueError("profile: min <= opt <= max violated")
        self.shapes[name] = [list(min), list(opt), list(max)]


def _origin() -> str:
    """A timing cache is valid only for the TensorRT version and the GPU that made it."""
    state = _fakegpu.state()
    return f"{__version__}|{state.cuda_devices()[0]['name']}"


class ITimingCache:
    def __init__(self, origin):
        self.origin = origin

    def serialize(self):
        return memoryview(b"FAKE-TIMING-CACHE " + self.origin.encode())


class IBuilderConfig(_Strict):
    _attrs = ("flags", "profiles", "calibration_profile", "default_device_type", "DLA_core", "workspace",
              "_timing_cache") + (("int8_calibrator",) if SPEC["calibrators"] else ())

    def __init__(self):
        self.flags, self.profiles = set(), []
        self.default_device_type, self.DLA_core, self._timing_cache = DeviceType.GPU, -1, None
        if SPEC["calibrators"]:
            self.int8_calibrator = None
            self.calibration_profile = None

    def set_memory_pool_limit(self, pool, size):
        self.workspace = size

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def set_flag(self, flag):
        self.flags.add(flag)

    def get_flag(self, flag):
        return flag in self.flags

    def create_timing_cache(self, data):
        data = bytes(data)
        if not data:
            return ITimingCache(_origin())
        if not data.startswith(b"FAKE-TIMING-CACHE "):
            return None  # not a timing cache at all
        return ITimingCache(data[len(b"FAKE-TIMING-CACHE "):].decode())

    def set_timing_cache(self, cache, ignore_mismatch):
        if cache.origin != _origin() and not ignore_mismatch:
            return False  # "Timing cache ... was created with a different TensorRT version / device"
        self._timing_cache = cache
        return True

    def get_timing_cache(self):
        return self._timing_cache


if SPEC["calibrators"]:
    def _set_calibration_profile(self, profile):
        self.calibration_profile = profile

    IBuilderConfig.set_calibration_profile = _set_calibration_profile


class INetworkDefinition:
    def __init__(self, flags):
        self.flags, self.onnx = flags, None
        known = sum(1 << v for v in SPEC["network_flags"].values())
        if flags & ~known:
            raise TypeError(f"create_network: unknown NetworkDefinitionCreationFlag bits {flags & ~known:#x}")
        bits = {k for k, v in SPEC["network_flags"].items() if flags & (1 << v)}
        self.explicit_batch = "EXPLICIT_BATCH" in bits or not SPEC["explicit_batch_required"]
        self.strongly_typed = SPEC["strongly_typed_always"] or "STRONGLY_TYPED" in bits


class OnnxParser:
    def __init__(self, network, logger):
        self.network, self.num_errors, self._errors = network, 0, []

    def parse(self, data):
        import onnx

        try:
            model = onnx.load_from_string(bytes(data))
        except Exception:  # noqa: BLE001
            return self._fail("ModelImporter.cpp: failed to parse ONNX model")
        if not self.network.explicit_batch:
            return self._fail("ModelImporter.cpp: the network must be created with the EXPLICIT_BATCH flag")
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        lo, hi = SPEC["opset_range"]
        if not lo <= opset <= hi:
            return self._fail(f"ModelImporter.cpp: unsupported opset {opset} (this parser: {lo}..{hi})")
        self.network.onnx = bytes(data)
        return True

    def _fail(self, msg):
        self._errors.append(msg)
        self.num_errors = len(self._errors)
        return False

    def get_error(self, i):
        return self._errors[i]


def _graph_precision(model) -> str:
    ops = {n.op_type for n in model.graph.node}
    if "QuantizeLinear" in ops:
        return "int8"
    halves = any(i.data_type == 10 for i in model.graph.initializer) or any(
        a.name == "to" and a.i == 10 for n in model.graph.node if n.op_type == "Cast" for a in n.attribute)
    return "fp16" if halves else "fp32"


def _dims(value_info) -> list[int]:
    return [d.dim_value if d.HasField("dim_value") else -1 for d in value_info.type.tensor_type.shape.dim]


class Builder:
    def __init__(self, logger):
        self.logger = logger
        self.num_DLA_cores = _fakegpu.state().dla_cores
        if SPEC["platform_has_fast_fp16"]:
            self.platform_has_fast_fp16 = True

    def create_network(self, flags=0):
        return INetworkDefinition(flags)

    def create_builder_config(self):
        return IBuilderConfig()

    def create_optimization_profile(self):
        return IOptimizationProfile()

    def _refuse(self, msg):
        self.logger.log(Logger.ERROR, msg)
        return None

    def build_serialized_network(self, network, config):
        import onnx

        state = _fakegpu.state()
        model = onnx.load_from_string(network.onnx)
        inp, out = model.graph.input[0], model.graph.output[0]
        if not config.profiles or inp.name not in config.profiles[0].shapes:
            return self._refuse("Network has dynamic or shape inputs, but no optimization profile has been defined.")
        precision_flags = {"FP16", "INT8"} & config.flags
        calib = getattr(config, "int8_calibrator", None)
        if network.strongly_typed and (precision_flags or calib is not None):
            return self._refuse("BuilderFlag FP16/INT8 and calibration are not allowed on a strongly typed network")
        graph_precision = _graph_precision(model)
        if network.strongly_typed:
            precision = graph_precision
        else:
            precision = "int8" if "INT8" in config.flags else "fp16" if "FP16" in config.flags else "fp32"
        scales = None
        if precision == "int8":
            scales = "qdq" if graph_precision == "int8" else None
            if scales is None and calib is not None:
                scales = self._calibrate(calib, inp.name, config)
            if scales is None:
                scales = "none"  # no calibrator, no Q/DQ: layers without dynamic ranges stay in float
        dla = config.default_device_type == DeviceType.DLA
        lo, opt, hi = config.profiles[0].shapes[inp.name]
        header = {"version": __version__, "input": inp.name, "output": out.name, "profile": [lo, opt, hi],
                  "input_dims": _dims(inp), "output_dims": _dims(out),
                  "dtypes": [int(_ONNX_DTYPE[inp.type.tensor_type.elem_type]),
                             int(_ONNX_DTYPE[out.type.tensor_type.elem_type])],
                  "precision": precision, "int8_scales": scales, "strongly_typed": network.strongly_typed,
                  "dla_core": config.DLA_core if dla else None,
                  # DLA runs FP16/INT8 with a static shape only; anything else falls back to the GPU
                  "gpu_fallback_layers": bool(dla and (lo != hi or precision == "fp32"))}
        state.builds.append({"header": header, "flags": sorted(config.flags), "network_flags": network.flags,
                             "workspace": getattr(config, "workspace", None),
                             "timing_cache": config.get_timing_cache() is not None})
        return memoryview(_MAGIC + json.dumps(header).encode() + b"\n" + network.onnx)

    def _calibrate(self, calib, name, config):
        """read_calibration_cache first: a hit never calls get_batch; else batches until None, then the cache is
        handed to write_calibration_cache as a buffer."""
        state = _fakegpu.state()
        cached = calib.read_calibration_cache()
        if cached is not None and len(bytes(cached)):
            state.calibration.append("cache-hit")
            return "calibration-cache"
        batch = calib.get_batch_size()
        prof = config.calibration_profile.shapes[name][0] if config.calibration_profile else None
        count = 0
        while True:
            ptrs = calib.get_batch([name])
            if not ptrs:
                break
            shape = prof or [batch]
            nbytes = int(np.prod(shape)) * 4 if prof else 4
            state.buffer(int(ptrs[0]), nbytes)  # an illegal address raises, as a bad pointer would crash
            count += 1
        state.calibration.append(f"calibrated:{count}")
        calib.write_calibration_cache(memoryview(f"TRT-{__version__.replace('.', '')}-EntropyCalibration2\n"
                                                 .encode()))
        return "calibrated"


# ---- runtime -------------------------------------------------------------------------------------------------

class Runtime(_Strict):
    _attrs = ("logger", "DLA_core")

    def __init__(self, logger):
        self.logger, self.DLA_core = logger, -1

    @property
    def num_DLA_cores(self):
        return _fakegpu.state().dla_cores

    def deserialize_cuda_engine(self, data):
        data = bytes(data)
        _fakegpu.state().deserialized.append(len(data))
        if not data.startswith(_MAGIC):
            self.logger.log(1, "Serialization assertion magicTagRead == kMAGIC_TAG failed")
            return None
        header, _, onnx_bytes = data[len(_MAGIC):].partition(b"\n")
        header = json.loads(header)
        if header["version"] != __version__:
            self.logger.log(1, "The engine plan file is not compatible with this version of TensorRT")
            return None
        core = None
        if header["dla_core"] is not None:
            if not 0 <= self.DLA_core < _fakegpu.state().dla_cores:
                self.logger.log(1, "Cannot deserialize a DLA engine: Runtime.DLA_core is not set to a DLA core")
                return None
            core = self.DLA_core  # any core: the runtime, not the build, chooses where a DLA engine runs
        return ICudaEngine(header, onnx_bytes, core)


class ICudaEngine:
    def __init__(self, header, onnx_bytes, dla_core=None):
        self.header, self.onnx_bytes, self.num_optimization_profiles = header, onnx_bytes, 1
        self.dla_core = dla_core
        self.num_io_tensors = 2
        if SPEC["binding_api_v2"]:
            self.num_bindings = 2
        self._session = None

    def _names(self):
        return [self.header["input"], self.header["output"]]

    def get_tensor_name(self, i):
        return self._names()[i]

    def get_tensor_mode(self, name):
        return TensorIOMode.INPUT if name == self.header["input"] else TensorIOMode.OUTPUT

    def get_tensor_shape(self, name):
        """The network's shape: -1 where the ONNX dimension is dynamic, even when the profile has min == max."""
        return tuple(self.header["input_dims"] if name == self.header["input"] else self.header["output_dims"])

    def get_tensor_dtype(self, name):
        return DataType(self.header["dtypes"][0 if name == self.header["input"] else 1])

    def get_tensor_profile_shape(self, name, profile_index):
        if name != self.header["input"] or profile_index != 0:
            raise RuntimeError("get_tensor_profile_shape: not an input of profile 0")
        return [tuple(s) for s in self.header["profile"]]

    def create_execution_context(self):
        if _fakegpu.state().fail_context:
            return None  # "Requested amount of GPU memory could not be allocated": TensorRT returns nullptr
        return IExecutionContext(self)

    def __getattr__(self, name):  # the v2 binding API exists only on TensorRT < 10
        if SPEC["binding_api_v2"] and name in _V2_ENGINE:
            return getattr(self, "_v2_" + name)
        raise AttributeError(name)

    def _v2_binding_is_input(self, i):
        return i == 0

    def _v2_get_binding_name(self, i):
        return self._names()[i]

    def _v2_get_binding_shape(self, i):
        return self.get_tensor_shape(self._names()[i])

    def _v2_get_binding_dtype(self, i):
        return self.get_tensor_dtype(self._names()[i])

    def _v2_get_profile_shape(self, profile_index, i):
        return self.get_tensor_profile_shape(self._names()[i], profile_index)

    def run(self, x):
        if self._session is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            self._session = ort.InferenceSession(self.onnx_bytes, opts, providers=["CPUExecutionProvider"])
        return self._session.run(None, {self.header["input"]: x})[0]


_V2_ENGINE = {"binding_is_input", "get_binding_name", "get_binding_shape", "get_binding_dtype", "get_profile_shape"}


class IExecutionContext:
    def __init__(self, engine):
        self.engine, self.addresses, self.input_shape = engine, {}, None
        if -1 not in engine.header["input_dims"]:
            self.input_shape = tuple(engine.header["input_dims"])  # a static network needs no shape

    def set_input_shape(self, name, shape):
        lo, _, hi = self.engine.header["profile"]
        shape = tuple(shape)
        if name != self.engine.header["input"] or len(shape) != len(lo):
            return False
        if not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
            return False  # outside the optimization profile: TensorRT logs an error and returns False
        self.input_shape = shape
        return True

    def set_tensor_address(self, name, ptr):
        if name not in self.engine._names() or not int(ptr) or _fakegpu.state().refuse_address:
            return False
        self.addresses[name] = int(ptr)
        return True

    def get_tensor_shape(self, name):
        if self.input_shape is None:
            return self.engine.get_tensor_shape(name)
        out = list(self.engine.header["output_dims"])
        out[0] = self.input_shape[0]
        return self.input_shape if name == self.engine.header["input"] else tuple(out)

    def execute_async_v3(self, stream_handle):
        names = self.engine._names()
        if self.input_shape is None or any(n not in self.addresses for n in names):
            return False  # "Not all input dimensions are specified" / "address is not set"
        return self._execute(self.addresses[names[0]], self.addresses[names[1]])

    def __getattr__(self, name):
        if SPEC["binding_api_v2"] and name in ("set_binding_shape", "execute_async_v2"):
            return getattr(self, "_v2_" + name)
        raise AttributeError(name)

    def _v2_set_binding_shape(self, index, shape):
        return index == 0 and self.set_input_shape(self.engine.header["input"], shape)

    def _v2_execute_async_v2(self, bindings, stream_handle):
        if self.input_shape is None or len(bindings) != 2:
            return False
        return self._execute(int(bindings[0]), int(bindings[1]))

    def _execute(self, in_ptr, out_ptr):
        state = _fakegpu.state()
        if state.fail_execute:
            return False
        in_t, out_t = (np.dtype(nptype(DataType(d))) for d in self.engine.header["dtypes"])
        n = self.input_shape[0]
        raw = state.buffer(in_ptr, int(np.prod(self.input_shape)) * in_t.itemsize).tobytes()
        x = np.frombuffer(raw, in_t).reshape(self.input_shape)
        y = np.ascontiguousarray(self.engine.run(x).astype(out_t))
        state.buffer(out_ptr, y.nbytes)[:] = y.view(np.uint8).reshape(-1)
        state.clock_ms += n * _fakegpu.MS_PER_IMAGE
        state.executions.append(self.input_shape)
        state.dla_runs.append(self.engine.dla_core)
        return True
