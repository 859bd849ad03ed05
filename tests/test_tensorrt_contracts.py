"""The TensorRT / CUDA / NVML code against strict doubles of the real APIs (tests/doubles/, see its README.md).

Each test named test_defect_N pins defect N of issue 11, each test_item_N item N of issue 19; each failed before its
fix. Tests taking `machine` run once per TensorRT generation double (8.6, 10.x, 11.x: tests/doubles/tensorrt/_v*.py);
`one_machine` is for tests about one generation. The doubles compute embeddings with ONNX Runtime so control flow is
checked end to end; nothing here is a measurement.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import _trt_doubles as doubles
from edgekd.errors import EdgekdError


GENERATIONS = ("8.6.1", "10.3.0", "11.4.0")


def _machine(monkeypatch, trt_version):
    installed = []

    def install(**kw):
        installed.append(True)
        return doubles.install(monkeypatch, **{"trt_version": trt_version, **kw})

    return install, installed


@pytest.fixture(params=GENERATIONS)
def machine(monkeypatch, request):
    """Install the doubles of one TensorRT generation (call with the machine's settings); checks pycuda's
    empty-stack contract afterwards."""
    install, installed = _machine(monkeypatch, request.param)
    yield install
    if installed:
        doubles.uninstall()


@pytest.fixture
def one_machine(monkeypatch):
    """As `machine`, without the generation matrix (the test names its trt_version, or takes 10.3.0)."""
    install, installed = _machine(monkeypatch, "10.3.0")
    yield install
    if installed:
        doubles.uninstall()


def build(tmp_path, precision="fp32", profile=(1, 8, 16), name="m", **kw):
    from edgekd.export.tensorrt_build import build_engine

    onnx_path = doubles.tiny_face_onnx(tmp_path / f"{name}.onnx")
    engine = tmp_path / f"{name}.{precision}.engine"
    build_engine(onnx_path, engine, precision, profile, **kw)
    return onnx_path, engine


def onnx_embeddings(onnx_path, x):
    from edgekd.runtime.onnx_runtime import OnnxRuntime

    with OnnxRuntime(onnx_path) as rt:
        return rt(x)


def open_engine(engine):
    from edgekd.runtime import open_artifact

    return open_artifact(engine)


def test_engine_round_trip_matches_onnxruntime(tmp_path, machine):
    """Build -> sidecar -> open -> embed through the doubles, chunked over the profile maximum (8 + 8 + 3)."""
    machine()
    onnx_path, engine = build(tmp_path, profile=(1, 8, 8))
    x = doubles.faces(19)
    with open_engine(engine) as rt:
        np.testing.assert_allclose(rt(x), onnx_embeddings(onnx_path, x), rtol=1e-5, atol=1e-6)


def test_defect_1_pycuda_context_stack_empty_at_exit(tmp_path):
    """Defect 1: an INT8 build with pycuda (calibrator) and a runtime never closed left the primary context pushed;
    pycuda aborts at interpreter exit ("context stack was not empty upon module cleanup")."""
    code = textwrap.dedent(f"""
        from pathlib import Path
        import _trt_doubles as doubles
        from edgekd.export.calib import make_calib, open_calib
        from edgekd.export.tensorrt_build import build_engine
        from edgekd.preprocess import ARCFACE
        from edgekd.runtime import open_artifact

        tmp = Path({str(tmp_path)!r})
        make_calib("synthetic:4x2", tmp / "calib", n=8, progress=False)
        onnx_path = doubles.tiny_face_onnx(tmp / "m.onnx")
        build_engine(onnx_path, tmp / "m.int8.engine", "int8", calib=open_calib(tmp / "calib", ARCFACE),
                     calib_cache=tmp / "c.cache")
        rt = open_artifact(tmp / "m.int8.engine")  # never closed, as in a script that just exits
        rt(doubles.faces(2))
        print("done")
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=doubles.subprocess_env(trt_version="8.6.1"))
    assert res.returncode == 0 and "done" in res.stdout, res.stderr[-1500:]
    assert "context stack was not empty" not in res.stderr


def test_defect_2_bench_under_jetson_nvml_writes_json(tmp_path, one_machine):
    """Defect 2: JetPack 6's NVML answers NOT_SUPPORTED for memory info; gpus() raised and `edgekd bench` ended in a
    traceback after all the timing. Now the figure is null with its reason."""
    from edgekd.bench.bench import run_bench
    from edgekd.bench.environment import gpus

    one_machine(profile="jetson")
    (gpu,) = gpus()
    assert gpu["name"] == "Orin (nvgpu)" and gpu["memory_bytes"] is None
    assert "not supported" in gpu["memory_bytes_reason"].lower()
    result = run_bench(onnx=doubles.tiny_face_onnx(tmp_path / "m.onnx"), batch_sizes=(1,), warmup=0, iterations=2,
                       min_time_s=0, progress=False)
    json.dumps(result)
    assert result["memory"]["gpu_bytes"] is None and result["memory"]["gpu_bytes_reason"]


@pytest.mark.parametrize("profile,env", [("desktop", {}), ("desktop", {"CUDA_VISIBLE_DEVICES": "1"}), ("jetson", {})])
def test_defect_3_gpu_identity_is_the_cuda_device(tmp_path, machine, monkeypatch, profile, env):
    """Defect 3: the sidecar recorded NVML device 0 but the runtime checked CUDA device 0; NVML orders by PCI bus and
    ignores CUDA_VISIBLE_DEVICES, and names the Jetson GPU "Orin (nvgpu)", so valid engines were refused."""
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    machine(profile=profile)
    _, engine = build(tmp_path)
    side = json.loads((tmp_path / "m.fp32.engine.json").read_text())
    import _fakegpu

    assert side["gpu_name"] == _fakegpu.state().cuda_devices()[0]["name"]
    with open_engine(engine) as rt:
        assert rt(doubles.faces(1)).shape == (1, 8)


def test_defect_4_batches_below_the_profile_minimum_are_padded(tmp_path, machine):
    """Defect 4: with profile min 4, a batch of 2 was treated as in-profile; set_input_shape returned False, unchecked,
    and the stale output buffer came back as embeddings."""
    machine()
    onnx_path, engine = build(tmp_path, profile=(4, 8, 16))
    x = doubles.faces(2)
    with open_engine(engine) as rt:
        np.testing.assert_allclose(rt(x), onnx_embeddings(onnx_path, x), rtol=1e-5, atol=1e-6)


def test_defect_4_failed_execute_is_an_error(tmp_path, machine):
    """Defect 4: the boolean of execute_async_v3 was never checked: a failed execution returned the old buffer."""
    state = machine()
    _, engine = build(tmp_path)
    with open_engine(engine) as rt:
        rt(doubles.faces(3))
        state.fail_execute = True
        with pytest.raises(EdgekdError, match="execute_async_v3.*failed"):
            rt(doubles.faces(3, seed=1))


def test_defect_4_binding_api_v2_checks_its_booleans(tmp_path, one_machine):
    """Defect 4 on TensorRT 8.6 (binding indices): set_binding_shape / execute_async_v2 booleans are checked too."""
    state = one_machine(trt_version="8.6.1")
    onnx_path, engine = build(tmp_path, profile=(4, 8, 16), api="builder-flags")
    with open_engine(engine) as rt:
        x = doubles.faces(3)
        np.testing.assert_allclose(rt(x), onnx_embeddings(onnx_path, x), rtol=1e-5, atol=1e-6)
        state.fail_execute = True
        with pytest.raises(EdgekdError, match="failed"):
            rt(x)


def test_defect_5_dla_static_profile_and_runtime_core(tmp_path, one_machine):
    """Defect 5: --dla-core kept the (1,8,64) profile (DLA needs min = opt = max and FP16/INT8, else layers fall back
    to the GPU while the engine is labelled DLA) and the runtime never set Runtime.DLA_core from the sidecar."""
    one_machine(trt_version="8.6.1", dla_cores=2, profile="jetson")
    _, engine = build(tmp_path, "fp16", profile=(1, 8, 64), dla_core=1, api="builder-flags")
    header = json.loads(engine.read_bytes().split(b"\n")[1])
    assert header["dla_core"] == 1 and not header["gpu_fallback_layers"]
    side = json.loads((tmp_path / "m.fp16.engine.json").read_text())
    assert side["dla_core"] == 1 and side["profile"]["min"] == side["profile"]["max"]
    with open_engine(engine) as rt:
        assert rt(doubles.faces(11)).shape == (11, 8)
    with pytest.raises(EdgekdError, match="DLA.*fp16 or int8"):
        build(tmp_path, "fp32", dla_core=0, name="f", api="builder-flags")


def test_defect_6_cuda_python_uses_pinned_memory_and_frees_events(tmp_path, machine):
    """Defect 6: the cuda-python backend copied from pageable numpy memory (so "async" copies were synchronous) and
    leaked two CUDA events per device_time_ms call."""
    state = machine(hide=("pycuda",))
    _, engine = build(tmp_path)
    rt = open_engine(engine)
    x = doubles.faces(4)
    rt(x)
    for _ in range(5):
        assert rt.device_time_ms(x) > 0
    assert state.sync_copies == 0
    assert state.events_live <= 2
    rt.close()
    assert state.events_live == 0 and not state.memory


def test_defect_7_gpu_memory_in_a_container(one_machine):
    """Defect 7: NVML reports host PIDs; in a container without --pid=host os.getpid() never matches, so GPU memory
    was always missing. Now: the device-level used-memory delta, labelled as such."""
    from edgekd.bench.memory import MemorySampler

    state = one_machine(pid_offset=4242)
    with MemorySampler() as sampler:
        state.alloc(64 << 20)
        sampler.sample()
    mem = sampler.result()
    assert mem["gpu_bytes"] == 64 << 20 and mem["gpu_bytes_method"] == "nvml-device-used-delta"
    state.pid_offset = 0
    with MemorySampler() as sampler:
        sampler.sample()
    assert sampler.result()["gpu_bytes_method"] == "nvml-process"


def test_defect_7_jetson_memory_is_null_with_reason(one_machine):
    """Defect 7 / issue 11: on JetPack 6 NVML answers NOT_SUPPORTED: the figure is null with the reason."""
    from edgekd.bench.memory import MemorySampler

    one_machine(profile="jetson")
    with MemorySampler() as sampler:
        sampler.sample()
    mem = sampler.result()
    assert mem["gpu_bytes"] is None and mem["gpu_bytes_method"] is None
    assert "not supported" in mem["gpu_bytes_reason"].lower()


def test_defect_8_torch_cuda_n_runs_on_its_device(monkeypatch):
    """Defect 8: on cuda:N (N != 0) CUDA events, streams and graphs were created on the current device (0)."""
    import torch

    from edgekd.runtime.torch_runtime import TorchRuntime

    current = [0]
    seen = []

    class Device:
        def __init__(self, d):
            self.index = torch.device(d).index if not isinstance(d, int) else d

        def __enter__(self):
            self.prev, current[0] = current[0], self.index

        def __exit__(self, *exc):
            current[0] = self.prev

    class Event:
        def __init__(self, enable_timing=False):
            seen.append(("event", current[0]))

        def record(self, stream=None):
            seen.append(("record", current[0]))

        def synchronize(self):
            pass

        def elapsed_time(self, end):
            return 1.0

    monkeypatch.setattr(torch.cuda, "device", Device)
    monkeypatch.setattr(torch.cuda, "Event", Event)
    rt = TorchRuntime.__new__(TorchRuntime)
    rt._device, rt._graphs, rt._forward = torch.device("cuda:1"), None, lambda t: t
    rt._to_device = lambda x: torch.from_numpy(x)
    assert rt.device_time_ms(np.zeros((1, 3, 2, 2), np.float32)) == 1.0
    assert seen and all(dev == 1 for _, dev in seen), seen


def test_defect_9_real_build_helper_opens_what_it_built(tmp_path, one_machine):
    """Defect 9: the real-TensorRT test built into ./engines/ and then opened tmp_path/...; its build-and-compare
    helper now runs here against the doubles, with a tiny ONNX in place of the exported MobileFaceNet."""
    from test_export_trt import build_and_compare_with_onnx

    one_machine()
    onnx_path = doubles.tiny_face_onnx(tmp_path / "m.onnx")
    typed = doubles.tiny_face_onnx(tmp_path / "m.fp16.onnx", "fp16")
    build_and_compare_with_onnx(tmp_path, onnx_path, typed)


def test_defect_10_device_time_covers_every_chunk(tmp_path, machine):
    """Defect 10: above the engine's maximum batch, host latency covered every chunk but device time only the first."""
    machine()
    import _fakegpu

    _, engine = build(tmp_path, profile=(1, 8, 8))
    with open_engine(engine) as rt:
        assert rt.device_time_ms(doubles.faces(20)) == pytest.approx(20 * _fakegpu.MS_PER_IMAGE)


@pytest.mark.parametrize("content", ["3", "null", "[1, 2]", '"text"'])
@pytest.mark.parametrize("command", ["eval", "bench"])
def test_sidecar_that_is_not_an_object_is_one_line(tmp_path, one_machine, content, command):
    """Issue 10 item 1: a sidecar holding a number or null was a TypeError traceback in eval/bench --engine."""
    from click.testing import CliRunner

    from _eval_tiny import make_lfw
    from edgekd.cli import cli

    one_machine()
    _, engine = build(tmp_path)
    (tmp_path / "m.fp32.engine.json").write_text(content)
    args = {"eval": ["eval", "--engine", str(engine), "--data", str(make_lfw(tmp_path / "lfw", folds=1, per=2)),
                     "--quiet"],
            "bench": ["bench", "--engine", str(engine), "-b", "1", "-n", "1", "--min-time", "0", "--quiet"]}[command]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1, res.output
    assert res.output.startswith("Error: ") and len(res.output.strip().splitlines()) == 1, res.output
    assert "m.fp32.engine.json" in res.output and "Traceback" not in res.output


def test_fixed_batch_engine_pads_and_chunks(tmp_path, machine):
    """An engine with a static batch (profile min = max, as DLA builds are): no shape is set, short chunks are
    zero-padded to the batch and every chunk runs (6 = 4 + 2 padded)."""
    state = machine()
    onnx_path, engine = build(tmp_path, profile=(4, 4, 4))
    x = doubles.faces(6)
    with open_engine(engine) as rt:
        np.testing.assert_allclose(rt(x), onnx_embeddings(onnx_path, x), rtol=1e-5, atol=1e-6)
    assert state.executions == [(4, 3, 112, 112), (4, 3, 112, 112)]
