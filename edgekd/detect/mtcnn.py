"""MTCNN's detection pipeline in numpy over three network callables (torch-free: ONNX Runtime, TensorRT or, for
the reference, PyTorch run the networks; everything between them happens here).

Every constant and rounding follows facenet-pytorch 2.6.0 (`models/utils/detect_face.py`), whose weights these are,
so the deployed path reproduces its detections: pyramid scales 12/min_face * factor^k while the short side stays
>= 12 px, level size int(side * scale + 1); resizing is torch's `interpolate(mode="area")` (= adaptive average
pooling, see area_resize), bit for bit, read from one summed-area table per frame for every level and crop (the
pyramid's per-level prefix sums were half the detection time); pixels (x - 127.5) / 128; P-Net windows
(prob >= threshold) NMS'd at 0.5 per scale, then 0.7 over all scales, IoU without the +1 of pixel-inclusive boxes
(torchvision); R-Net and O-Net take crops of the squared boxes clipped to the image (not zero-padded) resized to
24 / 48, keep prob > threshold; R-Net NMS 0.7 IoU; O-Net's final NMS 0.7 divides by the smaller box ("Min",
pixel-inclusive areas). Box arithmetic is float32, as there.
One difference: a box whose clipped crop is empty is dropped (the reference would misalign its batch).
"""

from __future__ import annotations

import functools
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from typing import Callable

import numpy as np

from edgekd.detect.faces import Face
from edgekd.errors import EdgekdError

F32 = np.float32
NETWORKS = ("pnet", "rnet", "onet")
CROP = {"rnet": 24, "onet": 48}


@dataclass(frozen=True)
class MtcnnSettings:
    """The reference's defaults (facenet-pytorch MTCNN()); every field can be overridden."""

    min_face: float = 20.0
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    factor: float = 0.709
    nms_scale: float = 0.5   # P-Net, within one pyramid level
    nms_pnet: float = 0.7    # P-Net, over all levels
    nms_rnet: float = 0.7
    nms_onet: float = 0.7    # "Min" overlap
    max_batch: int | None = None  # R-/O-Net crops per network call (None: all at once; engines: their profile max)

    def __post_init__(self):
        t = tuple(float(v) for v in self.thresholds)
        object.__setattr__(self, "thresholds", t)
        if len(t) != 3 or not all(0.0 <= v <= 1.0 for v in t):
            raise EdgekdError(f"MTCNN thresholds {self.thresholds}: three probabilities in [0, 1]")
        if not (math.isfinite(self.min_face) and self.min_face >= 12):
            raise EdgekdError(f"MTCNN min_face {self.min_face}: at least 12 px (P-Net's window)")
        if not 0.0 < self.factor < 1.0:
            raise EdgekdError(f"MTCNN factor {self.factor}: the pyramid step must lie in (0, 1)")
        for f in ("nms_scale", "nms_pnet", "nms_rnet", "nms_onet"):
            if not 0.0 < getattr(self, f) <= 1.0:
                raise EdgekdError(f"MTCNN {f} {getattr(self, f)}: an overlap threshold in (0, 1]")
        if self.max_batch is not None and self.max_batch < 1:
            raise EdgekdError(f"MTCNN max_batch {self.max_batch}: at least 1")

    @classmethod
    def make(cls, **overrides) -> MtcnnSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise EdgekdError(f"unknown MTCNN setting {unknown[0]!r} ({', '.join(sorted(known))})")
        return cls(**{k: v for k, v in overrides.items() if v is not None})

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _bins(n_in, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive pooling bins [floor(i*in/out), ceil((i+1)*in/out)), integer-exact as torch computes them; `n_in`
    may be an (N, 1) array of lengths (one row of bins per length)."""
    i = np.arange(n_out, dtype=np.int64)
    return (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)


def integral(x: np.ndarray) -> np.ndarray:
    """(H, W, C) 8-bit image -> (H + 1, W + 1, C) integer summed-area table (a zero row and column first). Integer
    sums are exact (int32 while the whole image's sum fits, up to 4K frames: half the memory traffic of int64), and
    every box sum of a bin stays below 2**24, so float32 holds it exactly and its mean, divided by the bin's height
    and then its width as torch's adaptive average pooling divides, is bit-equal to torch's. Channels last: a
    pixel's C sums are adjacent, so one gather reads them all."""
    if x.dtype != np.uint8:
        raise EdgekdError(f"MTCNN takes 8-bit pixels, got {x.dtype}")
    dtype = np.int32 if x.size * 255 < 2**31 else np.int64
    s = np.zeros((x.shape[0] + 1, x.shape[1] + 1) + x.shape[2:], dtype)
    np.cumsum(x, axis=1, dtype=dtype, out=s[1:, 1:])  # along rows first: the faster order of the two
    np.cumsum(s[1:, 1:], axis=0, out=s[1:, 1:])
    return s


def _pixels(a: np.ndarray) -> np.ndarray:
    """A contiguous (..., W, C) array as (..., W) items of C values each: a gather of pixels moves each pixel's C
    values as one item, a third of the index arithmetic of gathering them channel by channel."""
    return a.reshape(a.shape[:-2] + (-1,)).view(np.dtype((np.void, a.shape[-1] * a.itemsize)))


def _values(items: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Gathered _pixels items back to (..., C) values of `like`'s dtype."""
    return items.view(like.dtype).reshape(items.shape + like.shape[-1:])


def _bin_means(sums: np.ndarray, heights: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """(..., h, w, C) integer bin sums -> (..., C, h, w) float32 means, divided by each bin's height (heights
    (..., h)) and then its width (widths (..., w)), the order torch's adaptive average pooling divides in."""
    mean = sums.astype(F32)
    mean /= heights.astype(F32)[..., :, None, None]
    mean /= widths.astype(F32)[..., None, :, None]
    return np.ascontiguousarray(np.moveaxis(mean, -1, -3))


def _box_means(s: np.ndarray, r0, r1, c0, c1) -> np.ndarray:
    """Means of the boxes rows [r0, r1) x cols [c0, c1) of the table `s` (H+1, W+1, C): r0/r1 (N, h), c0/c1 (N, w)
    integer arrays -> (N, C, h, w) float32, by flat pixel index into the table."""
    pixels, width = _pixels(s).reshape(-1), s.shape[1]

    def at(rows, cols):
        return _values(np.take(pixels, rows[:, :, None] * width + cols[:, None, :]), s)

    return _bin_means(at(r1, c1) - at(r0, c1) - at(r1, c0) + at(r0, c0), r1 - r0, c1 - c0)


def resize_table(table: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The image behind the integral `table`, area-resized to `size` -> (1, C, h, w) float32. Separable, as one
    level's bins form a grid: the bins' rows first (whole-row copies), then their columns (pixel gathers)."""
    (r0, r1), (c0, c1) = _bins(table.shape[0] - 1, size[0]), _bins(table.shape[1] - 1, size[1])
    rows = table[r1] - table[r0]
    px = _pixels(rows)
    sums = _values(np.take(px, c1, axis=1), rows) - _values(np.take(px, c0, axis=1), rows)
    return _bin_means(sums, r1 - r0, c1 - c0)[None]


def area_resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(C, H, W) -> (C, h, w) float32, equal to torch.nn.functional.interpolate(mode="area"): each output pixel
    is the mean of its adaptive-pooling bin (a box filter when shrinking; when enlarging, bins of one or two pixels,
    so not plain repetition)."""
    return resize_table(integral(np.moveaxis(x, 0, -1)), size)[0]


NMS_BLOCK = 256  # candidates whose overlaps with the rest are computed in one vectorised step


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "iou") -> np.ndarray:
    """Greedy NMS, indices kept in descending score (ties: input order). mode "iou": torchvision's (areas
    (x2-x1)(y2-y1), a box goes when IoU > threshold); "min": the reference's final stage (areas (x2-x1+1)(y2-y1+1),
    overlap / smaller area, a box stays only when <= threshold). The overlaps of the next NMS_BLOCK surviving boxes
    with all survivors come in one array step and the greedy pass over them is a loop of bit operations, instead of
    one round of array calls per kept box (a frame's cross-scale pass keeps most of its ~130 boxes)."""
    b = np.asarray(boxes, F32).reshape(-1, 4)
    one = F32(1) if mode == "min" else F32(0)
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    area = (x2 - x1 + one) * (y2 - y1 + one)
    alive = np.argsort(-np.asarray(scores, F32), kind="stable")
    keep = []
    while alive.size:
        head, rest = alive[:NMS_BLOCK, None], alive[None, :]
        w = np.maximum(F32(0), np.minimum(x2[head], x2[rest]) - np.maximum(x1[head], x1[rest]) + one)
        h = np.maximum(F32(0), np.minimum(y2[head], y2[rest]) - np.maximum(y1[head], y1[rest]) + one)
        inter = w * h
        with np.errstate(invalid="ignore"):  # IoU 0/0 of two empty boxes: NaN, which keeps the box
            if mode == "min":
                drops = ~(inter / np.minimum(area[head], area[rest]) <= threshold)
            else:
                drops = inter / (area[head] + area[rest] - inter) > threshold
        gone = np.zeros(alive.size, bool)
        for i in range(len(head)):
            if not gone[i]:
                keep.append(alive[i])
                gone |= drops[i]
        alive = alive[len(head):][~gone[len(head):]]
    return np.asarray(keep, np.int64)


def pyramid(h: int, w: int, min_face: float, factor: float) -> list[float]:
    """The scales of the P-Net pyramid (python floats, as the reference computes them)."""
    m = 12.0 / min_face
    minl = min(h, w) * m
    scales, s = [], m
    while minl >= 12:
        scales.append(s)
        s *= factor
        minl *= factor
    return scales


def level_size(h: int, w: int, scale: float) -> tuple[int, int]:
    return int(h * scale + 1), int(w * scale + 1)


def _normalise(x: np.ndarray) -> np.ndarray:
    """The networks' input scale, (x - 127.5) / 128, in place on a float32 array."""
    x -= F32(127.5)
    x *= F32(0.0078125)
    return x


def _windows(reg: np.ndarray, prob: np.ndarray, scale: float, threshold: float) -> np.ndarray:
    """P-Net's map -> rows (x1, y1, x2, y2, score, 4 regressions) of 12x12 windows at stride 2."""
    ys, xs = np.nonzero(prob >= threshold)
    s = F32(scale)
    bb = np.stack([xs, ys], 1).astype(F32)
    q1 = np.floor((F32(2) * bb + F32(1)) / s)
    q2 = np.floor((F32(2) * bb + F32(12)) / s)
    return np.concatenate([q1, q2, prob[ys, xs][:, None], reg[:, ys, xs].T], 1).astype(F32)


def _rerec(b: np.ndarray) -> np.ndarray:
    """Square each box on its centre (side = the longer side)."""
    b = b.copy()
    h, w = b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]
    side = np.maximum(w, h)
    b[:, 0] = b[:, 0] + w * F32(0.5) - side * F32(0.5)
    b[:, 1] = b[:, 1] + h * F32(0.5) - side * F32(0.5)
    b[:, 2] = b[:, 0] + side
    b[:, 3] = b[:, 1] + side
    return b


def _bbreg(b: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Calibrate boxes by the regression, in units of pixel-inclusive width and height."""
    b = b.copy()
    w = b[:, 2] - b[:, 0] + F32(1)
    h = b[:, 3] - b[:, 1] + F32(1)
    b[:, :4] = b[:, :4] + reg[:, :4].astype(F32) * np.stack([w, h, w, h], 1)
    return b


def _crops(table: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, size, size) normalised area-resized crops of the boxes clipped to the image (1-based as the
    reference), all from the frame's integral table, and the indices of the boxes whose clipped crop is not
    empty."""
    h, w = table.shape[0] - 1, table.shape[1] - 1
    t = np.trunc(boxes[:, :4]).astype(np.int64)
    x, y = np.maximum(t[:, 0], 1), np.maximum(t[:, 1], 1)
    ex, ey = np.minimum(t[:, 2], w), np.minimum(t[:, 3], h)
    ok = np.nonzero((ey > y - 1) & (ex > x - 1))[0]
    x0, y0 = (x[ok] - 1)[:, None], (y[ok] - 1)[:, None]
    r0, r1 = _bins((ey[ok] - y[ok] + 1)[:, None], size)
    c0, c1 = _bins((ex[ok] - x[ok] + 1)[:, None], size)
    return _normalise(_box_means(table, y0 + r0, y0 + r1, x0 + c0, x0 + c1)), ok


def _run_batched(net: Callable, x: np.ndarray, max_batch: int | None) -> tuple[np.ndarray, ...]:
    if not max_batch or len(x) <= max_batch:
        return tuple(np.asarray(o) for o in net(x))
    parts = [net(x[i:i + max_batch]) for i in range(0, len(x), max_batch)]
    return tuple(np.concatenate([np.asarray(p[j]) for p in parts]) for j in range(len(parts[0])))


class Mtcnn:
    """`detect(image)`: uint8 (H, W, 3) RGB -> faces in descending score. `networks`: "pnet", "rnet", "onet" ->
    function of an (N, 3, H, W) float32 array returning the network's outputs in edgekd.models.mtcnn's order:
    P-Net (reg (N,4,h,w), prob (N,2,h,w)), R-Net (reg (N,4), prob (N,2)), O-Net (reg, landmarks (N,10), prob).

    level_workers > 1: the pyramid levels (resize, P-Net, windows, per-level NMS) run on that many threads, which
    needs a P-Net callable that may be called concurrently (an ONNX Runtime session); the levels are independent
    and gathered in order, so the faces are the same. close() stops the threads."""

    def __init__(self, networks: dict[str, Callable], settings: MtcnnSettings | None = None, *,
                 level_workers: int = 1, **overrides):
        missing = [n for n in NETWORKS if n not in networks]
        if missing:
            raise EdgekdError(f"MTCNN needs the {', '.join(missing)} network")
        self.networks = networks
        self.settings = settings or MtcnnSettings.make(**overrides)
        self.level_workers = max(1, int(level_workers))
        self._levels = ThreadPoolExecutor(self.level_workers, "mtcnn-pyramid") if self.level_workers > 1 else None

    def close(self) -> None:
        if self._levels is not None:
            self._levels.shutdown()
            self._levels = None

    def __call__(self, image: np.ndarray) -> list[Face]:
        return self.detect(image)

    def detect(self, image: np.ndarray) -> list[Face]:
        img = np.asarray(image)
        if img.ndim != 3 or img.shape[2] != 3 or min(img.shape[:2]) < 1:
            raise EdgekdError(f"MTCNN takes an (H, W, 3) RGB image, got shape {img.shape}")
        table = integral(img)  # one summed-area table serves every pyramid level and crop
        boxes = self._proposals(table)
        if len(boxes):
            boxes = self._refine(table, boxes)
        if not len(boxes):
            return []
        boxes, points = self._output(table, boxes)
        return [Face(tuple(float(v) for v in b[:4]), float(b[4]), p.astype(np.float64)) for b, p in zip(boxes, points)]

    def _level(self, table: np.ndarray, scale: float) -> np.ndarray:
        """One pyramid level's windows: resize, P-Net, windows above the threshold, NMS within the level."""
        s = self.settings
        level = _normalise(resize_table(table, level_size(table.shape[0] - 1, table.shape[1] - 1, scale)))
        reg, prob = self.networks["pnet"](level)
        win = _windows(np.asarray(reg)[0], np.asarray(prob)[0, 1], scale, s.thresholds[0])
        return win[nms(win[:, :4], win[:, 4], s.nms_scale)]

    def _proposals(self, table: np.ndarray) -> np.ndarray:
        s = self.settings
        scales = pyramid(table.shape[0] - 1, table.shape[1] - 1, s.min_face, s.factor)
        level = functools.partial(self._level, table)
        found = list(self._levels.map(level, scales) if self._levels is not None else map(level, scales))
        boxes = np.concatenate(found) if found else np.zeros((0, 9), F32)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], s.nms_pnet)]
        bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        moved = boxes[:, :4] + boxes[:, 5:9] * np.stack([bw, bh, bw, bh], 1)
        return _rerec(np.concatenate([moved, boxes[:, 4:5]], 1).astype(F32))

    def _refine(self, table: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        s = self.settings
        crops, ok = _crops(table, boxes, CROP["rnet"])
        boxes = boxes[ok]
        if not len(boxes):
            return boxes
        reg, prob = _run_batched(self.networks["rnet"], crops, s.max_batch)
        score = prob[:, 1].astype(F32)
        keep = score > s.thresholds[1]
        boxes = np.concatenate([boxes[keep, :4], score[keep, None]], 1)
        reg = reg[keep]
        pick = nms(boxes[:, :4], boxes[:, 4], s.nms_rnet)
        return _rerec(_bbreg(boxes[pick], reg[pick]))

    def _output(self, table: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = self.settings
        crops, ok = _crops(table, boxes, CROP["onet"])
        boxes = boxes[ok]
        if not len(boxes):
            return boxes, np.zeros((0, 5, 2), F32)
        reg, marks, prob = _run_batched(self.networks["onet"], crops, s.max_batch)
        score = prob[:, 1].astype(F32)
        keep = score > s.thresholds[2]
        boxes = np.concatenate([boxes[keep, :4], score[keep, None]], 1)
        reg, marks = reg[keep], marks[keep].astype(F32)
        w = boxes[:, 2] - boxes[:, 0] + F32(1)
        h = boxes[:, 3] - boxes[:, 1] + F32(1)
        px = w[:, None] * marks[:, :5] + boxes[:, 0:1] - F32(1)
        py = h[:, None] * marks[:, 5:10] + boxes[:, 1:2] - F32(1)
        points = np.stack([px, py], 2)
        boxes = _bbreg(boxes, reg)
        pick = nms(boxes[:, :4], boxes[:, 4], s.nms_onet, mode="min")
        return boxes[pick], points[pick]
