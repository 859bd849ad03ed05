"""Face alignment from raw photos + 5-point landmarks onto the ArcFace template (numpy + Pillow, no OpenCV).

A least-squares similarity (Umeyama, as skimage's SimilarityTransform used by insightface) maps the five points onto
the template; Pillow warps with the inverse matrix. Pillow samples at pixel centres (x+0.5), OpenCV/landmark
coordinates put pixel centres at integers, so the matrix is conjugated by a half-pixel shift.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
from pathlib import Path
from typing import Collection

import numpy as np
from PIL import Image
from tqdm import tqdm

from edgekd.data.image import decode_image
from edgekd.data.datasets import IMAGE_EXTS
from edgekd.io import atomic_dir
from edgekd.errors import EdgekdError
from edgekd.io import sha256_file, write_json_atomic

ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], np.float64)


def template(size: tuple[int, int] = (112, 112)) -> np.ndarray:
    """The 5-point target for an output of (H, W): 112x112 ArcFace, or 112x96 SphereFace (= ArcFace x - 8)."""
    size = tuple(size)
    if size == (112, 112):
        return ARCFACE_TEMPLATE.copy()
    if size == (112, 96):
        return ARCFACE_TEMPLATE - [8.0, 0.0]
    raise EdgekdError(f"alignment size {size[0]}x{size[1]} unsupported (use 112x112 or 112x96)")


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity (rotation, uniform scale, translation; no reflection) mapping src points to dst."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(d0.T @ s0 / len(src))
    d = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ np.diag(d) @ vt
    scale = (sig * d).sum() / (s0**2).sum(1).mean()
    return np.hstack([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]])


def warp(img: np.ndarray, m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Apply the 2x3 forward matrix `m` (input -> output, pixel centres at integers) to an RGB array."""
    full = np.vstack([m, [0, 0, 1]])
    shift = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    inv = shift @ np.linalg.inv(full) @ np.linalg.inv(shift)  # Pillow's output (x+0.5) -> input coordinates
    out = Image.fromarray(img).transform((size[1], size[0]), Image.AFFINE, tuple(inv[:2].ravel()), Image.BILINEAR)
    return np.asarray(out)


def align_image(img: np.ndarray, landmarks: np.ndarray, size: tuple[int, int] = (112, 112)) -> np.ndarray:
    return warp(img, umeyama(np.asarray(landmarks, np.float64).reshape(5, 2), template(size)), size)


MIN_SPREAD_PX = 2.0  # five points closer together than this cannot place a face (all zero: a black output)


def check_landmarks(points: np.ndarray, where: str) -> np.ndarray:
    """Five finite (x, y) points spread enough to define a similarity transform; else a one-line error."""
    pts = np.asarray(points, np.float64).reshape(5, 2)
    if not np.isfinite(pts).all():
        raise EdgekdError(f"{where}: landmarks are not finite numbers")
    spread = float(np.sqrt(((pts - pts.mean(0)) ** 2).sum(1).mean()))
    if spread < MIN_SPREAD_PX:
        raise EdgekdError(f"{where}: the five landmarks lie within {spread:.2g} px of each other "
                          "(missing or zero landmarks cannot place a face)")
    return pts


def read_landmarks(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Lines `relative/path.jpg` + 10 numbers (x y of left eye, right eye, nose, left and right mouth corner)."""
    path = Path(path)
    out = {}
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise EdgekdError(f"{path}: cannot read landmarks ({e})") from e
    for n, line in enumerate(text.splitlines(), 1):
        t = line.split()
        if not t:
            continue
        try:
            if len(t) != 11:
                raise ValueError
            pts = np.array(t[1:], np.float64).reshape(5, 2)
        except ValueError:
            raise EdgekdError(f"{path}:{n}: malformed landmark line {line[:80]!r} (expected path + 10 numbers)") from None
        if not np.isfinite(pts).all():
            raise EdgekdError(f"{path}:{n}: landmarks are not finite numbers")
        out[t[0]] = pts
    if not out:
        raise EdgekdError(f"{path}: no landmarks")
    return out


def raw_images(raw_dir: Path, identities: Collection[str] | None = None) -> list[str]:
    """Sorted paths, relative to `raw_dir`, of its image files (hidden ones skipped), optionally only those under the
    top-level folders named in `identities`: the photos either alignment (landmark file or detector) reads."""
    keep = None if identities is None else set(identities)
    rels = (str(p.relative_to(raw_dir)) for p in raw_dir.rglob("*")
            if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."))
    return sorted(r for r in rels if keep is None or r.split(os.sep)[0] in keep)


def aligned_manifest(written: Collection[str], size: tuple[int, int], raw_dir: Path) -> dict:
    """The fields every aligned folder's manifest.json starts with, whichever way its faces were placed."""
    return {"kind": "aligned_faces", "count": len(written), "identities": len({r.split(os.sep)[0] for r in written}),
            "size": list(size), "template": template(size).tolist(), "raw_dir": str(raw_dir)}


def _align_one(job) -> None:
    src, dst, lm, size, quality = job
    img = decode_image(src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(align_image(img, lm, size)).save(dst, format="JPEG", quality=quality)


def align_folder(raw_dir: str | os.PathLike, out_dir: str | os.PathLike, landmarks: str | os.PathLike | dict,
                 scale: float = 1.0, size: tuple[int, int] = (112, 112), identities: Collection[str] | None = None,
                 overwrite: bool = False, workers: int | None = None, quality: int = 95, progress: bool = True) -> dict:
    """Align every raw image that has landmarks (x `scale`, e.g. 0.6 for 150x150 copies of 250x250 LFW) into
    `out_dir/<same relative path>` (atomic: all or nothing), plus `manifest.json`; returns the manifest.

    `identities` restricts to those top-level folder names (e.g. `lfw_fold_identities(pairs, range(1, 6))`).
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if not raw_dir.is_dir():
        raise EdgekdError(f"{raw_dir}: raw image folder not found")
    size = tuple(size)
    template(size)
    if not (math.isfinite(scale) and scale > 0):
        raise EdgekdError(f"--scale {scale}: landmarks need a positive scale factor")
    marks = read_landmarks(landmarks) if not isinstance(landmarks, dict) else landmarks
    keep = None if identities is None else set(identities)
    present = set(raw_images(raw_dir, identities))
    rels = sorted(r for r in present if r in marks)
    no_marks = sorted(present - set(marks))
    if not rels:
        raise EdgekdError(f"{raw_dir}: no images with landmarks to align (checked {len(present)} images)")
    source = landmarks if not isinstance(landmarks, dict) else "landmarks"
    for r in rels:  # before any work: one bad line must not cost a long alignment run
        check_landmarks(marks[r] * scale, f"{source}: {r}")
    with atomic_dir(out_dir, overwrite) as tmp:
        jobs = [(raw_dir / r, tmp / r, marks[r] * scale, size, quality) for r in rels]
        workers = workers or min(len(os.sched_getaffinity(0)), 8)
        with mp.get_context("fork").Pool(workers) as pool:
            for _ in tqdm(pool.imap_unordered(_align_one, jobs, chunksize=64), total=len(jobs), desc="align",
                          unit="img", disable=not progress):
                pass
        manifest = {
            **aligned_manifest(rels, size, raw_dir), "scale": scale,
            "landmarks": str(landmarks) if not isinstance(landmarks, dict) else "<dict>",
            "landmarks_sha256": sha256_file(landmarks) if not isinstance(landmarks, dict) else None,
            "skipped_without_landmarks": len(no_marks), "skipped_examples": no_marks[:10],
            "landmarks_without_image": len([r for r in marks if (keep is None or r.split("/")[0] in keep) and r not in present]),
        }
        write_json_atomic(tmp / "manifest.json", manifest)
    return manifest
