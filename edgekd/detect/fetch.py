"""`python -m edgekd.detect.fetch` (run by `make setup`): MTCNN's weights from the facenet-pytorch 2.6.0 wheel.

facenet-pytorch pins torch < 2.3, numpy < 2 and Pillow < 10.3, so edgekd cannot depend on it: the wheel is fetched
by name with `pip download --no-deps` (nothing installed, `pip check` stays clean) and only its three weight files
and its MIT licence are extracted, each checked against the sha256 recorded here.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from edgekd.errors import EdgekdError
from edgekd.io import atomic_dir
from edgekd.paths import mtcnn_weights_dir

WHEEL = "facenet-pytorch==2.6.0"
FILES = {  # member of the wheel -> sha256 (measured on facenet_pytorch-2.6.0-py3-none-any.whl from PyPI)
    "facenet_pytorch/data/pnet.pt": "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
    "facenet_pytorch/data/rnet.pt": "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
    "facenet_pytorch/data/onet.pt": "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
}
LICENSE = "LICENSE.md"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def extract(wheel: str | Path, out: str | Path) -> Path:
    """The three weight files + LICENSE.md of `wheel` into `out` (atomic: all or nothing), hashes checked."""
    wheel, out = Path(wheel), Path(out)
    try:
        with zipfile.ZipFile(wheel) as z:
            names = z.namelist()
            lic = next((n for n in names if n.endswith(".dist-info/" + LICENSE)), None)
            missing = [m for m in FILES if m not in names] + ([] if lic else [LICENSE])
            if missing:
                raise EdgekdError(f"{wheel}: not the facenet-pytorch 2.6.0 wheel (lacks {missing[0]})")
            blobs = {Path(m).name: z.read(m) for m in FILES}
            blobs[LICENSE] = z.read(lic)
    except zipfile.BadZipFile as e:
        raise EdgekdError(f"{wheel}: not a wheel ({e})") from None
    for member, sha in FILES.items():
        got = _sha256(blobs[Path(member).name])
        if got != sha:
            raise EdgekdError(f"{wheel}: {member} has sha256 {got}, expected {sha}")
    with atomic_dir(out, overwrite=True) as tmp:
        for name, data in blobs.items():
            (tmp / name).write_bytes(data)
    return out


def present(out: str | Path) -> bool:
    """True when `out` holds the three files with the recorded hashes (then setup downloads nothing)."""
    out = Path(out)
    return all((out / Path(m).name).is_file() and _sha256((out / Path(m).name).read_bytes()) == sha
               for m, sha in FILES.items())


def fetch(out: str | Path | None = None) -> Path:
    out = Path(out) if out is not None else mtcnn_weights_dir()
    if present(out):
        return out
    with tempfile.TemporaryDirectory(prefix="edgekd-mtcnn-") as tmp:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                            WHEEL, "-d", tmp], capture_output=True, text=True)
        wheels = sorted(Path(tmp).glob("facenet_pytorch-*.whl"))
        if r.returncode or not wheels:
            last = (r.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise EdgekdError(f"{WHEEL}: pip download failed ({last[:200]})")
        return extract(wheels[0], out)


def main() -> int:
    try:
        print(f"MTCNN weights (facenet-pytorch 2.6.0, MIT): {fetch()}")
    except EdgekdError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
