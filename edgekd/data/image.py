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
    """Encoded bytes or a file path -> uint8 (H, W, 3) RGB, whatever the file's mode (see _high_depth); a corrupt,
    truncated or empty image names its source."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        source = source or str(data)
        try:
            data = Path(data).read_bytes()
        except OSError as e:
            raise EdgekdError(f"{source}: cannot read image ({e.strerror or e})") from e
    where = source or "<bytes>"
    if not len(data):
        raise EdgekdError(f"{where}: empty file (0 bytes), not an image")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            mode, grey = im.mode, _high_depth(im)
            rgb = None if grey is not None or mode == "F" else np.asarray(im.convert("RGB"))
    except Exception as e:  # Pillow raises many types (OSError, SyntaxError, ValueError...) for bad data
        raise EdgekdError(f"{where}: corrupt or unreadable image ({e})") from None
    if mode == "F":
        raise EdgekdError(f"{where}: floating-point image (mode F) has no defined 8-bit scale; save it as 8- or "
                          "16-bit PNG/JPEG")
    if grey is not None:
        if grey.size and (grey.min() < 0 or grey.max() > 65535):
            raise EdgekdError(f"{where}: {mode} image holds values {grey.min()}..{grey.max()}, outside 16 bits")
        rgb = np.repeat(((grey.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)[..., None], 3, axis=2)
    return rgb


def _high_depth(im: Image.Image) -> np.ndarray | None:
    """The 16-bit grey levels of a 16/32-bit integer image (I;16*, I), else None. Pillow's convert("RGB") clips them
    at 255, so a 16-bit PNG face would come out white; they are scaled (x * 255 / 65535, rounded) instead. Palette,
    CMYK, LA, RGBA, 1-bit and YCbCr images go through Pillow's own conversion, alpha dropped as OpenCV's imread
    does; Pillow itself reduces 16-bit RGB(A) PNGs to 8 bits per channel correctly."""
    if not (im.mode.startswith("I;16") or im.mode == "I"):
        return None
    return np.asarray(im).astype(np.int64)


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
