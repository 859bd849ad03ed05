"""Whole-folder atomic output: a multi-file result (RecordIO shard, aligned image tree) appears complete or not at all."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from edgekd.errors import EdgekdError


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `path`, renamed to `path` when the block succeeds, deleted when it fails."""
    path = Path(path)
    if path.exists() and not overwrite and (not path.is_dir() or any(path.iterdir())):
        raise EdgekdError(f"{path}: already exists and is not empty (pass --overwrite to replace it)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary shared folder
    except OSError as e:
        raise EdgekdError(f"{path}: cannot write here ({e.strerror or e})") from e
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
