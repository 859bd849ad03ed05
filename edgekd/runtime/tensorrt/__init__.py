"""TensorRT for deployed face models, shared by `edgekd build` (export) and the engine runtime.

numpy + tensorrt + one CUDA binding only, never torch or click: this is what runs on a bare JetPack install.
Layered as in Polygraphy (tools/Polygraphy/polygraphy/backend/trt/): the tensorrt import and its install hint here,
`cuda` (one interface over pycuda and cuda-python), `sidecar` (the build record: write, read, check; the one
definition of GPU identity), `bindings` (binding-API generation and I/O description), `loader` (sidecar check,
then deserialise), `runner` (TensorRTRuntime: a face model as an edgekd Runtime) and `engine` (EngineRunner: any
network, named arrays in and out, e.g. a detector's stages). Nothing imports tensorrt or a CUDA binding at import
time.
"""

from __future__ import annotations

import importlib.util

from edgekd.errors import EdgekdError

INSTALL_HINT = ("on x86-64 pip install edgekd[trt-cu12] for a CUDA 12 driver (525-575) or edgekd[trt-cu13] for "
                "R580+; on a Jetson (JetPack 6, CUDA 12) JetPack's python3-libnvinfer (venv with "
                "--system-site-packages) + pip install 'cuda-python>=12,<13'")


def import_tensorrt():
    """The tensorrt module, or a one-line error naming the install."""
    try:
        import tensorrt
    except ImportError as e:
        raise EdgekdError(f"the tensorrt Python package is not installed ({INSTALL_HINT})") from e
    return tensorrt


def tensorrt_installed() -> bool:
    """Whether `import tensorrt` would find a module, without importing it."""
    try:
        return importlib.util.find_spec("tensorrt") is not None
    except (ImportError, ValueError):  # a None entry in sys.modules (tests) or a broken package
        return False


def fail_unavailable(trt, what: str):
    """One wording for every feature missing from the installed TensorRT (Polygraphy's `fail_unavailable`)."""
    raise EdgekdError(f"{what} is not available in TensorRT {getattr(trt, '__version__', '?')}")
