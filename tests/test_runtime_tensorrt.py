"""TensorRT runtime logic that runs without a GPU: sidecar checks (before deserialising), API-generation choice,
missing-package errors. TensorRT and CUDA are the strict doubles of tests/doubles/ (control flow only, never numbers);
the I/O description takes hand-made engine objects of both binding-API generations."""

import json
import sys
import types

import numpy as np
import pytest

from edgekd.errors import EdgekdError
from edgekd.runtime import open_artifact
from edgekd.runtime.tensorrt.bindings import io_tensors, select_api
from edgekd.runtime.tensorrt.sidecar import check_sidecar, read_sidecar, sidecar_path

SIDE = {"tensorrt_version": "10.3.0", "cuda_version": "12.6", "driver_version": "540.4.0", "gpu_name": "Orin",
        "compute_capability": "8.7", "jetpack": "6.2", "precision": "fp16", "embedding_size": 128,
        "preprocess": {"input_size": [112, 112], "mean": [127.5] * 3, "std": [127.5] * 3, "crop": None},
        "profile": {"min": [1, 3, 112, 112], "opt": [8, 3, 112, 112], "max": [32, 3, 112, 112]}}


def write_engine(tmp_path, side=SIDE):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"serialized engine")
    if side is not None:
        sidecar_path(engine).write_text(json.dumps(side))
    return engine


@pytest.fixture
def gpu_doubles(monkeypatch):
    """The strict doubles of tests/doubles/ (the only fake TensorRT); call with the machine's settings."""
    import _trt_doubles

    def install(version="10.3.0", profile="jetson"):
        return _trt_doubles.install(monkeypatch, trt_version=version, profile=profile)

    yield install
    _trt_doubles.uninstall()


def test_version_mismatch_fires_before_deserialising(tmp_path, gpu_doubles):
    state = gpu_doubles(version="8.6.1")
    with pytest.raises(EdgekdError) as e:
        open_artifact(write_engine(tmp_path))
    msg = str(e.value)
    assert "m.engine" in msg and "10.3.0" in msg and "8.6.1" in msg and "\n" not in msg
    assert state.deserialized == [] and not state.memory


def test_gpu_mismatch_fires_before_deserialising(tmp_path, gpu_doubles):
    state = gpu_doubles(profile="desktop")  # CUDA device 0: RTX 4090
    with pytest.raises(EdgekdError) as e:
        open_artifact(write_engine(tmp_path))
    msg = str(e.value)
    assert "Orin" in msg and "RTX 4090" in msg and "8.7" in msg and "8.9" in msg
    assert state.deserialized == [] and not state.memory


def test_matching_sidecar_reaches_deserialisation(tmp_path, gpu_doubles):
    state = gpu_doubles()
    with pytest.raises(EdgekdError, match="could not deserialise"):  # not an engine: TensorRT returns None
        open_artifact(write_engine(tmp_path))
    assert state.deserialized == [len(b"serialized engine")] and not state.memory


def test_cli_engine_mismatch_is_one_line_exit_1(tmp_path, gpu_doubles):
    from click.testing import CliRunner

    from edgekd.cli import cli

    from _eval_tiny import make_lfw

    gpu_doubles(version="8.6.1")
    pairs = make_lfw(tmp_path / "lfw", folds=1, per=2)
    res = CliRunner().invoke(cli, ["eval", "--engine", str(write_engine(tmp_path)), "--data", str(pairs),
                                   "--json", str(tmp_path / "r.json"), "--quiet"])
    assert res.exit_code == 1 and "TensorRT 10.3.0" in res.output and "TensorRT 8.6.1" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "r.json").exists()


def test_missing_or_bad_sidecar(tmp_path):
    engine = write_engine(tmp_path, side=None)
    with pytest.raises(EdgekdError, match=r"m.engine: its build record m.engine.json is missing"):
        read_sidecar(engine)
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(EdgekdError, match="not a valid engine sidecar"):
        read_sidecar(engine)
    sidecar_path(engine).write_text(json.dumps({"tensorrt_version": "10.3.0"}))
    with pytest.raises(EdgekdError, match="gpu_name, compute_capability"):
        read_sidecar(engine)
    for bad in ("3", "null", "[]", '"x"'):  # issue 10 item 1: valid JSON, not an object
        sidecar_path(engine).write_text(bad)
        with pytest.raises(EdgekdError, match="a JSON object is expected"):
            read_sidecar(engine)
    sidecar_path(engine).write_text(json.dumps({**SIDE, "dla_core": "0"}))
    with pytest.raises(EdgekdError, match="'dla_core' should be int"):
        read_sidecar(engine)


def test_compute_capability_spellings():
    for cc in ("8.7", "87", [8, 7], (8, 7)):
        check_sidecar({**SIDE, "compute_capability": cc}, "m.engine", "10.3.0",
                      {"gpu_name": "orin", "compute_capability": "8.7"})
    check_sidecar(SIDE, "m.engine", "10.3.0")  # version-only check (no device yet)


def test_without_tensorrt_names_the_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(EdgekdError, match=r"edgekd\[trt-cu12\].*edgekd\[trt-cu13\].*python3-libnvinfer"):
        open_artifact(write_engine(tmp_path))


class _V3Engine:
    num_io_tensors = 2
    _t = [("input", 1, (-1, 3, 112, 112)), ("embedding", 0, (-1, 128))]

    def get_tensor_name(self, i):
        return self._t[i][0]

    def get_tensor_mode(self, name):
        return dict((n, m) for n, m, _ in self._t)[name]

    def get_tensor_shape(self, name):
        return dict((n, s) for n, _, s in self._t)[name]

    def get_tensor_dtype(self, name):
        return "f16" if name == "input" else "f32"

    def get_tensor_profile_shape(self, name, profile):
        return [(2, 3, 112, 112), (8, 3, 112, 112), (32, 3, 112, 112)]


class _V2Engine:
    num_bindings = 2

    def get_binding_name(self, i):
        return ["input", "embedding"][i]

    def binding_is_input(self, i):
        return i == 0

    def get_binding_shape(self, i):
        return [(-1, 3, 112, 112), (-1, 128)][i]

    def get_binding_dtype(self, i):
        return ["f16", "f32"][i]

    def get_profile_shape(self, profile, i):
        return [(1, 3, 112, 112), (8, 3, 112, 112), (16, 3, 112, 112)]


def test_api_generation_and_io_description():
    trt = types.SimpleNamespace(TensorIOMode=types.SimpleNamespace(INPUT=1),
                                nptype=lambda d: {"f16": np.float16, "f32": np.float32}[d])
    v3_ctx = types.SimpleNamespace(execute_async_v3=None)
    v2_ctx = types.SimpleNamespace(execute_async_v2=None)
    assert select_api(_V3Engine(), v3_ctx) == "v3"
    assert select_api(_V2Engine(), v2_ctx) == "v2"
    assert select_api(_V3Engine(), v2_ctx) == "v2"  # named tensors without execute_async_v3: old path
    v3 = io_tensors(trt, _V3Engine(), "v3")
    v2 = io_tensors(trt, _V2Engine(), "v2")
    for io, minb, maxb in ((v3, 2, 32), (v2, 1, 16)):
        assert [t["name"] for t in io] == ["input", "embedding"] and [t["input"] for t in io] == [True, False]
        assert io[0]["dtype"] == np.float16 and io[0]["max_batch"] == maxb and io[1]["shape"] == (-1, 128)
        assert io[0]["min_batch"] == minb


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_real_engine_matches_onnxruntime(tmp_path):
    """Builds a tiny dynamic-batch engine with the TensorRT builder and checks the runtime against ONNX Runtime."""
    import tensorrt as trt

    from _eval_tiny import PRE, export_onnx
    from edgekd.runtime.onnx_runtime import OnnxRuntime
    from edgekd.runtime.tensorrt.cuda import open_cuda
    from edgekd.runtime.tensorrt.runner import TensorRTRuntime

    onnx_path = export_onnx(tmp_path / "tiny.onnx", metadata={"edgekd.preprocess": json.dumps(PRE.to_dict())})
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    explicit = 0 if int(trt.__version__.split(".")[0]) >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(explicit)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(onnx_path.read_bytes())
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("input", (1, 3, 16, 16), (4, 3, 16, 16), (8, 3, 16, 16))
    config.add_optimization_profile(profile)
    engine = tmp_path / "tiny.engine"
    engine.write_bytes(bytes(builder.build_serialized_network(network, config)))
    with open_cuda() as cuda:
        name, cc = cuda.identity()
    sidecar_path(engine).write_text(json.dumps({**SIDE, "tensorrt_version": trt.__version__, "gpu_name": name,
                                                "compute_capability": cc, "precision": "fp32", "embedding_size": 8,
                                                "preprocess": PRE.to_dict()}))
    x = np.random.default_rng(0).normal(size=(11, 3, 16, 16)).astype(np.float32)
    with TensorRTRuntime(engine) as rt, OnnxRuntime(onnx_path) as ref:
        np.testing.assert_allclose(rt(x), ref(x), rtol=1e-3, atol=1e-4)  # 11 = 8 + 3: chunked
        assert rt.embedding_size == 8 and rt.device_time_ms(x) > 0


def test_tensorrt_package_imports_neither_torch_nor_click():
    """The Jetson path: edgekd.runtime.tensorrt and the engine build import no torch, models or click."""
    import subprocess

    code = ("import sys\nsys.modules['torch'] = None\n"
            "import edgekd.runtime.tensorrt.runner, edgekd.runtime.tensorrt.sidecar, edgekd.export.tensorrt_build\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('click', 'matplotlib', 'tensorrt', 'pycuda', 'cuda')"
            " or m.startswith('edgekd.models')]\nassert not bad, bad\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
