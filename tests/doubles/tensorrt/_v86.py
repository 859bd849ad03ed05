"""TensorRT 8.6 (JetPack 6.0) surface of the double. One line per API and its source:

- NetworkDefinitionCreationFlag: EXPLICIT_BATCH (must be set for ONNX) and EXPLICIT_PRECISION, no STRONGLY_TYPED:
  docs.nvidia.com/deeplearning/tensorrt/archives/tensorrt-843/api/python_api/infer/Core/Builder.html (8.x members;
  STRONGLY_TYPED first appears in the 10.0 Builder page).
- BuilderFlag.FP16/INT8, IBuilderConfig.int8_calibrator, set_calibration_profile, IInt8EntropyCalibrator2 present:
  archives/tensorrt-825/.../Int8/pyInt8.html and the 8.x BuilderConfig page.
- Binding-index API (num_bindings, get_binding_*, set_binding_shape, execute_async_v2) beside the named-tensor API
  (8.5+): removed in 10.0 (docs.nvidia.com/deeplearning/sdk/tensorrt-api/c_api/deprecated.html, 10.0 list).
- Builder.platform_has_fast_fp16 present: archives/tensorrt-843/.../Core/Builder.html.
- ONNX parser: "TensorRT 8.6 supports operators up to Opset 17" (NVIDIA/Deep-Learning-Accelerator-SW
  operators.md); lower bound 9 as stated for 10.0 (onnx/onnx-tensorrt docs/operators.md).
"""

SPEC = dict(
    generation="8.6",
    network_flags={"EXPLICIT_BATCH": 0, "EXPLICIT_PRECISION": 1},
    explicit_batch_required=True,
    strongly_typed_always=False,
    builder_flags=("FP16", "INT8", "GPU_FALLBACK"),
    calibrators=True,
    binding_api_v2=True,
    platform_has_fast_fp16=True,
    opset_range=(9, 17),
)
