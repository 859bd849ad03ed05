"""Names tests/test_bench_video_pipeline.py still imports; everything else takes them from tests/tiny_models.py (the
one tiny-model factory). Delete this file once that test imports tiny_models."""

from tiny_models import export_onnx, tiny_class

PoolFace = tiny_class("pool")

__all__ = ["PoolFace", "export_onnx"]
