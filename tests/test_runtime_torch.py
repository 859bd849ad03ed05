"""TorchRuntime on CPU (what runs here); the CUDA paths (graphs, events) are marked gpu."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from edgekd.errors import EdgekdError
from edgekd.models import complexity
from edgekd.runtime import open_artifact
from edgekd.runtime.torch_runtime import TorchRuntime
from tiny_models import tiny_class

TinyFace = tiny_class("small")  # tiny_models "small": 16x16 conv-BN-ReLU-linear, 8-d, seeded
PRE = TinyFace.preprocess


def batch(n=5, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 3, 16, 16)).astype(np.float32)


def test_matches_module_and_interface():
    m = TinyFace().eval()
    rt = TorchRuntime(module=m)
    x = batch()
    with torch.no_grad():
        want = m(torch.from_numpy(x)).numpy()
    y = rt(x)
    assert y.dtype == np.float32 and y.shape == (5, 8)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    assert rt.preprocess == PRE and rt.embedding_size == 8 and rt.device == "cpu" and rt.precision == "fp32"
    assert rt.device_time_ms(x) is None  # no CUDA events on CPU
    assert rt.describe()["runtime"] == "torch"


def test_bf16_and_channels_last_agree():
    x = batch()
    ref = TorchRuntime(module=TinyFace())(x)
    cl = TorchRuntime(module=TinyFace(), channels_last=True)(x)
    np.testing.assert_allclose(cl, ref, rtol=1e-4, atol=1e-5)
    bf = TorchRuntime(module=TinyFace(), precision="bf16")(x)
    cos = np.sum(bf * ref, 1) / np.linalg.norm(bf, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > 0.99 and bf.dtype == np.float32


def test_every_precision_the_cli_offers_has_a_dtype():
    from edgekd.runtime.base import TORCH_PRECISIONS
    from edgekd.runtime.torch_runtime import DTYPES

    assert set(DTYPES) == set(TORCH_PRECISIONS)


def test_bad_options_and_input():
    with pytest.raises(EdgekdError, match="precision"):
        TorchRuntime(module=TinyFace(), precision="int4")
    with pytest.raises(EdgekdError, match="16 x 16"):
        TorchRuntime(module=TinyFace())(np.zeros((2, 3, 112, 112), np.float32))
    if not torch.cuda.is_available():
        with pytest.raises(EdgekdError, match="CUDA"):
            TorchRuntime(module=TinyFace(), device="cuda")
    with pytest.raises(EdgekdError, match="cuda"):
        TorchRuntime(module=TinyFace(), cuda_graph=True)


@pytest.mark.parametrize("backend", ["torch", "auto"])  # auto on CPU: ONNX Runtime over an in-memory export
def test_checkpoint_via_open_artifact(tmp_path, backend):
    from edgekd.models import create_model, save_checkpoint

    m = create_model("mobilefacenet", embedding_size=32).eval()
    save_checkpoint(tmp_path / "m.pt", m, "mobilefacenet", {"embedding_size": 32},
                    extra={"meta": {"method": "vanilla"}})
    rt = open_artifact(tmp_path / "m.pt", device="cpu", checkpoint_backend=backend)
    x = np.random.default_rng(0).normal(size=(2, 3, 112, 112)).astype(np.float32)
    with torch.no_grad():
        want = m(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(rt(x), want, rtol=1e-4, atol=1e-5)
    assert rt.meta["model"] == "mobilefacenet" and rt.meta["method"] == "vanilla"
    assert rt.embedding_size == 32 and len(rt.meta["weights_sha256"]) == 64
    assert rt.name == "torch" and rt.artifact == tmp_path / "m.pt" and rt.meta["gflops"] > 0
    assert ("executed_by" in rt.meta) == (backend == "auto")
    assert {k: rt.meta[k] for k in ("params", "gflops")} == {k: complexity(m)[k] for k in ("params", "gflops")}


def test_opening_a_default_build_counts_nothing(tmp_path):
    """A registered model's default build takes its cfg's figures: running the flop counter imports torch._dynamo,
    seconds of fixed cost for every `edgekd eval --weights` (measured in a fresh process, as a user runs it)."""
    from edgekd.models import create_model, save_checkpoint
    from edgekd.models.flops import count_complexity

    m = create_model("mobilefacenet").eval()
    save_checkpoint(tmp_path / "m.pt", m, "mobilefacenet", {})
    code = ("import json, sys; from edgekd.runtime import open_artifact; rt = open_artifact(sys.argv[1]); "
            "print(json.dumps({'params': rt.meta['params'], 'gflops': rt.meta['gflops'], "
            "'dynamo': 'torch._dynamo' in sys.modules, 'executed_by': rt.meta.get('executed_by')}))")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.pt")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["dynamo"] is False and got["executed_by"]  # the ONNX Runtime twin, as `edgekd eval` opens it
    want = count_complexity(m)
    assert (got["params"], got["gflops"]) == (want["params"], want["gflops"])


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_graph_matches_eager(precision):
    x = batch(8)
    eager = TorchRuntime(module=TinyFace(), device="cuda", precision=precision)
    graph = TorchRuntime(module=TinyFace(), device="cuda", precision=precision, cuda_graph=True)
    want = eager(x)
    np.testing.assert_allclose(graph(x), want, rtol=1e-2, atol=1e-3)
    np.testing.assert_allclose(graph(x[:3]), eager(x[:3]), rtol=1e-2, atol=1e-3)  # second captured size
    np.testing.assert_allclose(graph(x), want, rtol=1e-2, atol=1e-3)  # replay reuses the static buffers
    assert graph.device_time_ms(x) > 0 and eager.device_time_ms(x) > 0


@pytest.mark.slow
def test_compile_on_cpu():
    x = batch()
    np.testing.assert_allclose(TorchRuntime(module=TinyFace(), compile=True)(x), TorchRuntime(module=TinyFace())(x),
                               rtol=1e-4, atol=1e-5)


def test_checkpoint_falls_back_to_pytorch_when_the_onnx_twin_fails_parity(tmp_path, monkeypatch):
    from edgekd.errors import EdgekdError
    from edgekd.export import parity
    from edgekd.models import create_model, save_checkpoint

    m = create_model("mobilefacenet", embedding_size=32).eval()
    save_checkpoint(tmp_path / "m.pt", m, "mobilefacenet", {"embedding_size": 32})

    def differs(*a, **k):
        raise EdgekdError("model.onnx: ONNX differs from PyTorch")

    monkeypatch.setattr(parity, "check_parity", differs)  # after the export, which ran on the runtime's own module
    with pytest.warns(UserWarning, match="PyTorch eager"):
        rt = open_artifact(tmp_path / "m.pt", device="cpu")
    assert type(rt).__name__ == "TorchRuntime" and "executed_by" not in rt.meta
    x = np.random.default_rng(0).normal(size=(2, 3, 112, 112)).astype(np.float32)
    with torch.no_grad():
        want = m(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(rt(x), want, rtol=1e-4, atol=1e-5)  # the exported module still computes the same


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_issue19_item_8_reduced_precision_on_a_model_built_with_fp16_true(precision):
    """Issue 19 item 8: a model built with fp16=True (mixed-precision training) casts the feature map back to float32
    before forward_head; cast whole to bf16/fp16 by the runtime, that head met a float32 input (dtype error)."""
    from edgekd.models import create_model

    m = create_model("mobilefacenet", fp16=True, embedding_size=16)
    ref = TorchRuntime(module=create_model("mobilefacenet", embedding_size=16).eval())
    ref.module.load_state_dict(m.state_dict())
    x = np.random.default_rng(0).normal(size=(2, 3, 112, 112)).astype(np.float32)
    want = ref(x)
    try:
        y = TorchRuntime(module=m, precision=precision)(x)
    except RuntimeError as e:
        if precision == "fp16" and "not implemented for 'Half'" in str(e):
            pytest.skip("this torch build has no FP16 CPU kernels")
        raise
    cos = np.sum(y * want, 1) / np.linalg.norm(y, axis=1) / np.linalg.norm(want, axis=1)
    assert y.dtype == np.float32 and cos.min() > 0.98


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_checkpoint_with_a_non_finite_weight_is_refused_whatever_its_dtype(tmp_path, dtype, bad):
    from edgekd.models import create_model, save_checkpoint

    m = create_model("mobilefacenet", embedding_size=16).eval().to(dtype)
    with torch.no_grad():
        m.features.layers[2].weight[3, 5] = bad  # one value of the last linear layer
    save_checkpoint(tmp_path / "m.pt", m, "mobilefacenet", {"embedding_size": 16})
    with pytest.raises(EdgekdError, match="NaN or infinite values .*1 tensors, first features.layers.2.weight"):
        open_artifact(tmp_path / "m.pt", device="cpu")
