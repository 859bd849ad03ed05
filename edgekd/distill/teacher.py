"""The frozen teacher: its own preprocessing, an embedding cache, and a margin head fitted on the user's identities.

The data pipeline produces *student* input. The teacher must see the same faces through *its* preprocessing
(foamliu: ImageNet mean/std; xiaoccer: 112x96 crop, /128), so `teacher_input` undoes the student normalisation
back to the exact uint8 pixels and applies the teacher's Preprocess in torch - numerically the same as
`teacher.preprocess(uint8 images)` (tested).

Embeddings are cached by the content of those uint8 pixels, so a cache hit is correct under any augmentation;
the training set (and its horizontal flips) is embedded once, stored atomically as .npz keyed by a hash of
(teacher weights, data, preprocess), and a teacher margin head is fitted on it with the backbone frozen.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from edgekd.errors import EdgekdError
from edgekd.io import atomic_path
from edgekd.preprocess import Preprocess

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
MAX_CACHE_ENTRIES = 200_000  # random augmentation would otherwise grow the cache without bound


def _key(u8: np.ndarray) -> bytes:
    """Content key of one uint8 HxWx3 image."""
    return hashlib.blake2b(np.ascontiguousarray(u8).tobytes(), digest_size=16).digest()


def _norm_tensors(p: Preprocess) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.tensor(p.mean, dtype=torch.float32).view(1, 3, 1, 1),
            torch.tensor(p.std, dtype=torch.float32).view(1, 3, 1, 1))


class Teacher:
    """A frozen face model (eval mode, no grad, requires_grad False; FP16 on CUDA if asked). Deliberately not an
    nn.Module attribute of the objective: its weights never reach an optimizer, a state_dict or train()."""

    def __init__(self, model: torch.nn.Module, info, student_preprocess: Preprocess, fp16: bool = False):
        self.model, self.info, self.fp16 = model.eval(), info, fp16
        for p in model.parameters():
            p.requires_grad_(False)
        self.preprocess: Preprocess = model.preprocess
        self.student_preprocess = student_preprocess
        self.embedding_size = int(model.embedding_size)
        self.s_mean, self.s_std = _norm_tensors(student_preprocess)
        self.t_mean, self.t_std = _norm_tensors(self.preprocess)
        self.cache: dict[bytes, torch.Tensor] = {}
        self.hits = self.misses = 0
        self.device = torch.device("cpu")
        self.dtype = torch.float32

    def to(self, device: torch.device | str) -> "Teacher":
        self.device = torch.device(device)
        self.dtype = torch.float16 if (self.fp16 and self.device.type == "cuda") else torch.float32
        self.model.to(self.device, self.dtype)
        for name in ("s_mean", "s_std", "t_mean", "t_std"):
            setattr(self, name, getattr(self, name).to(self.device))
        return self

    def pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Student input (N,3,H,W) -> the uint8-valued pixels it came from (float, 0..255)."""
        return (x.float() * self.s_std + self.s_mean).round_().clamp_(0, 255)

    def teacher_input(self, x: torch.Tensor) -> torch.Tensor:
        u = self.pixels(x)
        if self.preprocess.crop is not None:
            t, l, h, w = self.preprocess.crop
            u = u[:, :, t : t + h, l : l + w]
        if tuple(u.shape[2:]) != tuple(self.preprocess.input_size):
            raise EdgekdError(
                f"{self.info.weights}: teacher input is {self.preprocess.input_size[0]}x{self.preprocess.input_size[1]}"
                f" but the student's images are {u.shape[2]}x{u.shape[3]} (after the teacher's crop)")
        return ((u - self.t_mean) / self.t_std).to(self.dtype)

    @torch.no_grad()
    def forward_uint8(self, images: np.ndarray) -> torch.Tensor:
        """Embeddings of uint8 NHWC images through the teacher's numpy Preprocess (the reference path)."""
        x = torch.from_numpy(self.preprocess(images)).to(self.device, self.dtype)
        return self.model(x).float()

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(last feature map, embedding) of student input `x`; uncached (feature maps are too big to keep)."""
        fmap = self.model.forward_features(self.teacher_input(x))
        return fmap.float(), self.model.forward_head(fmap).float()

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Teacher embeddings of student input `x`, served from the content-keyed cache where possible."""
        u8 = self.pixels(x).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        keys = [_key(img) for img in u8]
        missing = [i for i, k in enumerate(keys) if k not in self.cache]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        computed: dict[int, torch.Tensor] = {}
        if missing:
            emb = self.model(self.teacher_input(x[missing])).float().cpu()
            computed = dict(zip(missing, emb))
            for i, e in computed.items():
                if len(self.cache) < MAX_CACHE_ENTRIES:
                    self.cache[keys[i]] = e
        return torch.stack([computed[i] if i in computed else self.cache[k] for i, k in enumerate(keys)]).to(x.device)


def _data_identity(dataset) -> dict:
    labels = np.asarray(dataset.labels, dtype=np.int64)
    return {"source": str(dataset.source), "n": len(dataset), "num_classes": int(dataset.num_classes),
            "labels_sha256": hashlib.sha256(labels.tobytes()).hexdigest()}


def cache_key(teacher: Teacher, dataset) -> str:
    """Hash of what the cached embeddings depend on: teacher weights, the data (source, size, labels) and the
    teacher's preprocessing. The student's preprocessing does not enter: lookups are keyed by raw pixels."""
    ident = {"format": CACHE_FORMAT, "teacher_sha256": teacher.info.weights_sha256, "data": _data_identity(dataset),
             "teacher_preprocess": teacher.preprocess.to_dict()}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


def embed_dataset(teacher: Teacher, dataset, cache_dir: Path, compute: bool = True, flip: bool = True,
                  batch_size: int = 64) -> np.ndarray | None:
    """Teacher embeddings (V, N, D) of every training image (V=1) and its horizontal flip (V=2), read from
    `cache_dir/teacher_emb_<key>.npz` or (if `compute`) computed and stored atomically; they also seed the
    teacher's in-memory cache. None when not stored and not asked to compute (the cache then fills lazily)."""
    views = 2 if flip else 1
    path = Path(cache_dir) / f"teacher_emb_{cache_key(teacher, dataset)}_v{views}.npz"
    if not path.exists() and not compute:
        return None
    if path.exists():
        with np.load(path) as z:
            emb, keys = z["emb"], z["keys"]
        log.info("teacher embeddings: cache hit %s", path)
    else:
        n = len(dataset)
        emb = np.zeros((views, n, teacher.embedding_size), np.float32)
        keys = np.zeros((views, n, 16), np.uint8)
        for start in tqdm(range(0, n, batch_size), desc="teacher embeddings", unit="batch"):
            idx = range(start, min(n, start + batch_size))
            imgs = np.stack([dataset[i][0] for i in idx])
            for f, batch in enumerate((imgs, np.ascontiguousarray(imgs[:, :, ::-1]))[:views]):
                emb[f, idx.start : idx.stop] = teacher.forward_uint8(batch).cpu().numpy()
                keys[f, idx.start : idx.stop] = np.frombuffer(b"".join(_key(im) for im in batch), np.uint8).reshape(-1, 16)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, emb=emb, keys=keys)
    for f in range(len(emb)):
        for k, e in zip(keys[f], emb[f]):
            if len(teacher.cache) < MAX_CACHE_ENTRIES:
                teacher.cache[k.tobytes()] = torch.from_numpy(e.copy())
    return emb


def fit_teacher_head(teacher: Teacher, dataset, emb: np.ndarray, cache_dir: Path, s: float = 64.0, m: float = 0.5,
                     epochs: int = 20, seed: int = 0) -> np.ndarray:
    """Class centres (C, D) for the frozen teacher over the training identities: initialised at the mean
    normalised embedding of each class, refined for a few ArcFace epochs on the cached embeddings (seconds;
    the backbone is never run). Cached beside the embeddings."""
    path = Path(cache_dir) / f"teacher_head_{cache_key(teacher, dataset)}_v{len(emb)}_s{s:g}_m{m:g}_e{epochs}_seed{seed}.npy"
    if path.exists():
        return np.load(path)
    labels = torch.from_numpy(np.asarray(dataset.labels, np.int64))
    c = int(dataset.num_classes)
    x = F.normalize(torch.from_numpy(emb).reshape(-1, emb.shape[-1]), dim=1)
    y = labels.repeat(len(emb))
    w = torch.zeros(c, x.shape[1]).index_add_(0, y, x)
    w = torch.nn.Parameter(F.normalize(w + 1e-6 * torch.randn(w.shape, generator=torch.Generator().manual_seed(seed)), dim=1))
    opt = torch.optim.Adam([w], lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    cos_m, sin_m = np.cos(m), np.sin(m)
    for _ in tqdm(range(epochs), desc="teacher head", unit="epoch"):
        for idx in torch.randperm(len(x), generator=gen).split(512):
            cos = (x[idx] @ F.normalize(w, dim=1).t()).clamp(-1 + 1e-7, 1 - 1e-7)
            tgt = cos.gather(1, y[idx, None])
            cos = cos.scatter(1, y[idx, None], tgt * cos_m - (1 - tgt * tgt).sqrt() * sin_m)
            loss = F.cross_entropy(s * cos, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    centres = F.normalize(w.detach(), dim=1)
    acc = ((x @ centres.t()).argmax(1) == y).float().mean().item()
    log.info("teacher head: %d classes, train top-1 %.3f", c, acc)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, centres.numpy())
    return centres.numpy()


def load_teacher_head(path: Path, embedding_size: int) -> np.ndarray:
    """A user-given teacher head: .npy (C, D) class centres (e.g. a teacher_head_*.npy fitted by an earlier run);
    D must be the teacher's embedding size (the class count is checked against the data later)."""
    try:
        w = np.load(path)
    except (OSError, ValueError) as e:
        raise EdgekdError(f"{path}: cannot read teacher head ({e})") from None
    if w.ndim != 2 or w.shape[1] != embedding_size:
        raise EdgekdError(f"{path}: teacher head has shape {w.shape}, expected (classes, {embedding_size}) for the "
                          f"teacher's embedding size {embedding_size}")
    return w.astype(np.float32)
