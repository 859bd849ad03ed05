"""Verification metrics and evaluation of any embedding function (numpy only: no torch, no runtime)."""

from edgekd.eval.metrics import verification_metrics
from edgekd.eval.verification import embed_images, evaluate

__all__ = ["verification_metrics", "embed_images", "evaluate"]
