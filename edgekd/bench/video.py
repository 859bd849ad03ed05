"""Frames as a deployed app sees them: decoded from a video file or a folder of images, fitted to the model input.

Pillow decodes folders of frames; video files need OpenCV (cv2), imported only here and only when asked.
No torch on this path.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from edgekd.data.image import decode_image
from edgekd.errors import EdgekdError
from edgekd.preprocess import Preprocess

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff"}


def aligned_size(pp: Preprocess) -> tuple[int, int]:
    """Size of the aligned face the preprocessing expects before its own crop (crops are centred margins)."""
    if pp.crop is None:
        return tuple(pp.input_size)
    t, l, h, w = pp.crop
    return (2 * t + h, 2 * l + w)


def fit_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize the shorter side to the target then centre-crop to `size` (H, W); frames already that size pass as is
    (they are assumed to be aligned faces)."""
    h, w = frame.shape[:2]
    th, tw = size
    if (h, w) == (th, tw):
        return frame
    scale = max(th / h, tw / w)
    nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
    img = Image.fromarray(frame).resize((nw, nh), Image.BILINEAR)
    top, left = (nh - th) // 2, (nw - tw) // 2
    return np.asarray(img.crop((left, top, left + tw, top + th)))


def frame_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise EdgekdError(f"{folder}: no image frames ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
    return files


def iter_frames(source: str | Path, limit: int | None = None) -> Iterator[tuple[np.ndarray, float]]:
    """Yield (uint8 HxWx3 RGB frame, seconds spent reading + decoding it)."""
    source = Path(source)
    if not source.exists():
        raise EdgekdError(f"{source}: no such video file or frame folder")
    if source.is_dir():
        for n, path in enumerate(frame_files(source)):
            if limit is not None and n >= limit:
                return
            t0 = time.perf_counter()
            frame = decode_image(path)  # the readers' decoder: 16-bit, palette and CMYK frames as faces are
            yield frame, time.perf_counter() - t0
        return
    try:
        import cv2
    except ImportError:
        raise EdgekdError(
            f"{source}: reading video files needs OpenCV (pip install opencv-python-headless); "
            "a folder of frames works without it"
        ) from None
    cap = cv2.VideoCapture(str(source))
    if not cap.isOpened():
        raise EdgekdError(f"{source}: OpenCV cannot open this video")
    try:
        n = 0
        while limit is None or n < limit:
            t0 = time.perf_counter()
            ok, bgr = cap.read()
            if not ok:
                break
            frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            yield frame, time.perf_counter() - t0
            n += 1
        if n == 0:
            raise EdgekdError(f"{source}: no frames could be decoded")
    finally:
        cap.release()
