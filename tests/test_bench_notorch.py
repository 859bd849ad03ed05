"""The deployed path: `edgekd bench --onnx` with torch blocked (sys.modules['torch'] = None), CLI included."""

from __future__ import annotations

import json
import subprocess
import sys

from tiny_models import tiny_onnx

BLOCK = "import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None\n"


def test_onnx_bench_cli_without_torch(tmp_path):
    path = tiny_onnx(tmp_path / "tiny.onnx", kind="conv")
    out = tmp_path / "bench.json"
    code = BLOCK + (
        "from edgekd.cli import main\n"
        f"sys.argv = ['edgekd', 'bench', '--onnx', {str(path)!r}, '-b', '1,2', '-n', '3', '--warmup', '1',"
        f" '--min-time', '0', '-q', '--out', {str(out)!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "latency ms" in r.stdout and "GFLOPs" in r.stdout
    data = json.loads(out.read_text())
    assert data["kind"] == "bench" and data["runtime"] == "onnxruntime"
    assert data["env"]["packages"]["torch"]  # version read from metadata, not by importing


def test_bench_library_imports_neither_torch_nor_click():
    code = ("import sys\nimport edgekd.bench, edgekd.bench.video, edgekd.bench.complexity, edgekd.report\n"
            "bad = [m for m in ('torch', 'click') if m in sys.modules]\nassert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]


def test_bench_cli_errors_one_line(tmp_path):
    code = ("from edgekd.cli import main\nimport sys\n"
            f"sys.argv = ['edgekd', 'bench', '--onnx', {str(tmp_path / 'missing.onnx')!r}]\nmain()\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.strip().startswith("Error:") and "missing.onnx" in r.stderr
    assert "Traceback" not in r.stderr
