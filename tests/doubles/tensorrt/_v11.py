"""TensorRT 11.x (PyPI's default `tensorrt` now) surface of the double. One line per API and its source:

- NetworkDefinitionCreationFlag: STRONGLY_TYPED only, "[DEPRECATED] ... Strongly typed mode is always enabled ...
  ignored"; no EXPLICIT_BATCH: docs.nvidia.com/deeplearning/tensorrt/11.0.0/_static/python-api/infer/Core/Builder.html.
- Removed: BuilderFlag.FP16/INT8/BF16/FP8/OBEY_PRECISION_CONSTRAINTS, IBuilderConfig.int8_calibrator,
  set_calibration_profile/get_calibration_profile, quantization flags: tensorrt/latest/api/migration/
  tensorrt-10x-to-11x-python-api-reference.html ("Removed Python APIs and Replacements").
- Removed: IBuilder::platformHasFastFp16/Int8 (same migration guide, C++ list) and with setInt8Calibrator the
  IInt8*Calibrator classes (explicit quantization with Q/DQ nodes is the replacement).
- Builder in 11.0 lists max_DLA_batch_size, num_DLA_cores (no platform_has_*): 11.0.0 Builder.html.
- ONNX parser: at least opset 9..24 (onnx/onnx-tensorrt docs/operators.md gives 9..24 from 10.15 on).
"""

SPEC = dict(
    generation="11",
    network_flags={"STRONGLY_TYPED": 0},
    explicit_batch_required=False,
    strongly_typed_always=True,
    builder_flags=("GPU_FALLBACK",),
    calibrators=False,
    binding_api_v2=False,
    platform_has_fast_fp16=False,
    opset_range=(9, 24),
)
