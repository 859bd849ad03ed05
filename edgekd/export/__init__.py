"""Deployment artifacts: ONNX export + parity, TensorRT op check, FP16 / INT8 Q/DQ ONNX, TensorRT engines + sidecars.

Small composable pieces (graph, onnx_export, parity, trt_ops, fp16, int8, calib (calibration sets), tensorrt_build,
trtexec; the engine sidecar lives in edgekd.runtime.tensorrt.sidecar) and one orchestration module (run:
export_model, build_from_onnx), the single export path of the CLI and the pipeline.
"""

DEFAULT_OPSET = 17  # the exported graphs' opset: TensorRT 8.6 (JetPack 6.0) parses up to 17
METHODS = ("minmax", "entropy", "percentile")  # INT8 calibration methods (the Q/DQ files' forms besides gated/cpu)
DEFAULT_METHOD = METHODS[0]  # what export, build, QAT and the pipeline calibrate with unless told otherwise
# Both are read by the CLI at start-up, so they live here, not in the modules that import onnx.
