"""The TensorRT / CUDA / NVML code against strict doubles of the real APIs (tests/doubles/, see its README.md).

Each test named test_defect_N pins defect N of issue 11, each test_item_N item N of issue 19; each failed before its
fix. Tests taking `machine` (conftest.py) run once per TensorRT generation double (8.6, 10.x, 11.x:
tests/doubles/tensorrt/_v*.py); `one_machine` is for tests about one generation. The doubles compute embeddings with
ONNX Runtime so control flow is checked end to end; nothing here is a measurement.
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
from tiny_models import faces, tiny_onnx


def build(tmp_path, precision="fp32", profile=(1, 8, 16), name="m", **kw):
    from edgekd.export.tensorrt_build import build_engine

    onnx_path = tiny_onnx(tmp_path / f"{name}.onnx")
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
    x = faces(19)
    with open_engine(engine) as rt:
        np.testing.assert_allclose(rt(x), onnx_embeddings(onnx_path, x), rtol=1e-5, atol=1e-6)


def test_defect_1_pycuda_context_stack_empty_at_exit(tmp_path):
    """Defect 1: an INT8 build with pycuda (calibrator) and a runtime never closed left the primary context pushed;
    pycuda aborts at interpreter exit ("context stack was not empty upon module cleanup")."""
    code = textwrap.dedent(f"""
        from pathlib import Path
        from tiny_models import faces, tiny_onnx
        from edgekd.export.calib import make_calib, open_calib
        from edgekd.export.tensorrt_build import build_engine
        from edgekd.preprocess import ARCFACE
        from edgekd.runtime import open_artifact

        tmp = Path({str(tmp_path)!r})
        make_calib("synthetic:4x2", tmp / "calib", n=8, progress=False)
        onnx_path = tiny_onnx(tmp / "m.onnx")
        build_engine(onnx_path, tmp / "m.int8.engine", "int8", calib=open_calib(tmp / "calib", ARCFACE),
                     calib_cache=tmp / "c.cache")
        rt = open_artifact(tmp / "m.int8.engine")  # never closed, as in a script that just exits
        rt(faces(2))
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
    result = run_bench(onnx=tiny_onnx(tmp_path / "m.onnx"), batch_sizes=(1,), warmup=0, iterations=2,
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
        assert rt(faces(1)).shape == (1, 8)


def test_defect_4_batches_below_the_profile_minimum_are_padded(tmp_path, machine):
    """Defect 4: with profile min 4, a batch of 2 was treated as in-profile; set_input_shape returned False, unchecked,
    and the stale output buffer came back as embeddings."""
    machine()
    onnx_path, engine = build(tmp_path, profile=(4, 8, 16))
    x = faces(2)
    with open_engine(engine) as rt:
        np.testing.assert_allclose(rt(x), onnx_embeddings(onnx_path, x), rtol=1e-5, atol=1e-6)


def test_defect_4_failed_execute_is_an_error(tmp_path, machine):
    """Defect 4: the boolean of execute_async_v3 was never checked: a failed execution returned the old buffer."""
    state = machine()
    _, engine = build(tmp_path)
    with open_engine(engine) as rt:
        rt(faces(3))
        state.fail_execute = True
        with pytest.raises(EdgekdError, match="execute_async_v3.*failed"):
            rt(faces(3, seed=1))


def test_defect_4_binding_api_v2_checks_its_booleans(tmp_path, one_machine, monkeypatch):
    """Defect 4 on the binding-index API: set_binding_shape / execute_async_v2 booleans are checked too. The runner
    takes that API where the context has no execute_async_v3 (TensorRT before 8.5): the TensorRT 8.6 double, which
    has both, with execute_async_v3 taken away (with it, 8.6 runs the named-tensor API, as
    test_defect_4_failed_execute_is_an_error checks)."""
    state = one_machine(trt_version="8.6.1")
    import tensorrt  # the double just installed

    onnx_path, engine = build(tmp_path, profile=(4, 8, 16), api="builder-flags")
    monkeypatch.delattr(tensorrt.IExecutionContext, "execute_async_v3")
    with open_engine(engine) as rt:
        assert rt.meta["binding_api"] == "v2"
        x = faces(3)
        np.testing.assert_allclose(rt(x), onnx_embeddings(onnx_path, x), rtol=1e-5, atol=1e-6)
        assert state.executions == [(4, 3, 112, 112)]  # padded to the profile minimum by set_binding_shape
        state.fail_execute = True
        with pytest.raises(EdgekdError, match="execute_async_v2 failed"):
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
        assert rt(faces(11)).shape == (11, 8)
    with pytest.raises(EdgekdError, match="DLA.*fp16 or int8"):
        build(tmp_path, "fp32", dla_core=0, name="f", api="builder-flags")


def test_defect_6_cuda_python_uses_pinned_memory_and_frees_events(tmp_path, machine):
    """Defect 6: the cuda-python backend copied from pageable numpy memory (so "async" copies were synchronous) and
    leaked two CUDA events per device_time_ms call."""
    state = machine(hide=("pycuda",))
    _, engine = build(tmp_path)
    rt = open_engine(engine)
    x = faces(4)
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
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    typed = tiny_onnx(tmp_path / "m.fp16.onnx", precision="fp16")
    build_and_compare_with_onnx(tmp_path, onnx_path, typed)


def test_defect_10_device_time_covers_every_chunk(tmp_path, machine):
    """Defect 10: above the engine's maximum batch, host latency covered every chunk but device time only the first."""
    machine()
    import _fakegpu

    _, engine = build(tmp_path, profile=(1, 8, 8))
    with open_engine(engine) as rt:
        assert rt.device_time_ms(faces(20)) == pytest.approx(20 * _fakegpu.MS_PER_IMAGE)


@pytest.mark.parametrize("content", ["3", "null", "[1, 2]", '"text"'])
@pytest.mark.parametrize("command", ["eval", "bench"])
def test_sidecar_that_is_not_an_object_is_one_line(tmp_path, one_machine, tiny_lfw, content, command):
    """Issue 10 item 1: a sidecar holding a number or null was a TypeError traceback in eval/bench --engine."""
    from click.testing import CliRunner

    from edgekd.cli import cli

    one_machine()
    _, engine = build(tmp_path)
    (tmp_path / "m.fp32.engine.json").write_text(content)
    args = {"eval": ["eval", "--engine", str(engine), "--data", str(tiny_lfw(folds=1, per=2)),
                     "--quiet"],
            "bench": ["bench", "--engine", str(engine), "-b", "1", "-n", "1", "--min-time", "0", "--quiet"]}[command]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1, res.output
    assert res.output.startswith("Error: ") and len(res.output.strip().splitlines()) == 1, res.output
    assert "m.fp32.engine.json" in res.output and "Traceback" not in res.output


def test_fixed_batch_engine_pads_and_chunks(tmp_path, machine):
    """A profile with min = opt = max (as DLA builds are): TensorRT keeps -1 in the engine's input shape, so the
    shape is still set per chunk; short chunks are zero-padded to the batch and every chunk runs (6 = 4 + 2 padded).
    The doubles once reported such an engine as static with the shape preset, so this path went untested."""
    state = machine()
    onnx_path, engine = build(tmp_path, profile=(4, 4, 4))
    x = faces(6)
    with open_engine(engine) as rt:
        np.testing.assert_allclose(rt(x), onnx_embeddings(onnx_path, x), rtol=1e-5, atol=1e-6)
    assert state.executions == [(4, 3, 112, 112), (4, 3, 112, 112)]
    import tensorrt

    engine_shape = tensorrt.Runtime(tensorrt.Logger()).deserialize_cuda_engine(engine.read_bytes()).get_tensor_shape("input")
    assert engine_shape[0] == -1


# ---- issue 19: the TensorRT path against the real APIs ---------------------------------------------------------

def test_item_3_cuda13_packages_on_a_cuda12_driver_is_one_line_naming_the_cu12_extra(one_machine):
    """Item 3: cuda-python 13 (CUDA 13 runtime) on a CUDA 12 driver (R550, JetPack 6): every device call returns
    cudaErrorInsufficientDriver; the error named neither the versions nor the CUDA 12 packages to install."""
    from edgekd.runtime.tensorrt.cuda import open_cuda

    one_machine(hide=("pycuda",), cuda_runtime=13000, cuda_driver=12040)
    with pytest.raises(EdgekdError) as e:
        open_cuda(0)
    msg = str(e.value)
    assert "\n" not in msg and "13.0" in msg and "12.4" in msg and "trt-cu12" in msg and "cuda-python>=12,<13" in msg


def test_item_3_extras_pin_cuda_12_or_13_and_the_hint_names_them():
    """Item 3: `tensorrt>=8.6` + `cuda-python>=12` resolved to TensorRT 11 / cuda-python 13 (CUDA 13 drivers only)."""
    import re
    from pathlib import Path

    from edgekd.runtime.tensorrt import INSTALL_HINT

    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()  # no tomllib: Python 3.10
    extras = {m["name"]: m["reqs"] for m in re.finditer(r"(?m)^(?P<name>[\w-]+) = \[(?P<reqs>[^\]]*)\]", text)}
    cu12, cu13 = extras["trt-cu12"], extras["trt-cu13"]
    assert "tensorrt-cu12" in cu12 and "cuda-python>=12" in cu12 and "<13" in cu12
    assert "tensorrt-cu13" in cu13 and "cuda-python>=13" in cu13 and "<14" in cu13
    assert "trt" not in extras
    assert "edgekd[trt-cu12]" in INSTALL_HINT and "edgekd[trt-cu13]" in INSTALL_HINT and "<13" in INSTALL_HINT


def test_item_4_timing_cache_from_another_version_is_replaced(tmp_path, machine):
    """Item 4: set_timing_cache's False (a cache of another TensorRT version or GPU) was discarded, and then
    get_timing_cache() was None: a traceback after a finished build. Now a fresh cache is used and written."""
    machine()
    import _fakegpu
    import tensorrt

    tc = tmp_path / "tc"
    tc.write_bytes(b"FAKE-TIMING-CACHE 7.0.0|another GPU")
    from edgekd.export.tensorrt_build import build_engine

    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    side = build_engine(onnx_path, tmp_path / "m.fp32.engine", "fp32", (1, 8, 16), timing_cache=tc)
    assert side["timing_cache"] == "replaced (made by another TensorRT version or GPU)"
    assert tc.read_bytes() == f"FAKE-TIMING-CACHE {tensorrt.__version__}|{_fakegpu.state().cuda_devices()[0]['name']}".encode()
    assert _fakegpu.state().builds[-1]["timing_cache"]
    side = build_engine(onnx_path, tmp_path / "m.fp32.engine", "fp32", (1, 8, 16), timing_cache=tc)
    assert side["timing_cache"] == "reused"


def test_item_5_execution_context_none_is_one_line(tmp_path, machine):
    """Item 5: create_execution_context() returns None when activation memory cannot be allocated (an 8 GB Orin
    Nano); the runtime met it as an AttributeError."""
    state = machine()
    _, engine = build(tmp_path)
    state.fail_context = True
    with pytest.raises(EdgekdError, match="execution context") as e:
        open_engine(engine)
    assert "\n" not in str(e.value) and not state.memory


def test_set_tensor_address_refused_is_one_line(tmp_path, machine):
    state = machine()
    _, engine = build(tmp_path)
    state.refuse_address = True
    with pytest.raises(EdgekdError, match="set_tensor_address"):
        open_engine(engine)


def test_item_7_engine_opens_on_cuda_n_and_checks_that_gpu(tmp_path, machine):
    """Item 7: --device cuda:N was ignored: the engine ran on device 0 and its sidecar was checked against it."""
    machine()
    from edgekd.runtime import open_artifact
    from edgekd.runtime.tensorrt.sidecar import sidecar_path

    _, engine = build(tmp_path)  # built on CUDA device 0, the RTX 4090
    with pytest.raises(EdgekdError, match="built for NVIDIA GeForce RTX 4090.*RTX A2000"):
        open_artifact(engine, device="cuda:1")
    side = json.loads(sidecar_path(engine).read_text())
    sidecar_path(engine).write_text(json.dumps({**side, "gpu_name": "NVIDIA RTX A2000", "compute_capability": "8.6"}))
    with open_artifact(engine, device="cuda:1") as rt:
        assert rt(faces(2)).shape == (2, 8)
    with pytest.raises(EdgekdError, match="RTX A2000.*RTX 4090"):
        open_artifact(engine, device="cuda:0")


def test_item_9_dla_core_chosen_at_load(tmp_path, one_machine):
    """Item 9: Runtime.DLA_core chooses where a deserialised DLA engine runs; the runtime fixed it to the build core."""
    state = one_machine(trt_version="8.6.1", dla_cores=2, profile="jetson")
    from edgekd.runtime import open_artifact

    _, engine = build(tmp_path, "fp16", dla_core=0, api="builder-flags")
    with open_artifact(engine, device="dla:1") as rt:
        rt(faces(2))
        assert rt.meta["dla_core"] == 1
    with open_artifact(engine) as rt:
        rt(faces(2))
    assert state.dla_runs == [1, 0]
    with pytest.raises(EdgekdError, match="DLA core 2.*2 DLA core"):
        open_artifact(engine, device="dla:2")


@pytest.mark.parametrize("version,opset,ok", [("8.6.1", 18, False), ("8.6.1", 17, True), ("10.3.0", 20, True),
                                               ("10.3.0", 21, False), ("11.4.0", 21, True)])
def test_item_10_opset_range_per_tensorrt_version(tmp_path, one_machine, version, opset, ok):
    """Item 10: every version was checked against TensorRT 10.0's range (9-20); 8.6 (JetPack 6.0) parses <= 17."""
    state = one_machine(trt_version=version)
    from edgekd.export.tensorrt_build import build_engine
    from edgekd.export.trt_ops import check_trt_ops

    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    m = graph_load(onnx_path)
    m.opset_import[0].version = opset
    import onnx

    onnx.save(m, onnx_path)
    assert check_trt_ops(m, version)["ok"] == ok
    if ok:
        build_engine(onnx_path, tmp_path / "m.engine", "fp32", (1, 8, 16))
    else:
        with pytest.raises(EdgekdError, match=f"opset {opset} outside TensorRT {version[:3]}"):
            build_engine(onnx_path, tmp_path / "m.engine", "fp32", (1, 8, 16))
        assert not state.builds


def graph_load(path):
    from edgekd.export import graph

    return graph.load(path)


def test_calibration_cache_hit_skips_get_batch_and_cache_is_written_from_a_buffer(tmp_path, one_machine):
    """The calibrator contract of TensorRT 8.6/10.x: read_calibration_cache first (a hit never calls get_batch);
    write_calibration_cache receives a buffer."""
    state = one_machine(trt_version="8.6.1")
    from edgekd.export.calib import make_calib, open_calib
    from edgekd.export.tensorrt_build import build_engine
    from edgekd.preprocess import ARCFACE

    make_calib("synthetic:4x2", tmp_path / "calib", n=8, progress=False)
    calib = open_calib(tmp_path / "calib", ARCFACE)
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    cache = tmp_path / "c.cache"
    for _ in range(2):
        build_engine(onnx_path, tmp_path / "m.int8.engine", "int8", calib=calib, calib_cache=cache, api="builder-flags")
    assert state.calibration == ["calibrated:1", "cache-hit"] and cache.read_bytes().startswith(b"TRT-861-")
    assert [b["header"]["int8_scales"] for b in state.builds] == ["calibrated", "calibration-cache"]


def test_item_6_unified_memory_while_tegrastats_block_buffers(tmp_path, one_machine, monkeypatch):
    """Item 6: with tegrastats running, the /proc/meminfo sampling was off; piped, tegrastats block-buffers, so a
    short run got no line at all and reported unified memory null. Now /proc/meminfo is always sampled and the
    reader thread is joined before result()."""
    import os
    import stat
    import sys

    from edgekd.bench import memory

    one_machine(profile="jetson")
    fake = tmp_path / "bin" / "tegrastats"
    fake.parent.mkdir()
    fake.write_text(f"#!{sys.executable}\nimport sys, time\nsys.stdout.write('RAM 2345/7764MB\\n' * 3)\n"
                    "time.sleep(60)\n")  # buffered, never flushed: what a piped C program's stdio does
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(memory, "is_jetson", lambda: True)
    with memory.MemorySampler(interval_s=0.01) as sampler:
        sampler.sample()
    mem = sampler.result()
    assert mem["unified_bytes"] is not None and "/proc/meminfo" in mem["unified_source"]
    assert sampler._tegra_thread is not None and not sampler._tegra_thread.is_alive()


def _pnet_like_onnx(path):
    """A detector-stage-like network: N x 3 x H x W (H, W dynamic) -> two outputs (2 and 4 channels)."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    w1 = helper.make_tensor("w1", TensorProto.FLOAT, [4, 3, 3, 3], rng.normal(size=108).astype(np.float32))
    wp = helper.make_tensor("wp", TensorProto.FLOAT, [2, 4, 1, 1], rng.normal(size=8).astype(np.float32))
    wb = helper.make_tensor("wb", TensorProto.FLOAT, [4, 4, 1, 1], rng.normal(size=16).astype(np.float32))
    nodes = [helper.make_node("Conv", ["input", "w1"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "wp"], ["logits"], name="prob_conv"),
             helper.make_node("Softmax", ["logits"], ["prob"], name="softmax", axis=1),
             helper.make_node("Conv", ["r", "wb"], ["bbox"], name="bbox_conv")]
    g = helper.make_graph(nodes, "pnet", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "h", "w"])],
                          [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 2, "oh", "ow"]),
                           helper.make_tensor_value_info("bbox", TensorProto.FLOAT, [1, 4, "oh", "ow"])], [w1, wp, wb])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def test_engine_runner_runs_any_network_with_dynamic_shapes(tmp_path, machine):
    """The generic runner (for detector stages): several outputs, dynamic H and W set per call, buffers growing."""
    import onnxruntime as ort

    from edgekd.export.tensorrt_build import build_network_engine
    from edgekd.runtime.tensorrt.engine import EngineRunner

    state = machine()
    onnx_path = _pnet_like_onnx(tmp_path / "pnet.onnx")
    engine = tmp_path / "pnet.fp32.engine"
    with pytest.raises(EdgekdError, match="missing input"):
        build_network_engine(onnx_path, engine, {})
    side = build_network_engine(onnx_path, engine, {"input": ((1, 3, 12, 12), (1, 3, 24, 32), (1, 3, 64, 64))})
    assert side["profile"] == {"input": {"min": [1, 3, 12, 12], "opt": [1, 3, 24, 32], "max": [1, 3, 64, 64]}}
    ref = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    with EngineRunner(engine) as run:
        assert [t["name"] for t in run.inputs] == ["input"] and [t["name"] for t in run.outputs] == ["prob", "bbox"]
        for h, w in ((20, 30), (64, 48), (12, 12)):
            x = np.random.default_rng(h).normal(size=(1, 3, h, w)).astype(np.float32)
            got = run({"input": x})
            want = dict(zip(["prob", "bbox"], ref.run(["prob", "bbox"], {"input": x})))
            for k in want:
                np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)
        with pytest.raises(EdgekdError, match="outside the engine's profile"):
            run({"input": np.zeros((1, 3, 65, 20), np.float32)})
    assert not state.memory


def test_half_precision_io_tensors_are_converted(tmp_path, machine):
    """I/O dtypes follow the graph (the doubles once said FLOAT for every tensor): an engine with float16 input and
    output takes float32 faces and returns float32 embeddings."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from edgekd.export import graph

    machine()
    src = tiny_onnx(tmp_path / "m.onnx")
    half = convert_float_to_float16(graph.load(src), keep_io_types=False)
    graph.set_metadata(half, {**graph.read_metadata(graph.load(src)), "precision": "fp16"})
    graph.save(half, tmp_path / "h.fp16.onnx")
    from edgekd.export.tensorrt_build import build_engine

    build_engine(tmp_path / "h.fp16.onnx", tmp_path / "h.fp16.engine", "fp16", (1, 8, 16))
    x = faces(3)
    with open_engine(tmp_path / "h.fp16.engine") as rt:
        y = rt(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, onnx_embeddings(src, x), rtol=2e-2, atol=2e-3)
