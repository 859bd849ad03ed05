"""Deterministic synthetic identities: learnable stand-ins for faces when no real data is at hand (tests, CI, demos).

Each identity is a smooth face-like pattern (skin/background colours, face oval, eyes, nose and mouth placed near
the ArcFace landmarks, plus an identity-specific low-frequency texture). Each image re-renders it under a random
similarity jitter, brightness/contrast change, feature wobble and pixel noise, so the same identity is never the
same picture and verification is non-trivial but learnable.
"""

from __future__ import annotations

import hashlib

import numpy as np

from edgekd.data.image import FACE_SIZE
from edgekd.data.verification import VerificationSet
from edgekd.errors import EdgekdError


def _identity_params(seed: int, identity: int) -> dict:
    r = np.random.default_rng([seed, identity, 0x1D])
    return _f32({
        "skin": r.uniform([120, 80, 60], [240, 200, 170]),
        "face": (r.uniform(-3, 3), r.uniform(-2, 4), r.uniform(32, 42), r.uniform(42, 54)),  # dx, dy, rx, ry
        "eyes": (r.uniform(15, 22), r.uniform(46, 56), r.uniform(3.5, 7), r.uniform(0, 90, 3)),  # half gap, y, radius, colour
        "nose": (r.uniform(66, 76), r.uniform(3, 7), r.uniform(8, 16)),  # y, half width, half length
        "mouth": (r.uniform(86, 96), r.uniform(9, 18), r.uniform(2, 5), r.uniform([120, 30, 30], [220, 110, 110])),
        "tex_k": r.normal(0, 0.09, (6, 2)),  # wave vectors (rad / px): wavelengths of ~20 px and more
        "tex_phase": r.uniform(0, 2 * np.pi, 6),
        "tex_amp": r.normal(0, 16, (6, 3)),
    })


def _f32(p: dict) -> dict:
    """float32 throughout: rendering runs per item in DataLoader workers, so it must be cheap (~ms)."""
    return {k: tuple(np.float32(x) if np.ndim(x) == 0 else np.asarray(x, np.float32) for x in v) if isinstance(v, tuple)
            else np.asarray(v, np.float32) for k, v in p.items()}


def _soft(d: np.ndarray, edge: float = 1.5) -> np.ndarray:
    """Soft inside-mask for a signed 'distance' d (<0 inside)."""
    return 1.0 / (1.0 + np.exp(np.clip(d / edge, -30, 30)))


def _texture(p: dict, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Sum of plane waves cos(k.(u,v) + phase) x colour amplitudes. (u, v) is affine in the pixel grid, so each wave
    is cos(a x + c) cos(b y) - sin(a x + c) sin(b y): separable, 1-D trig + one matrix product instead of 2-D trig."""
    k0, k1 = p["tex_k"][:, :1], p["tex_k"][:, 1:]
    c = k0 * u[0, 0] + k1 * v[0, 0] + p["tex_phase"][:, None]
    a = k0 * (u[0, 1] - u[0, 0]) + k1 * (v[0, 1] - v[0, 0])
    b = k0 * (u[1, 0] - u[0, 0]) + k1 * (v[1, 0] - v[0, 0])
    ax = a * np.arange(u.shape[1], dtype=np.float32) + c  # (waves, W)
    by = b * np.arange(u.shape[0], dtype=np.float32)  # (waves, H)
    amp = p["tex_amp"]  # (waves, 3)
    rows = np.concatenate([np.cos(by)[:, :, None] * amp[:, None], -np.sin(by)[:, :, None] * amp[:, None]])  # (2w, H, 3)
    cols = np.concatenate([np.cos(ax), np.sin(ax)])  # (2w, W)
    return np.einsum("khc,kw->hwc", rows, cols, optimize=True).astype(np.float32)


def render(p: dict, rng: np.random.Generator, size=FACE_SIZE) -> np.ndarray:
    h, w = size
    ang, scale = np.float32(rng.normal(0, 0.06)), np.float32(rng.normal(1, 0.04))
    tx, ty = rng.normal(0, 2, 2).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    # inverse similarity: output pixel -> coordinates in the identity's canonical frame
    x0, y0 = (xx - cx - tx) / scale, (yy - cy - ty) / scale
    u = np.cos(ang) * x0 + np.sin(ang) * y0 + cx - (112 - w) / 2
    v = -np.sin(ang) * x0 + np.cos(ang) * y0 + cy
    fdx, fdy, rx, ry = p["face"]
    face = _soft((np.hypot((u - 55.5 - fdx) / rx, (v - 60 - fdy) / ry) - 1) * min(rx, ry))
    tex = _texture(p, u, v)
    bg = rng.uniform(30, 220, 3).astype(np.float32)  # per image: the background must not identify the person
    img = bg * (1 - face[..., None]) + (p["skin"] + tex) * face[..., None]
    gap, ey, er, ecol = p["eyes"]
    gap, ey = gap + rng.normal(0, 0.7), ey + rng.normal(0, 0.7)
    for ex in (55.5 - gap, 55.5 + gap):
        m = _soft(np.hypot(u - ex, (v - ey) * 1.6) - er)[..., None]
        img = img * (1 - m) + ecol * m
    ny, nw, nl = p["nose"]
    m = _soft(np.maximum(np.abs(u - 55.5) - nw, np.abs(v - ny + nl / 2) - nl / 2))[..., None] * 0.35
    img = img * (1 - m)
    my, mw, mh, mcol = p["mouth"]
    mw = mw * rng.uniform(0.85, 1.15)  # expression
    m = _soft((np.hypot((u - 55.5) / mw, (v - my) / mh) - 1) * mh)[..., None]
    img = img * (1 - m) + mcol * m
    img = (img - 128) * rng.uniform(0.8, 1.2) + 128 * rng.uniform(0.8, 1.2)  # contrast, brightness
    img += rng.standard_normal(img.shape, np.float32) * rng.uniform(4, 12)
    return np.clip(img, 0, 255).astype(np.uint8)


MAX_IMAGES = 10_000_000


class SyntheticFaces:
    """`num_identities` x `images_per_identity` rendered faces (112x112 RGB), a pure function of (seed, index).

    Different seeds give different identities: train on one seed, verify on another for disjoint identities.
    """

    def __init__(self, num_identities: int, images_per_identity: int, seed: int = 0, size=FACE_SIZE):
        if num_identities < 1 or images_per_identity < 1:
            raise EdgekdError(f"synthetic:{num_identities}x{images_per_identity}: needs at least 1 identity and 1 image each")
        if num_identities * images_per_identity > MAX_IMAGES:  # labels and names are allocated up front
            raise EdgekdError(f"synthetic:{num_identities}x{images_per_identity}: "
                              f"{num_identities * images_per_identity:,} images, more than the {MAX_IMAGES:,} allowed")
        self.num_identities, self.per_id, self.seed, self.size = num_identities, images_per_identity, seed, tuple(size)
        self.source = f"synthetic:{num_identities}x{images_per_identity}:{seed}"
        self.num_classes = num_identities
        self.labels = np.repeat(np.arange(num_identities, dtype=np.int64), images_per_identity)
        self.class_names = [str(i) for i in range(num_identities)]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        identity, j = divmod(int(i), self.per_id)
        rng = np.random.default_rng([self.seed, identity, j, 0x1A])
        return render(_identity_params(self.seed, identity), rng, self.size), identity


def synthetic_verification_set(num_identities: int = 40, pairs_per_fold: int = 20, images_per_identity: int = 4,
                               seed: int = 1) -> VerificationSet:
    """10 identity-disjoint folds (like LFW view 2), each half same-identity, half different-identity pairs.

    The default seed (1) differs from SyntheticFaces' default (0), so its identities are not the training ones.
    """
    if num_identities < 20 or images_per_identity < 2 or pairs_per_fold < 2:
        raise EdgekdError("synthetic verification set needs >= 20 identities (2 per fold), >= 2 images each, >= 2 pairs per fold")
    ds = SyntheticFaces(num_identities, images_per_identity, seed)
    r = np.random.default_rng([seed, 0x5E7])
    groups = np.array_split(r.permutation(num_identities), 10)
    pairs, issame, folds = [], [], []
    for f, g in enumerate(groups):
        for q in range(pairs_per_fold):
            same = q < pairs_per_fold // 2
            if same:
                a = b = r.choice(g)
                ia, ib = r.choice(images_per_identity, 2, replace=False)
            else:
                a, b = r.choice(g, 2, replace=False)
                ia, ib = r.integers(images_per_identity, size=2)
            pairs.append([a * images_per_identity + ia, b * images_per_identity + ib])
            issame.append(same)
            folds.append(f)
    used, inverse = np.unique(np.asarray(pairs), return_inverse=True)
    spec = f"synthetic-verification:{num_identities}x{images_per_identity}:{pairs_per_fold}:{seed}"
    return VerificationSet(spec, spec, inverse.reshape(-1, 2), issame, folds, len(used),
                           lambda k: ds[int(used[k])][0], hashlib.sha256(spec.encode()).hexdigest(), ds.size)
