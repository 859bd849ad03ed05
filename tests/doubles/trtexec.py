"""Double of trtexec's INT8 behaviour: which scales an engine built from a printed command line would get.

- `--int8` on an ONNX graph without Q/DQ nodes and no readable `--calib=<cache>`: trtexec sets placeholder dynamic
  ranges (a missing cache file means its random-data calibrator), "only used to test the performance"
  (NVIDIA/TensorRT#2322): a fast engine with meaningless embeddings.
- `--int8` on a Q/DQ graph, or `--stronglyTyped` on one: the graph's own scales (explicit quantization).
- `--stronglyTyped` with `--fp16`/`--int8`: refused (precision comes from the graph).
- TensorRT 11.x: precision flags are gone with BuilderFlag.FP16/INT8 (10.x -> 11.x migration guide); `--fp16`,
  `--int8`, `--calib` are unknown options there.
"""

from __future__ import annotations

import shlex
from pathlib import Path


def run(command: str, trt_major: int) -> dict:
    """{"ok", "error", "int8_scales": None | "qdq" | "calibration-cache" | "placeholder"} for one command line."""
    import onnx

    argv = shlex.split(command)
    if not argv or argv[0] != "trtexec":
        return {"ok": False, "error": "not a trtexec command", "int8_scales": None}
    opts = {}
    for a in argv[1:]:
        key, _, value = a.partition("=")
        opts[key] = value
    if trt_major >= 11 and {"--fp16", "--int8", "--calib"} & set(opts):
        return {"ok": False, "error": "unknown option (precision flags removed in TensorRT 11)", "int8_scales": None}
    if "--stronglyTyped" in opts and {"--fp16", "--int8"} & set(opts):
        return {"ok": False, "error": "--stronglyTyped cannot be combined with precision flags", "int8_scales": None}
    model = onnx.load(opts["--onnx"])
    qdq = any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    scales = None
    if qdq and ("--int8" in opts or "--stronglyTyped" in opts or trt_major >= 11):
        scales = "qdq"
    elif "--int8" in opts:
        cache = opts.get("--calib")
        scales = "calibration-cache" if cache and Path(cache).is_file() else "placeholder"
    return {"ok": True, "error": None, "int8_scales": scales}
