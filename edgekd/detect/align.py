"""Photo -> aligned face crops through a deployed detector: the one path `edgekd data align --detector`,
`edgekd eval --detector`, `edgekd verify` and the video bench take, so they choose and align faces alike.

Each photo gives a `PhotoFaces`: how many faces the detector found, which of them the rule kept, and their crops
on the ArcFace template (edgekd.data.align, the same warp the landmark-file alignment uses). No face is an outcome,
never a silent centre crop: `crops` is empty and the caller reports it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekd.data.align import align_image
from edgekd.detect.faces import Face, choose_face


@dataclass(frozen=True)
class PhotoFaces:
    detected: int            # faces the detector found
    chosen: tuple[Face, ...]  # the ones `rule` kept (empty: no face)
    crops: np.ndarray        # (len(chosen), H, W, 3) uint8

    def to_json(self) -> dict:
        return {"detected": self.detected, "chosen": [f.to_json() for f in self.chosen]}


def align_faces(image: np.ndarray, faces, size: tuple[int, int]) -> np.ndarray:
    """(N, H, W, 3) uint8 crops of `faces` aligned on their landmarks (ArcFace template of `size`)."""
    if not faces:
        return np.zeros((0, *size, 3), np.uint8)
    return np.stack([align_image(image, np.asarray(f.landmarks), size) for f in faces])


def detect_and_align(image: np.ndarray, detector, size: tuple[int, int] = (112, 112),
                     rule: str = "largest-central") -> PhotoFaces:
    """Detect every face of an RGB uint8 `image`, keep those `rule` names (edgekd.detect.faces.choose_face), align
    them to `size`."""
    faces = detector(image)
    chosen = choose_face(faces, image.shape, rule)
    return PhotoFaces(len(faces), tuple(chosen), align_faces(image, chosen, size))
