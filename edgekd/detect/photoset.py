"""Raw photos for `edgekd eval --detector`: the evaluation sets of both protocols, their images coming back as the
crops a deployed detector finds and aligns (edgekd.detect.align.detect_and_align, as every command that finds faces).

- pairs: an LFW-style pairs.txt over a folder of raw photos (`name/name_%04d.jpg`), optionally only some folds;
- all-pairs: an identity folder or label list of raw photos (or pairs.txt + its folds' identities under a folder).

Each photo is decoded, detected and aligned once, when the evaluation first loads it. A photo in which the detector
finds no face comes back as a black crop and is listed in `no_face`; edgekd.eval scores every pair that uses it as
a wrong decision (it is never dropped), so a detector that misses faces costs accuracy.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import numpy as np

from edgekd.data.image import FACE_SIZE, decode_image
from edgekd.data.verification import VerificationSet, lfw_image_path, parse_pairs
from edgekd.detect.align import detect_and_align
from edgekd.detect.faces import ONE_FACE_RULES
from edgekd.detect.folder import detection_summary
from edgekd.errors import EdgekdError

def raw_pairs(pairs_txt: str | Path, images_root: str | Path, folds: list[int] | None = None
              ) -> tuple[VerificationSet, list[Path]]:
    """The pairs of `pairs_txt` (only `folds`, 1-based, when given) over raw photos of any size under `images_root`,
    and the file of each image index. Every named photo must exist (checked now, before any network loads)."""
    pairs_txt, root = Path(pairs_txt), Path(images_root)
    if not pairs_txt.is_file():
        raise EdgekdError(f"{pairs_txt}: " + ("is a folder, expected a pairs.txt file" if pairs_txt.is_dir()
                                             else "no such file"))
    if pairs_txt.suffix == ".bin":
        raise EdgekdError(f"{pairs_txt}: a .bin holds aligned faces; --detector takes a pairs.txt over raw photos")
    if not root.is_dir():
        raise EdgekdError(f"{root}: images folder not found")
    names, pairs, issame, fold_ids = parse_pairs(pairs_txt)
    if folds:
        keep = np.isin(fold_ids, [f - 1 for f in folds])
        used, inverse = np.unique(pairs[keep], return_inverse=True)
        names = [names[k] for k in used]
        pairs, issame, fold_ids = inverse.reshape(-1, 2), issame[keep], fold_ids[keep]
    files = [lfw_image_path(root, name, num) for name, num in names]
    for k, p in enumerate(files):
        if not p.is_file():
            raise EdgekdError(f"{pairs_txt}: pair {int(np.nonzero((pairs == k).any(1))[0][0]) + 1} names image {p}, "
                              "which does not exist")

    def sha() -> str:
        h = hashlib.sha256(pairs_txt.read_bytes())
        for p in files:
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
        return h.hexdigest()

    name = pairs_txt.stem + (f"[folds {','.join(map(str, sorted(set(folds))))}]" if folds else "")
    vset = VerificationSet(name, pairs_txt, pairs, issame, fold_ids, len(files), lambda k: decode_image(files[k]),
                           sha)
    return vset, files


def raw_identities(source, images_root=None, identities_from=None, folds=None):
    """(IdentitySet, files, root) of raw photos: an identity folder or label list, optionally only the identities of
    LFW `folds` of a pairs.txt; `source` may be that pairs.txt, the photos then under `images_root`."""
    from edgekd.eval.allpairs import open_identity_set

    source = Path(str(source))
    if source.suffix == ".txt" and "pair" in source.name:
        if images_root is None:
            raise EdgekdError(f"{source}: with --detector, --images-root names the raw photos of its identities")
        source, identities_from = Path(images_root), source
    iset = open_identity_set(source, identities_from, folds)
    files = getattr(iset.dataset, "files", None)
    if files is None:
        raise EdgekdError(f"{source}: --detector reads image files (an identity folder or label list), not "
                          f"{type(iset.dataset).__name__}")
    return iset, list(files), source if source.is_dir() else source.parent


def load_raw_data(data, protocol: str = "pairs", images_root=None, identities_from=None,
                  folds: list[int] | None = None) -> tuple[object, list[Path], Path]:
    """(set, file of each image, images root) of `protocol` over raw photos, for DetectedSet: loaded and checked
    before any network opens, so a bad path fails first."""
    if protocol == "all-pairs":
        return raw_identities(data, images_root, identities_from, folds)
    if protocol != "pairs":
        raise EdgekdError(f"unknown protocol {protocol!r} (pairs, all-pairs)")
    if images_root is None:
        raise EdgekdError(f"{data}: with --detector, --images-root names the folder of raw photos the pairs use")
    vset, files = raw_pairs(data, images_root, folds)
    return vset, files, Path(images_root)


class DetectedSet:
    """A verification set (pairs) or identity set (all-pairs) of raw photos seen through a detector: `images(idx)`
    returns each photo's aligned crop of the face `rule` chooses (black for a photo with no face); every other
    attribute (pairs, issame, folds, labels, name, sha256, ...) is the underlying set's. Loads may come from several
    threads (edgekd.eval decodes ahead): the detector's networks must allow that (ONNX Runtime sessions do)."""

    def __init__(self, base, files: list[Path], detector, rule: str = "largest-central",
                 size: tuple[int, int] = FACE_SIZE, root: str | Path | None = None):
        if rule not in ONE_FACE_RULES:
            raise EdgekdError(f"face rule {rule!r}: evaluation embeds one face per photo ({', '.join(ONE_FACE_RULES)})")
        self.base, self.files, self.detector, self.rule, self.size = base, [Path(f) for f in files], detector, rule, \
            tuple(size)
        self.root = Path(root) if root is not None else None
        self.records: dict[int, dict] = {}
        self.detect_seconds = 0.0
        self._lock = threading.Lock()

    def __getattr__(self, name):
        if name == "base":  # not yet set (copy / unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.base, name)

    def __len__(self) -> int:
        return len(self.base)

    def shown(self, k: int) -> str:
        """Image k's file, relative to the images root when there is one."""
        p = self.files[k]
        if self.root is not None:
            try:
                return str(p.relative_to(self.root))
            except ValueError:
                pass
        return str(p)

    def image(self, k: int) -> np.ndarray:
        k = int(k)
        img = decode_image(self.files[k])
        t = time.perf_counter()
        photo = detect_and_align(img, self.detector, self.size, self.rule)
        with self._lock:
            self.detect_seconds += time.perf_counter() - t
            self.records[k] = photo.to_json()
        return photo.crops[0] if len(photo.crops) else np.zeros((*self.size, 3), np.uint8)

    def images(self, indices) -> np.ndarray:
        out = [self.image(k) for k in indices]
        return np.stack(out) if out else np.zeros((0, *self.size, 3), np.uint8)

    @property
    def no_face(self) -> np.ndarray:
        """Indices of the images loaded so far in which the detector found no face."""
        return np.asarray(sorted(k for k, r in self.records.items() if not r["chosen"]), np.int64)

    def detection_report(self) -> dict:
        """The "detection" block of the eval JSON: photos seen, the ones with no face (all), with several faces
        (count and examples), the face rule and the detector."""
        describe = getattr(self.detector, "describe", None)
        return {"images_root": str(self.root) if self.root is not None else None, "face_rule": self.rule,
                **detection_summary({self.shown(k): r for k, r in sorted(self.records.items())}),
                "detect_seconds": round(self.detect_seconds, 3),
                "detector": describe() if describe else None}

