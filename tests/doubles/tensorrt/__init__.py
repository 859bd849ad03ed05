"""Double of the tensorrt Python module (8.6 and 10.x API; see tests/doubles/README.md).

An "engine" is a JSON header plus the ONNX bytes it was built from; execution runs that ONNX with ONNX Runtime on
the simulated device memory, so the control flow around it is checked end to end. Never a measurement.
"""

from __future__ import annotations

import enum
import json
import types

import numpy as np

import _fakegpu

__version__ = _fakegpu.state().trt_version
_MAGIC = b"FAKE-TRT-ENGINE\n"
_MAJOR = int(__version__.split(".")[0])


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DeviceType(enum.IntEnum):
    GPU = 0
    DLA = 1


MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8", GPU_FALLBACK="GPU_FALLBACK")
NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0, STRONGLY_TYPED=1)


def nptype(dtype):
    return {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8}[dtype]


class Logger:
    WARNING = 2
    ERROR = 1

    def __init__(self, level=WARNING):
        self.messages: list[str] = []

    def log(self, severity, msg):
        self.messages.append(msg)


class IInt8EntropyCalibrator2:
    def __init__(self):
        pass


# ---- builder ---------------------------------------------------------------------------------------------------

class IOptimizationProfile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, min, opt, max):  # noqa: A002 - TensorRT's own argument names
        if not all(a <= b <= c for a, b, c in zip(min, opt, max)):
            raise ValueError("profile: min <= opt <= max violated")
        self.shapes[name] = [list(min), list(opt), list(max)]


class ITimingCache:
    def serialize(self):
        return memoryview(b"timing-cache")


class IBuilderConfig:
    def __init__(self):
        self.flags, self.profiles, self.calibration_profile = set(), [], None
        self.int8_calibrator, self.default_device_type, self.DLA_core = None, DeviceType.GPU, -1

    def set_memory_pool_limit(self, pool, size):
        self.workspace = size

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def set_flag(self, flag):
        self.flags.add(flag)

    def get_flag(self, flag):
        return flag in self.flags

    def set_calibration_profile(self, profile):
        self.calibration_profile = profile

    def create_timing_cache(self, data):
        return ITimingCache()

    def set_timing_cache(self, cache, ignore_mismatch):
        return True

    def get_timing_cache(self):
        return ITimingCache()


class INetworkDefinition:
    def __init__(self, flags):
        self.flags, self.onnx = flags, None


class OnnxParser:
    def __init__(self, network, logger):
        self.network, self.num_errors = network, 0

    def parse(self, data):
        import onnx

        try:
            onnx.load_from_string(bytes(data))
        except Exception:  # noqa: BLE001
            self.num_errors = 1
            return False
        self.network.onnx = bytes(data)
        return True

    def get_error(self, i):
        return "ModelImporter.cpp: failed to parse ONNX model"


class Builder:
    def __init__(self, logger):
        self.num_DLA_cores = _fakegpu.state().dla_cores
        self.platform_has_fast_fp16 = True

    def create_network(self, flags=0):
        return INetworkDefinition(flags)

    def create_builder_config(self):
        return IBuilderConfig()

    def create_optimization_profile(self):
        return IOptimizationProfile()

    def build_serialized_network(self, network, config):
        import onnx

        model = onnx.load_from_string(network.onnx)
        inp, out = model.graph.input[0], model.graph.output[0]
        if not config.profiles or inp.name not in config.profiles[0].shapes:
            return None  # "Network has dynamic or shape inputs, but no optimization profile has been defined."
        calib = config.int8_calibrator
        if calib is not None and "INT8" in config.flags:
            while calib.get_batch([inp.name]) is not None:
                pass
            calib.write_calibration_cache(b"calibration-table")
        dla = config.default_device_type == DeviceType.DLA
        lo, opt, hi = config.profiles[0].shapes[inp.name]
        header = {"version": __version__, "input": inp.name, "output": out.name, "profile": [lo, opt, hi],
                  "dim": int(out.type.tensor_type.shape.dim[-1].dim_value),
                  "dla_core": config.DLA_core if dla else None,
                  # DLA runs FP16/INT8 with a static shape only; anything else falls back to the GPU
                  "gpu_fallback_layers": bool(dla and (lo != hi or not ({"FP16", "INT8"} & config.flags)))}
        return memoryview(_MAGIC + json.dumps(header).encode() + b"\n" + network.onnx)


# ---- runtime -------------------------------------------------------------------------------------------------

class Runtime:
    def __init__(self, logger):
        self.logger, self.DLA_core = logger, -1

    def deserialize_cuda_engine(self, data):
        data = bytes(data)
        if not data.startswith(_MAGIC):
            self.logger.log(1, "Serialization assertion magicTagRead == kMAGIC_TAG failed")
            return None
        header, _, onnx_bytes = data[len(_MAGIC):].partition(b"\n")
        header = json.loads(header)
        if header["version"] != __version__:
            self.logger.log(1, "The engine plan file is not compatible with this version of TensorRT")
            return None
        if header["dla_core"] is not None and self.DLA_core != header["dla_core"]:
            self.logger.log(1, "Cannot deserialize a DLA engine: Runtime.DLA_core is not set to its core")
            return None
        return ICudaEngine(header, onnx_bytes)


class ICudaEngine:
    def __init__(self, header, onnx_bytes):
        self.header, self.onnx_bytes, self.num_optimization_profiles = header, onnx_bytes, 1
        self.num_io_tensors = 2
        if _MAJOR < 10:  # binding indices: removed in TensorRT 10
            self.num_bindings = 2
        self._session = None

    def _names(self):
        return [self.header["input"], self.header["output"]]

    def get_tensor_name(self, i):
        return self._names()[i]

    def get_tensor_mode(self, name):
        return TensorIOMode.INPUT if name == self.header["input"] else TensorIOMode.OUTPUT

    def get_tensor_shape(self, name):
        lo, _, hi = self.header["profile"]
        batch = lo[0] if lo[0] == hi[0] else -1
        return (batch, *lo[1:]) if name == self.header["input"] else (batch, self.header["dim"])

    def get_tensor_dtype(self, name):
        return DataType.FLOAT

    def get_tensor_profile_shape(self, name, profile_index):
        if name != self.header["input"] or profile_index != 0:
            raise RuntimeError("get_tensor_profile_shape: not an input of profile 0")
        return [tuple(s) for s in self.header["profile"]]

    def create_execution_context(self):
        return IExecutionContext(self)

    def __getattr__(self, name):  # the v2 binding API exists only on TensorRT < 10
        if _MAJOR < 10 and name in _V2_ENGINE:
            return getattr(self, "_v2_" + name)
        raise AttributeError(name)

    def _v2_binding_is_input(self, i):
        return i == 0

    def _v2_get_binding_name(self, i):
        return self._names()[i]

    def _v2_get_binding_shape(self, i):
        return self.get_tensor_shape(self._names()[i])

    def _v2_get_binding_dtype(self, i):
        return DataType.FLOAT

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
        lo, _, hi = engine.header["profile"]
        if lo == hi:
            self.input_shape = tuple(lo)

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
        self.addresses[name] = int(ptr)
        return True

    def get_tensor_shape(self, name):
        if self.input_shape is None:
            return self.engine.get_tensor_shape(name)
        return self.input_shape if name == self.engine.header["input"] else (self.input_shape[0], self.engine.header["dim"])

    def execute_async_v3(self, stream_handle):
        names = self.engine._names()
        if self.input_shape is None or any(n not in self.addresses for n in names):
            return False  # "Not all input dimensions are specified" / "address is not set"
        return self._execute(self.addresses[names[0]], self.addresses[names[1]])

    def __getattr__(self, name):
        if _MAJOR < 10 and name in ("set_binding_shape", "execute_async_v2"):
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
        n = self.input_shape[0]
        x = np.frombuffer(state.buffer(in_ptr, int(np.prod(self.input_shape)) * 4).tobytes(), np.float32)
        y = self.engine.run(x.reshape(self.input_shape)).astype(np.float32)
        state.buffer(out_ptr, y.nbytes)[:] = y.view(np.uint8).reshape(-1)
        state.clock_ms += n * _fakegpu.MS_PER_IMAGE
        state.executions.append(self.input_shape)
        return True
