"""TensorRT 10.x (10.3 on JetPack 6.1/6.2) surface of the double. One line per API and its source:

- NetworkDefinitionCreationFlag: EXPLICIT_BATCH "[DEPRECATED] Ignored because networks are always explicit batch in
  TensorRT 10.0" and STRONGLY_TYPED: docs.nvidia.com/deeplearning/tensorrt/api/python_api/infer/Core/Builder.html.
- BuilderFlag.FP16/INT8 present (weak typing deprecated in 10.12, release-notes-10/10.12.0.html); a strongly typed
  network takes no precision flags (types come from the graph).
- IInt8EntropyCalibrator2, int8_calibrator, set_calibration_profile: "Deprecated in TensorRT 10.1. Superseded by
  explicit quantization", still present (tensorrt/api/c_api/deprecated.html; 10.2 Int8 Python page lists the classes).
- Binding-index API removed in 10.0 (named tensors only): c_api/deprecated.html of 10.0.1.
- Builder.platform_has_fast_fp16 deprecated in 10.5, present (tensorrt/latest/_static/c-api/deprecated.html).
- ONNX parser: "TensorRT 10.0 supports operators in the inclusive range of opset 9 to opset 20"
  (onnx/onnx-tensorrt docs/operators.md, 10.0); 10.15 raised it to 24 (same file at 10.15).
"""

SPEC = dict(
    generation="10",
    network_flags={"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1},
    explicit_batch_required=False,
    strongly_typed_always=False,
    builder_flags=("FP16", "INT8", "GPU_FALLBACK"),
    calibrators=True,
    binding_api_v2=False,
    platform_has_fast_fp16=True,
    opset_range=(9, 20),
)
