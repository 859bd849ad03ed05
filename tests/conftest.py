"""Shared fixtures. Real-data tests read ../shared/data (or $EDGEKD_SHARED_DATA) and skip when it is absent.
Tiny models, ONNX graphs and LFW-format folders come from tests/tiny_models.py; the simulated GPU machine (the strict
doubles of tests/doubles/, the only fake TensorRT) from the `one_machine` and `machine` fixtures below."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import _trt_doubles
from edgekd.paths import shared_data_dir

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_dir()
    if root is None:
        pytest.skip("shared real data not found (set EDGEKD_SHARED_DATA or place it at ../shared/data)")
    return root


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread: on a shared, loaded 2-core box OpenMP barriers make tiny ops 100x slower with two."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _machine(monkeypatch, trt_version):
    installed = []

    def install(**machine):
        installed.append(True)
        return _trt_doubles.install(monkeypatch, **{"trt_version": trt_version, **machine})

    yield install
    if installed:
        _trt_doubles.uninstall()


@pytest.fixture
def one_machine(monkeypatch):
    """The strict doubles of tests/doubles/ in place of tensorrt, pycuda, cuda-python and pynvml. Call it with the
    simulated machine's settings (_fakegpu.State: trt_version, 10.3.0 unless given; profile, dla_cores, ...;
    hide=("pycuda",) makes a module look uninstalled) to get that machine's state; call again to switch machines.
    Afterwards pycuda's context stack must be empty (its exit contract), and the doubles are removed."""
    yield from _machine(monkeypatch, "10.3.0")


@pytest.fixture(params=_trt_doubles.GENERATIONS)
def machine(monkeypatch, request):
    """As `one_machine`, once per TensorRT generation double (8.6, 10.x, 11.x: tests/doubles/tensorrt/_v*.py); the
    generation's version is the default trt_version."""
    yield from _machine(monkeypatch, request.param)


@pytest.fixture(scope="session")
def tiny_lfw(tmp_path_factory):
    """`tiny_lfw(folds=2, per=3)`: the pairs.txt of a synthetic LFW-format folder (tiny_models.make_lfw), made once
    per shape and session; tests only read it."""
    from tiny_models import make_lfw

    made = {}

    def get(folds: int = 2, per: int = 3) -> Path:
        if (folds, per) not in made:
            made[folds, per] = make_lfw(tmp_path_factory.mktemp(f"lfw{folds}x{per}"), folds=folds, per=per)
        return made[folds, per]

    return get


@pytest.fixture(scope="session")
def lfw(tiny_lfw) -> Path:
    """2 folds x 3 identities (12 pairs, 13 images)."""
    return tiny_lfw()


@pytest.fixture(scope="session")
def pool_onnx(tmp_path_factory) -> Path:
    """tiny_model("pool") (112x112, 12-d average colours) as ONNX with its label and preprocessing as edgekd
    metadata: separates make_lfw's identities, runs in milliseconds."""
    from tiny_models import export_onnx, tiny_model

    model = tiny_model("pool")
    meta = {"edgekd.model": "pool", "edgekd.method": "vanilla", "edgekd.precision": "fp32",
            "edgekd.preprocess": json.dumps(model.preprocess.to_dict())}
    return export_onnx(tmp_path_factory.mktemp("onnx") / "pool.onnx", model=model, size=(112, 112), metadata=meta)


def pytest_collection_modifyitems(config, items):
    """Skip GPU / TensorRT tests cleanly where the hardware or the package is absent."""
    import importlib.util

    has_trt = importlib.util.find_spec("tensorrt") is not None
    has_cuda = False
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        pass
    for item in items:
        if "tensorrt" in item.keywords and not has_trt:
            item.add_marker(pytest.mark.skip(reason="tensorrt is not installed (pip install edgekd[trt-cu12] / [trt-cu13], or JetPack)"))
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="no CUDA device"))
