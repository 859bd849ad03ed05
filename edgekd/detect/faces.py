"""What a detector returns (Face) and which face of a photo counts (choose_face)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekd.errors import EdgekdError

ONE_FACE_RULES = ("largest-central", "largest")  # one face per photo: what a pair compares, an evaluation embeds
RULES = (*ONE_FACE_RULES, "all")


@dataclass(frozen=True)
class Face:
    """box: (x1, y1, x2, y2) in input pixels; score: the final stage's face probability; landmarks: (5, 2) x, y of
    left eye, right eye, nose, left and right mouth corner (the order edgekd.data.align expects)."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return (x2 - x1) * (y2 - y1)

    def to_json(self) -> dict:
        return {"box": [round(float(v), 2) for v in self.box], "score": round(float(self.score), 5),
                "landmarks": np.round(np.asarray(self.landmarks, np.float64), 2).tolist()}


def choose_face(faces: list[Face], image_shape, rule: str = "largest-central") -> list[Face]:
    """The faces that count under `rule` ([] when there are none):
    largest-central: insightface's align_lfw choice, box area - 2 * squared offset of the box centre from the image
      centre (a crowd photo's subject is big and central; the reference's "largest" picks a bigger face at the edge);
    largest: the biggest box; all: every face, in the detector's order."""
    if rule not in RULES:
        raise EdgekdError(f"face rule {rule!r}: one of {', '.join(RULES)}")
    if not faces or rule == "all":
        return list(faces)
    if rule == "largest":
        return [max(faces, key=lambda f: f.area)]
    h, w = image_shape[:2]
    boxes = np.array([f.box for f in faces], np.float64)
    offset = ((boxes[:, 0] + boxes[:, 2]) / 2 - w / 2) ** 2 + ((boxes[:, 1] + boxes[:, 3]) / 2 - h / 2) ** 2
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return [faces[int(np.argmax(area - 2.0 * offset))]]
