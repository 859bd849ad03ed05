"""Face-embedding architectures behind one timm-style registry, plus weight loading and complexity.

Names load on first use (PEP 562), so `edgekd.models.registry.model_preprocess` and `edgekd.models.cfgs` work
without torch; the registry imports the architectures when a model is listed or built.
"""

from __future__ import annotations

import importlib

_SOURCES = {
    "create_model": "registry", "list_models": "registry", "register_model": "registry",
    "load_model": "loading", "save_checkpoint": "loading", "read_weights": "loading",
    "detect_architecture": "loading", "ModelInfo": "loading", "complexity": "flops",
}

__all__ = list(_SOURCES)


def __getattr__(name: str):
    if name in _SOURCES:
        return getattr(importlib.import_module(f"edgekd.models.{_SOURCES[name]}"), name)
    raise AttributeError(f"module 'edgekd.models' has no attribute {name!r}")
