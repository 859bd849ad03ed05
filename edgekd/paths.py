"""Where the shared real data lives. It is read by path, never copied into the project (licences)."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path | None:
    """`$EDGEKD_SHARED_DATA`, else `../shared/data` beside the checkout; None when neither exists."""
    env = os.environ.get("EDGEKD_SHARED_DATA")
    candidates = [Path(env)] if env else [_PACKAGE_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c
    return None


def shared_path(*parts: str) -> Path | None:
    """A file or folder inside the shared data, or None when absent."""
    root = shared_data_dir()
    if root is None:
        return None
    p = root.joinpath(*parts)
    return p if p.exists() else None


def mtcnn_weights_dir() -> Path:
    """`$EDGEKD_MTCNN_WEIGHTS`, else `weights/mtcnn/` in the checkout, where `make setup` puts facenet-pytorch's
    MTCNN files (git-ignored: they are the wheel's, MIT, not edgekd's)."""
    env = os.environ.get("EDGEKD_MTCNN_WEIGHTS")
    return Path(env) if env else _PACKAGE_ROOT / "weights" / "mtcnn"
