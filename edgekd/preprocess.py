"""Input preprocessing, defined once and recorded with every model and artifact.

numpy only: the deployed runtimes (ONNX, TensorRT) use it without torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgekd.errors import EdgekdError


@dataclass(frozen=True)
class Preprocess:
    """uint8 RGB faces (N, H, W, 3) aligned to the 112x112 ArcFace template -> float32 NCHW model input.

    `mean`/`std` are in 0..255 pixel units: x_model = (x - mean) / std.
    `crop` = (top, left, height, width) taken from the aligned image first (the 112x96 SphereFace
    template is columns 8..103 of the 112x112 ArcFace one).
    """

    input_size: tuple[int, int] = (112, 112)
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)
    crop: tuple[int, int, int, int] | None = None

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[-1] != 3:
            raise EdgekdError(f"expected uint8 images of shape (N, H, W, 3), got {images.shape}")
        if self.crop is not None:
            t, l, h, w = self.crop
            images = images[:, t : t + h, l : l + w]
        if tuple(images.shape[1:3]) != tuple(self.input_size):
            raise EdgekdError(
                f"image size {images.shape[1]}x{images.shape[2]} does not match the model input "
                f"{self.input_size[0]}x{self.input_size[1]} (align faces first, or pass --resize)"
            )
        x = images.astype(np.float32)
        x -= np.asarray(self.mean, np.float32)
        x /= np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    @property
    def aligned_size(self) -> tuple[int, int]:
        """(H, W) of the aligned face this preprocessing takes before its own crop (crops are centred margins)."""
        if self.crop is None:
            return tuple(self.input_size)
        t, l, h, w = self.crop
        return (2 * t + h, 2 * l + w)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocess":
        return cls(
            input_size=tuple(d.get("input_size", (112, 112))),
            mean=tuple(d.get("mean", (127.5,) * 3)),
            std=tuple(d.get("std", (127.5,) * 3)),
            crop=tuple(d["crop"]) if d.get("crop") is not None else None,
        )

    @classmethod
    def from_metadata(cls, meta: dict[str, Any], default: "Preprocess | None" = None) -> "Preprocess | None":
        """The preprocessing `edgekd export` stored in an ONNX file's metadata (its `edgekd.*` fields, decoded), else
        `default` (files exported elsewhere)."""
        return cls.from_dict(meta["preprocess"]) if "preprocess" in meta else default


# edgekd-native models: insightface arcface_torch's (x - 127.5) / 127.5 on 112x112 RGB.
ARCFACE = Preprocess()
