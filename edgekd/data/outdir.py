"""Whole-folder atomic output: a multi-file result (RecordIO shard, aligned image tree) appears complete or not at all."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from edgekd.errors import EdgekdError

# errors of the output side (full disk, quota, read-only or failing device), reported against the output folder
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside `path`, renamed to `path` when the block succeeds, deleted when it fails."""
    path = Path(path)
    if path.exists() and not path.is_dir():  # --overwrite replaces an earlier output folder, never a file
        raise EdgekdError(f"{path}: is a file, not an output folder (remove it or choose another name)")
    if path.exists() and not overwrite and any(path.iterdir()):
        raise EdgekdError(f"{path}: already exists and is not empty (pass --overwrite to replace it)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary shared folder
    except OSError as e:
        raise EdgekdError(f"{path}: cannot write here ({e.strerror or e})") from e
    try:
        try:
            yield tmp
        except OSError as e:
            if e.errno not in WRITE_ERRNOS:
                raise
            raise EdgekdError(f"{path}: write failed ({e.strerror or e}); nothing was written") from None
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
