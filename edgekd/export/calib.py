"""Calibration sets (`calib/NAME/`): one on-disk format read by both ONNX Runtime quantization and TensorRT.

A set is preprocessed float32 NCHW tensors in `.npy` shards plus `manifest.json` (source, sample ids, count,
preprocessing, seed, sha256 of every shard). Storing the *preprocessed* tensors means the calibrators see exactly
what the deployed model sees, and a set made for another preprocessing is refused instead of silently skewing scales.
numpy only (TensorRT hosts read it without torch).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.io import read_json, sha256_file, write_json_atomic
from edgekd.preprocess import ARCFACE, Preprocess

FORMAT = 1
SHARD = 256  # samples per .npy shard


def _balanced(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Round-robin over identities in seeded random order: every identity gives one image before any gives two."""
    rng = np.random.default_rng(seed)
    groups = [rng.permutation(np.flatnonzero(labels == c)) for c in rng.permutation(np.unique(labels))]
    picked: list[int] = []
    depth = 0
    while len(picked) < n and any(depth < len(g) for g in groups):
        picked += [int(g[depth]) for g in groups if depth < len(g)][: n - len(picked)]
        depth += 1
    return np.asarray(picked, np.int64)


def _pair_groups(pairs: np.ndarray, issame: np.ndarray, num_images: int) -> np.ndarray:
    """Identity labels for a `.bin` (no names inside): images joined by same-identity pairs share a label."""
    parent = np.arange(num_images)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs[issame]:
        parent[root(a)] = root(b)
    return np.asarray([root(i) for i in range(num_images)])


def _source_images(source: str, folds: list[int] | None):
    """(labels, ids, load(indices) -> uint8 NHWC, description) for a dataset folder/.rec or a verification set."""
    from edgekd.data import load_verification, open_dataset

    path = Path(source)
    if path.suffix == ".bin" or (path.suffix == ".txt" and "pair" in path.name):
        vset = load_verification(path)
        keep = np.isin(vset.folds, [f - 1 for f in folds]) if folds else np.ones(len(vset), bool)
        used = np.unique(vset.pairs[keep])
        if path.suffix == ".bin":
            groups = _pair_groups(vset.pairs[keep], vset.issame[keep], vset.num_images)[used]
            labels, kind = np.unique(groups, return_inverse=True)[1], "same-pair groups"
            ids = [f"{path.name}:{k}" for k in used]
        else:
            from edgekd.data.verification import parse_pairs

            names = parse_pairs(path)[0]
            labels, kind = np.unique([names[k][0] for k in used], return_inverse=True)[1], "LFW names"
            ids = [f"{names[k][0]}/{names[k][0]}_{names[k][1]:04d}.jpg" for k in used]
        return labels, ids, (lambda idx: vset.images(used[idx])), \
            f"{path} ({used.size} images, identities = {kind})"
    if folds:
        raise EdgekdError(f"{source}: --folds applies to verification sets (pairs.txt / .bin) only")
    ds = open_dataset(source)
    ids = [f"{i}" for i in range(len(ds))]
    return np.asarray(ds.labels), ids, (lambda idx: np.stack([ds[int(i)][0] for i in idx])), \
        f"{ds.source} ({len(ds)} images, {ds.num_classes} identities)"


def make_calib(source: str, out: str | os.PathLike, n: int = 512, seed: int = 0,
               preprocess: Preprocess = ARCFACE, folds: list[int] | None = None, model: str | None = None,
               overwrite: bool = False, progress: bool = True) -> dict:
    """Draw a seeded identity-balanced sample of `n` faces from `source`, preprocess, write shards + manifest."""
    from tqdm import tqdm

    from edgekd.io import atomic_dir

    if n <= 0:
        raise EdgekdError(f"{out}: --n must be positive, got {n}")
    labels, ids, load, described = _source_images(source, folds)
    picked = _balanced(labels, n, seed)
    if picked.size == 0:
        raise EdgekdError(f"{source}: no images to sample")
    shards = []
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for s in tqdm(range(0, picked.size, SHARD), desc="calib", unit="shard", disable=not progress):
            x = preprocess(load(picked[s : s + SHARD])).astype(np.float32)
            name = f"shard_{s // SHARD:04d}.npy"
            np.save(tmp / name, x)
            shards.append({"file": name, "count": int(x.shape[0]), "sha256": sha256_file(tmp / name)})
        manifest = {
            "kind": "calib", "format": FORMAT, "source": str(source), "source_description": described,
            "folds": folds, "model": model, "seed": seed, "count": int(picked.size),
            "identities": int(np.unique(labels[picked]).size), "preprocess": preprocess.to_dict(),
            "shape": [3, *preprocess.input_size], "dtype": "float32",
            "samples": [ids[i] for i in picked], "shards": shards,
        }
        write_json_atomic(tmp / "manifest.json", manifest)
    if picked.size < n:
        manifest["note"] = f"source has only {picked.size} images; wrote all of them"
    return manifest


@dataclass
class CalibSet:
    """A checked calibration set: iterate `batches()`; `sha256` (of manifest.json) identifies it in artifacts."""

    root: Path
    manifest: dict
    sha256: str

    @property
    def count(self) -> int:
        return int(self.manifest["count"])

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess.from_dict(self.manifest["preprocess"])

    def batches(self, batch_size: int = 32, limit: int | None = None) -> Iterator[np.ndarray]:
        """float32 NCHW batches across shards, at most `limit` samples in all."""
        left = self.count if limit is None else min(limit, self.count)
        for shard in self.manifest["shards"]:
            x = np.load(self.root / shard["file"], mmap_mode="r")
            for i in range(0, len(x), batch_size):
                if left <= 0:
                    return
                b = np.ascontiguousarray(x[i : i + min(batch_size, left)], dtype=np.float32)
                left -= len(b)
                yield b


def open_calib(path: str | os.PathLike, preprocess: Preprocess | None = None, verify: bool = True) -> CalibSet:
    """Open and check a set: manifest well-formed, count > 0, shard hashes intact, every shard a finite float32
    N x 3 x H x W array of the manifest's size, preprocessing equal to the model's."""
    root = Path(path)
    mpath = root / "manifest.json"
    if not mpath.is_file():
        raise EdgekdError(f"{root}: not a calibration set (no manifest.json; make one with `edgekd calib make`)")
    m = read_json(mpath)
    if not isinstance(m, dict) or m.get("kind") != "calib" or "shards" not in m:
        raise EdgekdError(f"{mpath}: not an edgekd calibration manifest")
    pre = _manifest_preprocess(m, mpath)
    if _count(m.get("count")) is None or not isinstance(m["shards"], list) or not all(
            isinstance(x, dict) and _count(x.get("count")) is not None and isinstance(x.get("file"), str)
            and isinstance(x.get("sha256"), str) for x in m["shards"]):
        raise EdgekdError(f"{mpath}: malformed manifest (count, and shards as {{file, count, sha256}} entries)")
    if m["count"] == 0 or sum(x["count"] for x in m["shards"]) != m["count"]:
        raise EdgekdError(f"{root}: calibration set is empty or its shard counts do not add up to count={m['count']}")
    face = [3, *pre.input_size]
    if m.get("shape") != face or m.get("dtype") != "float32":  # `calib show` prints these as verified
        raise EdgekdError(f"{mpath}: shape {m.get('shape')!r} / dtype {m.get('dtype')!r} do not match the preprocessed "
                          f"faces the set holds (float32 {face})")
    if _count(m.get("identities")) is None or not isinstance(m.get("seed"), int) or not isinstance(
            m.get("source_description"), str):
        raise EdgekdError(f"{mpath}: malformed manifest (identities and seed must be integers, source_description "
                          "a text)")
    for x in m["shards"]:
        if Path(x["file"]).name != x["file"] or x["file"] in ("", ".", ".."):
            raise EdgekdError(f"{mpath}: shard file {x['file']!r} is not a plain file name inside the set")
    if verify:
        for x in m["shards"]:
            f = root / x["file"]
            if not f.is_file() or sha256_file(f) != x["sha256"]:
                raise EdgekdError(f"{f}: shard missing or sha256 mismatch (the set was modified; re-make it)")
            _check_shard(f, x["count"], (3, *pre.input_size))
    if preprocess is not None and pre != preprocess:
        raise EdgekdError(f"{root}: made with preprocessing {m['preprocess']} but the model expects "
                          f"{preprocess.to_dict()}; make a set with `edgekd calib make --model NAME`")
    return CalibSet(root, m, sha256_file(mpath))


def _count(v) -> int | None:
    """A non-negative integer count (JSON true/false or 1.5 are not counts)."""
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def _manifest_preprocess(m: dict, mpath: Path) -> Preprocess:
    try:
        pre = Preprocess.from_dict(m["preprocess"])
        h, w = (int(v) for v in pre.input_size)
        ok = h > 0 and w > 0 and len(pre.mean) == len(pre.std) == 3 and all(np.isfinite(pre.mean + pre.std))
    except (KeyError, TypeError, ValueError, AttributeError):
        ok = False
    if not ok:
        raise EdgekdError(f"{mpath}: malformed manifest: preprocess must hold input_size [H, W], mean and std")
    return pre


def _check_shard(f: Path, count: int, shape: tuple[int, ...]) -> None:
    """What the calibrators need from a shard, checked before ONNX Runtime or TensorRT sees it."""
    try:
        x = np.load(f, mmap_mode="r", allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - numpy's header errors: ValueError, EOFError, UnpicklingError...
        raise EdgekdError(f"{f}: not a plain .npy array ({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})") from None
    if x.dtype != np.float32 or x.shape != (count, *shape):
        raise EdgekdError(f"{f}: holds {x.dtype} {list(x.shape)}, expected float32 [{count}, {', '.join(map(str, shape))}] "
                          "(preprocessed N x 3 x H x W faces)")
    for i in range(0, count, SHARD):
        if not np.isfinite(x[i : i + SHARD]).all():
            raise EdgekdError(f"{f}: holds NaN or infinite values (samples {i}..{min(i + SHARD, count) - 1})")
