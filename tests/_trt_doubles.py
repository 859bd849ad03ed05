"""Put the strict doubles of tests/doubles/ in place of the real TensorRT / CUDA / NVML modules, in process (the
`one_machine` and `machine` fixtures of conftest.py call install/uninstall) or for a subprocess (subprocess_env).
Tiny ONNX files to build engines from: tests/tiny_models.py."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

DOUBLES = Path(__file__).parent / "doubles"
MODULES = ("tensorrt", "pycuda", "cuda", "pynvml", "_fakegpu")
GENERATIONS = ("8.6.1", "10.3.0", "11.4.0")  # one TensorRT double per API generation: tests/doubles/tensorrt/_v*.py


def _purge() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in MODULES:
            del sys.modules[name]


def install(monkeypatch, hide=(), **machine):
    """Import the doubles instead of the real modules; `machine` configures _fakegpu.State; `hide`: modules that
    must look uninstalled (e.g. "pycuda" to get the cuda-python backend). Returns the simulated machine."""
    _purge()
    # not monkeypatch.syspath_prepend: its undo restores the whole sys.path, dropping entries that imports made
    # meanwhile (onnxruntime.transformers appends its own folder, and its fusion_utils import then fails)
    if str(DOUBLES) not in sys.path:
        sys.path.insert(0, str(DOUBLES))
    import _fakegpu

    state = _fakegpu.configure(**machine)
    for name in hide:
        monkeypatch.setitem(sys.modules, name, None)
    return state


def uninstall() -> None:
    """Check pycuda's exit contract (empty context stack) and drop the doubles from sys.modules."""
    driver = sys.modules.get("pycuda.driver")
    leaked = list(driver.context_stack) if driver is not None else []
    if driver is not None:
        driver.context_stack.clear()
    _purge()
    while str(DOUBLES) in sys.path:
        sys.path.remove(str(DOUBLES))
    assert not leaked, f"pycuda context stack not empty at the end of the test ({len(leaked)} context(s))"


def subprocess_env(abort_on_leak: bool = True, **machine) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(DOUBLES), str(Path(__file__).parent),
                                                         os.environ.get("PYTHONPATH", "")]),
               EDGEKD_DOUBLES=json.dumps(machine))
    if abort_on_leak:
        env["EDGEKD_DOUBLES_ABORT"] = "1"
    return env


def run_without_torch(args: list[str], **machine):
    """`edgekd ARGS` in a subprocess where torch cannot be imported (the Jetson install), on the doubles of
    `machine`; the run must succeed without importing torch or matplotlib. Returns the CompletedProcess."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None
        from edgekd.cli import cli
        cli.main({[str(a) for a in args]!r}, standalone_mode=False)
        loaded = [m for m, v in sys.modules.items() if m.split(".")[0] in ("torch", "matplotlib") and v is not None]
        assert not loaded, loaded
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900,
                         env=subprocess_env(**machine))
    assert res.returncode == 0, res.stderr[-3000:]
    return res
