"""Atomic output and content hashing: nothing edgekd writes is ever left half-written."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

from edgekd.errors import EdgekdError

if sys.version_info >= (3, 11):
    import tomllib
else:  # tomli is tomllib's origin: a dependency on 3.10, absent from the torch-free Jetson install (no TOML there)
    try:
        import tomli as tomllib
    except ImportError:
        tomllib = None


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    made = make_parent(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent)
    except OSError as e:
        remove_empty(made)
        raise EdgekdError(f"{path}: cannot write here ({e.strerror or e})") from e
    os.close(fd)
    tmp = Path(tmp)
    done = False
    try:
        with user_names(tmp, path):
            yield tmp
        if tmp.exists():  # mkstemp makes 0600 files; give outputs the usual umask-based mode
            os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
        done = True
    except OSError as e:
        raise EdgekdError(f"{path}: write failed ({e.strerror or e}); nothing was written") from e
    finally:
        tmp.unlink(missing_ok=True)
        if not done:
            remove_empty(made)
    remove_stale_temps(path)


@contextlib.contextmanager
def user_names(tmp: Path, path: Path) -> Iterator[None]:
    """An EdgekdError raised while writing the temporary names the user's path, never `.m.onnx.1234-x.tmp`."""
    try:
        yield
    except EdgekdError as e:
        if str(tmp) not in str(e):
            raise
        raise EdgekdError(str(e).replace(str(tmp), str(path))) from e.__cause__


def remove_empty(folders: list[Path]) -> None:
    """Remove the folders a failed write created (deepest first) while they are empty: a failure before any output
    leaves nothing behind."""
    for d in folders:
        try:
            d.rmdir()
        except OSError:
            return


_NAME_BYTES = 200  # a temp name is "." + this + ".<pid>-<8 random>.tmp": within the usual 255-byte limit


def temp_prefix(path: Path) -> str:
    """`.<name>.<pid>-` for the temporary beside `path`: the name cut to _NAME_BYTES bytes (a 250-byte output name
    stays writable) and the writer's pid, so a later run can tell a dead writer's leftover from a live one's."""
    short = os.fsencode(path.name)[:_NAME_BYTES].decode(errors="ignore")
    return f".{short}.{os.getpid()}-"


def remove_stale_temps(path: Path) -> None:
    """Remove what writers of `path` that no longer run (kill -9, power loss) left beside it. A temp of a live
    writer (two commands writing one output) is kept: its pid is alive."""
    prefix = temp_prefix(path).rsplit(".", 1)[0] + "."
    try:
        leftovers = [p for p in path.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(".tmp")]
    except OSError:
        return
    for p in leftovers:
        pid = p.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def make_parent(path: Path) -> list[Path]:
    """mkdir -p of `path`'s folder -> the folders it created, deepest first (for remove_empty). An ancestor that is
    a file is named ("(File exists)" said nothing useful)."""
    missing = []
    try:
        for a in [path.parent, *path.parent.parents]:
            if a.exists():
                break
            missing.append(a)
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((a for a in reversed(path.parents) if a.exists() and not a.is_dir()), path.parent)
        raise EdgekdError(f"{path}: cannot be created: {blocker} is a file") from None
    except OSError as e:
        raise EdgekdError(f"{path}: cannot write here ({e.strerror or e})") from e
    return missing


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    """numpy scalars/arrays and paths appear in results; store them as plain JSON."""
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as e:
        raise EdgekdError(f"{path}: no such file") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EdgekdError(f"{path}: not valid JSON ({e})") from e


def check_writable_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Fail in one line, before long work starts, when `path` cannot become a folder we write into: it is a file,
    or its nearest existing ancestor is a file or not writable. Creates nothing."""
    path = Path(path)
    probe = path
    try:
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
    except OSError as e:  # a name over the filesystem's 255-byte limit (ENAMETOOLONG)
        raise EdgekdError(f"{path}: cannot write here ({e.strerror or e})") from None
    if not probe.is_dir():
        where = "is a file" if probe == path else f"cannot be created: {probe} is a file"
        raise EdgekdError(f"{path}: {where}, not an {what}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise EdgekdError(f"{path}: cannot write here ({probe} is not writable)")
    return path


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_settings_file(path: str | os.PathLike) -> dict[str, Any]:
    """A mapping of settings from YAML (.yaml/.yml), TOML (.toml) or JSON; one-line errors naming the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise EdgekdError(f"{path}: cannot read config ({e.strerror or e})") from e
    if path.suffix == ".toml" and tomllib is None:
        raise EdgekdError(f"{path}: reading TOML on Python 3.10 needs `pip install tomli` "
                          "(or write the settings as .yaml / .json)")
    try:
        if path.suffix == ".toml":
            d = tomllib.loads(text)
        elif path.suffix == ".json":
            d = json.loads(text)
        else:
            import yaml

            d = yaml.safe_load(text) or {}
    except Exception as e:  # noqa: BLE001 - parse errors of three libraries
        raise EdgekdError(f"{path}: not a valid config file ({type(e).__name__}: {str(e).splitlines()[0]})") from e
    if not isinstance(d, dict):
        raise EdgekdError(f"{path}: a config file must be a mapping of settings")
    return d


# ---- whole-folder atomic output: a multi-file result (RecordIO shard, aligned image tree, calibration set) appears
# complete or not at all.
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
    made = make_parent(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary shared folder
    except OSError as e:
        remove_empty(made)
        raise EdgekdError(f"{path}: cannot write here ({e.strerror or e})") from e
    done = False
    try:
        try:
            with user_names(tmp, path):
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
        done = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not done:
            remove_empty(made)
    remove_stale_temps(path)
