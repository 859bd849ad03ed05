"""The trtexec command line equivalent to a `build_engine` call, for hosts with trtexec but no Python bindings.

Flag names follow trtexec's --help of TensorRT 8.6/10.x (--memPoolSize=workspace:<MiB>M, --stronglyTyped since 9.x).
INT8 only from a Q/DQ graph: `--int8` without Q/DQ nodes and without a calibration cache makes trtexec use
placeholder scales ("only used to test the performance", NVIDIA/TensorRT#2322), so no --calib line is ever formed.
"""

from __future__ import annotations

import shlex

from edgekd.errors import EdgekdError


def trtexec_command(onnx, engine, input_name: str, input_size: tuple[int, int], precision: str,
                    profile: tuple[int, int, int] = (1, 8, 64), workspace_mib: int = 2048, timing_cache=None,
                    dla_core: int | None = None, strongly_typed: bool = False, qdq: bool = False) -> str:
    """`qdq`: `onnx` is a Q/DQ graph (required for int8 with builder flags: the graph carries the scales)."""
    if precision == "int8" and not (strongly_typed or qdq):
        raise EdgekdError(f"{onnx}: an INT8 trtexec line needs the Q/DQ ONNX (without it trtexec uses placeholder "
                          "scales)")
    h, w = input_size
    if dla_core is not None:  # DLA needs a static shape, as build_engine does: min = opt = max
        profile = (profile[1],) * 3
    shape = lambda b: f"{input_name}:{b}x3x{h}x{w}"  # noqa: E731
    cmd = ["trtexec", f"--onnx={onnx}", f"--saveEngine={engine}", f"--minShapes={shape(profile[0])}",
           f"--optShapes={shape(profile[1])}", f"--maxShapes={shape(profile[2])}",
           f"--memPoolSize=workspace:{int(workspace_mib)}M"]
    if strongly_typed:
        cmd.append("--stronglyTyped")
    elif precision in ("fp16", "int8"):
        cmd.append("--fp16")
        if precision == "int8":
            cmd.append("--int8")  # with a Q/DQ graph: explicit quantization, the scales are in the graph
    if timing_cache:
        cmd.append(f"--timingCacheFile={timing_cache}")
    if dla_core is not None:
        cmd += [f"--useDLACore={dla_core}", "--allowGPUFallback"]
    return shlex.join(cmd)
