"""Image decoding and the face-size policy shared by every reader (numpy + Pillow only)."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from edgekd.errors import EdgekdError

FACE_SIZE = (112, 112)  # (H, W) of an ArcFace-aligned face
_resize_warned = False


def decode_image(data: bytes | str | os.PathLike, source: str = "") -> np.ndarray:
    """Encoded bytes or a file path -> uint8 (H, W, 3) RGB; a corrupt or truncated image names its source."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        source = source or str(data)
        try:
            data = Path(data).read_bytes()
        except OSError as e:
            raise EdgekdError(f"{source}: cannot read image ({e.strerror or e})") from e
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))
    except Exception as e:  # Pillow raises many types (OSError, SyntaxError, ValueError...) for bad data
        raise EdgekdError(f"{source or '<bytes>'}: corrupt or unreadable image ({e})") from None


def fit_size(img: np.ndarray, size: tuple[int, int], source: str, resize: bool) -> np.ndarray:
    """Faces must already be aligned to `size`; a wrong size is an error unless the user asked to resize."""
    if img.shape[:2] == tuple(size):
        return img
    if not resize:
        raise EdgekdError(
            f"{source}: image is {img.shape[0]}x{img.shape[1]}, expected an aligned {size[0]}x{size[1]} face "
            "(align it first with `edgekd data align`, or pass --resize)"
        )
    global _resize_warned
    if not _resize_warned:
        _resize_warned = True
        warnings.warn(f"resizing {img.shape[0]}x{img.shape[1]} images to {size[0]}x{size[1]} (first: {source})", stacklevel=2)
    return np.asarray(Image.fromarray(img).resize((size[1], size[0]), Image.BILINEAR))


def encode_jpeg(img: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"
