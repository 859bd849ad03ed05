"""The deployed face detector: MTCNN's pipeline in numpy over three networks run by ONNX Runtime or TensorRT
(no torch, no OpenCV), face choice, and verification of two photos at an artifact's stored threshold."""

DETECTORS = ("mtcnn",)  # what `edgekd export --detector` writes and `--detector` options open
