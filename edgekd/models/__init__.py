"""Face-embedding architectures behind one timm-style registry, plus weight loading and complexity."""

from edgekd.models.registry import create_model, list_models, register_model
from edgekd.models import iresnet, mobilefacenet, mobilenet, pretrained  # noqa: F401  (registration, in listing order)
from edgekd.models.loading import ModelInfo, detect_architecture, load_model, read_weights, save_checkpoint
from edgekd.models.complexity import complexity

__all__ = [
    "create_model", "list_models", "register_model", "load_model", "save_checkpoint", "read_weights",
    "detect_architecture", "ModelInfo", "complexity",
]
