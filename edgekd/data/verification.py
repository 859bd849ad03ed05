"""Verification pair sets: insightface `.bin` files and LFW view-2 `pairs.txt` + an image folder.

Images decode lazily (a full LFW set is 12,000 faces); folds follow the protocol: the file layout of pairs.txt,
or insightface's 10 consecutive unshuffled KFold splits for a .bin.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from tqdm import tqdm

from edgekd.data.image import FACE_SIZE, decode_image, encode_jpeg, fit_size, is_jpeg
from edgekd.errors import EdgekdError
from edgekd.io import atomic_path, sha256_file

try:  # numpy >= 2 (numpy.core is a deprecated alias there)
    from numpy._core.multiarray import _reconstruct
except ImportError:
    from numpy.core.multiarray import _reconstruct


class VerificationSet:
    """N pairs of indices into `num_images` lazily decoded faces, with issame flags and fold ids 0..9."""

    def __init__(self, name: str, source: Path, pairs: np.ndarray, issame: np.ndarray, folds: np.ndarray,
                 num_images: int, loader: Callable[[int], np.ndarray], sha256: Callable[[], str] | str,
                 size: tuple[int, int] = FACE_SIZE, note: str = ""):
        self.name, self.source, self.size, self.note = name, Path(source), tuple(size), note
        self.pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
        self.issame = np.asarray(issame, bool)
        self.folds = np.asarray(folds, np.int64)
        self.num_images = int(num_images)
        self._loader = loader
        self._sha = sha256

    @property
    def sha256(self) -> str:
        """Content identity of the source (computed once, on first use: hashing 7,701 files is not free)."""
        if callable(self._sha):
            self._sha = self._sha()
        return self._sha

    def image(self, k: int) -> np.ndarray:
        return self._loader(int(k))

    def images(self, indices: Iterable[int]) -> np.ndarray:
        out = [self.image(k) for k in indices]
        return np.stack(out) if out else np.zeros((0, *self.size, 3), np.uint8)

    def subset(self, folds: Iterable[int]) -> "VerificationSet":
        """The pairs of the given fold ids (0-based), re-indexed onto only the images they use. The name shows the
        folds as pairs.txt numbers them (1..10), as every --folds option does."""
        keep = np.isin(self.folds, list(folds))
        used, inverse = np.unique(self.pairs[keep], return_inverse=True)
        parent = self
        return VerificationSet(f"{self.name}[folds {','.join(str(f + 1) for f in sorted(set(folds)))}]", self.source,
                               inverse.reshape(-1, 2), self.issame[keep], self.folds[keep], len(used),
                               lambda k: parent.image(used[k]), lambda: parent.sha256, self.size, self.note)

    def __len__(self) -> int:
        return len(self.pairs)

    def __repr__(self) -> str:
        return (f"VerificationSet({self.name!r}, pairs={len(self)}, positives={int(self.issame.sum())}, "
                f"images={self.num_images}, folds={len(np.unique(self.folds))})")


def kfold_ids(n: int, k: int = 10) -> tuple[np.ndarray, str]:
    """insightface's KFold(n_splits=10, shuffle=False): consecutive folds, the first n % k one pair larger."""
    sizes = np.full(k, n // k) + (np.arange(k) < n % k)
    note = "" if n % k == 0 else f"{n} pairs is not divisible by {k}: folds are consecutive with sizes {sizes.tolist()}"
    return np.repeat(np.arange(k), sizes), note


def load_verification(path: str | os.PathLike, images_root: str | os.PathLike | None = None, resize: bool = False,
                      size: tuple[int, int] = FACE_SIZE) -> VerificationSet:
    """An insightface `.bin` or an LFW-style `pairs.txt` (images from `images_root`, default `aligned_112x112/` beside it)."""
    path = Path(path)
    if not path.is_file():
        raise EdgekdError(f"{path}: " + ("is a folder, expected a .bin or pairs.txt file" if path.is_dir() else "no such file"))
    if path.suffix == ".bin":
        return _load_bin(path, resize, size)
    return _load_pairs(path, images_root, resize, size)


# ---- insightface .bin -------------------------------------------------------------------------------------------

class _BinUnpickler(pickle.Unpickler):
    """A .bin is data: allow only what numpy arrays need, so a malicious file cannot run code."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return getattr(np, name) if module == "numpy" else _reconstruct


def read_bin(path: str | os.PathLike) -> tuple[list[bytes], np.ndarray]:
    """(2N encoded images, N issame flags); images may be `bytes` or numpy uint8 arrays of JPEG bytes (small_lfw.bin)."""
    path = Path(path)
    try:
        raw = path.read_bytes()  # unpickled from memory: a corrupt length field cannot ask for more than the file holds
    except OSError as e:
        raise EdgekdError(f"{path}: cannot read ({e.strerror or e})") from e
    try:
        obj = _BinUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # truncated / not a pickle: EOFError, UnpicklingError, ValueError...
        raise EdgekdError(f"{path}: not a readable insightface .bin pickle ({type(e).__name__}: {e})") from None
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise EdgekdError(f"{path}: expected a pickled (images, issame) pair, got {type(obj).__name__}")
    bins, issame = obj
    if not isinstance(bins, (list, tuple)) or not isinstance(issame, (list, tuple, np.ndarray)):
        raise EdgekdError(f"{path}: expected (list of images, issame flags), got ({type(bins).__name__}, "
                          f"{type(issame).__name__})")
    bad = next((k for k, b in enumerate(bins) if not isinstance(b, (bytes, bytearray, np.ndarray))), None)
    if bad is not None:  # bytes(<int>) would allocate that many zero bytes rather than fail
        raise EdgekdError(f"{path}: image {bad} is a {type(bins[bad]).__name__}, not encoded image bytes")
    try:
        blobs = [b.tobytes() if isinstance(b, np.ndarray) else bytes(b) for b in bins]
        flags = np.asarray(issame).ravel()
        if flags.dtype != bool and not np.isin(flags, (0, 1)).all():
            raise ValueError(f"issame flags of dtype {flags.dtype} are not all 0/1")
        flags = flags.astype(bool)
    except (TypeError, ValueError) as e:
        raise EdgekdError(f"{path}: unexpected contents in (images, issame) ({e})") from None
    if len(blobs) != 2 * len(flags):
        raise EdgekdError(f"{path}: {len(blobs)} images but {len(flags)} issame flags (expected 2 images per pair)")
    if not len(flags):
        raise EdgekdError(f"{path}: contains no pairs")
    return blobs, flags


def write_bin(path: str | os.PathLike, images: Sequence[bytes], issame: Sequence[bool]) -> Path:
    """insightface layout: pickle of (list of encoded images, list of bool), images in pair order."""
    if len(images) != 2 * len(issame):
        raise EdgekdError(f"{path}: {len(images)} images for {len(issame)} pairs (expected 2 per pair)")
    buf = io.BytesIO()
    pickle.dump(([bytes(b) for b in images], [bool(s) for s in issame]), buf, protocol=4)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return Path(path)


def _load_bin(path: Path, resize: bool, size) -> VerificationSet:
    blobs, issame = read_bin(path)
    ids: dict[bytes, int] = {}  # equal image bytes are one image: a .bin repeats an image for every pair using it
    content = np.asarray([ids.setdefault(hashlib.sha1(b).digest(), len(ids)) for b in blobs], np.int64)
    check_distinct_pairs(content.reshape(-1, 2), lambda i: f"{path}: pair {i + 1}", lambda i: f"pair {i + 1}")
    folds, note = kfold_ids(len(issame))
    load = lambda k: fit_size(decode_image(blobs[k], f"{path}[image {k}]"), size, f"{path}[image {k}]", resize)
    return VerificationSet(path.stem, path, np.arange(len(blobs)).reshape(-1, 2), issame, folds, len(blobs), load,
                           lambda: sha256_file(path), size, note)


# ---- LFW pairs.txt ----------------------------------------------------------------------------------------------

def parse_pairs(pairs_txt: str | os.PathLike) -> tuple[list[tuple[str, int]], np.ndarray, np.ndarray, np.ndarray]:
    """pairs.txt -> (unique images as (name, number) in first-use order, pairs (N,2) into them, issame, folds 0..9).

    Header `folds<TAB>n` gives folds of n same + n different lines in file order; without a header the folds are
    insightface's 10 consecutive splits.
    """
    pairs_txt = Path(pairs_txt)
    try:
        lines = pairs_txt.read_text(encoding="utf-8-sig").splitlines()  # a byte-order mark is skipped
    except (OSError, UnicodeDecodeError) as e:
        raise EdgekdError(f"{pairs_txt}: cannot read ({e})") from e
    numbered = [(n, line.split()) for n, line in enumerate(lines, 1) if line.strip()]
    header = None
    if numbered and len(numbered[0][1]) == 2 and all(re.fullmatch(r"[0-9]+", t) for t in numbered[0][1]):
        header = tuple(map(int, numbered.pop(0)[1]))
    index: dict[tuple[str, int], int] = {}
    pairs, issame, lines_of = [], [], []
    for n, t in numbered:
        try:
            if len(t) == 3:
                a, b, same = (t[0], _image_number(t[1])), (t[0], _image_number(t[2])), True
            elif len(t) == 4:
                a, b, same = (t[0], _image_number(t[1])), (t[2], _image_number(t[3])), False
            else:
                raise ValueError
        except ValueError:
            raise EdgekdError(f"{pairs_txt}:{n}: malformed pair line {lines[n - 1][:80]!r} "
                              "(expected 'name i j' or 'name1 i name2 j')") from None
        pairs.append([index.setdefault(a, len(index)), index.setdefault(b, len(index))])
        issame.append(same)
        lines_of.append(n)
    if not pairs:
        raise EdgekdError(f"{pairs_txt}: contains no pairs")
    if header is not None:
        k, per = header
        if len(pairs) != k * 2 * per:
            raise EdgekdError(f"{pairs_txt}: header says {k} folds x {2 * per} pairs but the file has {len(pairs)} pairs")
        folds = np.arange(len(pairs)) // (2 * per)
    else:
        folds, _ = kfold_ids(len(pairs))
    pairs = np.asarray(pairs, np.int64)
    check_distinct_pairs(pairs, lambda i: f"{pairs_txt}:{lines_of[i]}", lambda i: f"line {lines_of[i]}")
    return list(index), pairs, np.asarray(issame, bool), folds


def check_distinct_pairs(pairs: np.ndarray, where: Callable[[int], str], name: Callable[[int], str]) -> None:
    """A pair of an image with itself, or a pair listed twice, is an error, not something to de-duplicate: 40 lines
    holding 4 distinct pairs scored "100.00 % +- 0.00" over 10 folds, and dropping lines would change the protocol's
    folds. `where(i)` / `name(i)` locate pair i in the user's file."""
    same = np.nonzero(pairs[:, 0] == pairs[:, 1])[0]
    if len(same):
        raise EdgekdError(f"{where(int(same[0]))}: pairs an image with itself")
    key = np.sort(pairs, axis=1)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    repeat = np.nonzero(first[inverse.ravel()] != np.arange(len(pairs)))[0]
    if len(repeat):
        i = int(repeat[0])
        raise EdgekdError(f"{where(i)}: repeats the pair of {name(int(first[inverse.ravel()[i]]))} "
                          f"({len(repeat)} repeated pairs in all)")


def _image_number(token: str) -> int:
    """LFW image numbers are plain ASCII digits (int() would also take '٣' or '1_0')."""
    if not re.fullmatch(r"[0-9]{1,9}", token):
        raise ValueError(token)
    return int(token)


def lfw_image_path(root: Path, name: str, number: int) -> Path:
    return root / name / f"{name}_{number:04d}.jpg"


def _load_pairs(pairs_txt: Path, images_root, resize: bool, size) -> VerificationSet:
    names, pairs, issame, folds = parse_pairs(pairs_txt)
    if images_root is None:
        beside = pairs_txt.parent / "aligned_112x112"
        images_root = beside if beside.is_dir() else pairs_txt.parent
    root = Path(images_root)
    if not root.is_dir():
        raise EdgekdError(f"{root}: images folder not found")
    files = [lfw_image_path(root, name, num) for name, num in names]
    for k, p in enumerate(files):
        if not p.is_file():
            line = int(np.nonzero((pairs == k).any(1))[0][0])  # first pair using it
            raise EdgekdError(f"{pairs_txt}: pair {line + 1} names image {p}, which does not exist")

    def sha() -> str:
        h = hashlib.sha256(pairs_txt.read_bytes())
        for p in files:
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
        return h.hexdigest()

    load = lambda k: fit_size(decode_image(files[k]), size, str(files[k]), resize)
    note = "" if len(np.unique(folds)) == 10 else f"{pairs_txt.name} defines {len(np.unique(folds))} folds"
    return VerificationSet(pairs_txt.stem, pairs_txt, pairs, issame, folds, len(files), load, sha, size, note)


def lfw_fold_identities(pairs_txt: str | os.PathLike, folds: Iterable[int]) -> set[str]:
    """Names appearing in the given LFW view-2 folds, numbered 1..10 as in the LFW protocol (not 0-based)."""
    folds = set(folds)
    if not folds or not folds <= set(range(1, 11)):
        raise EdgekdError(f"{pairs_txt}: LFW folds are numbered 1..10, got {sorted(folds)}")
    names, pairs, _, fold_ids = parse_pairs(pairs_txt)
    used = pairs[np.isin(fold_ids + 1, list(folds))].ravel()
    return {names[k][0] for k in used}


def pack_pairs(pairs_txt: str | os.PathLike, images_dir: str | os.PathLike, out: str | os.PathLike,
               resize: bool = False, progress: bool = True) -> VerificationSet:
    """pairs.txt + images -> insightface .bin; every image is decoded and size-checked first, original JPEG bytes kept."""
    vset = load_verification(pairs_txt, images_root=images_dir, resize=resize)
    root = Path(images_dir)
    names, _, _, _ = parse_pairs(pairs_txt)
    encoded = []
    for k in tqdm(range(vset.num_images), desc="pack-pairs", unit="img", disable=not progress):
        path = lfw_image_path(root, *names[k])
        raw = path.read_bytes()
        img = decode_image(raw, str(path))
        fitted = fit_size(img, vset.size, str(path), resize)
        encoded.append(raw if fitted is img and is_jpeg(raw) else encode_jpeg(fitted))
    write_bin(out, [encoded[k] for k in vset.pairs.ravel()], vset.issame)
    return load_verification(out)
