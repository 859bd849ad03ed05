"""Shared fixtures. Real-data tests read ../shared/data (or $EDGEKD_SHARED_DATA) and skip when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
