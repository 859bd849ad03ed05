"""Deployment artifacts: ONNX export + parity, TensorRT op check, FP16 / INT8 Q/DQ ONNX, TensorRT engines + sidecars.

Small composable pieces (graph, onnx_export, parity, trt_ops, fp16, int8, calib (calibration sets), tensorrt_build,
trtexec; the engine sidecar lives in edgekd.runtime.tensorrt.sidecar) and one orchestration module (run:
export_model, build_from_onnx), the single export path of the CLI and the pipeline.
"""

from edgekd.export.tensorrt_build import build_engine  # noqa: E402  (tensorrt itself is imported lazily)

__all__ = ["build_engine"]
