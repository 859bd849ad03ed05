"""torch Dataset over any FaceDataset: decodes lazily in DataLoader workers, flips deterministically, preprocesses."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from edgekd.preprocess import Preprocess


class TorchFaceDataset(Dataset):
    """(float32 CHW tensor, int64 label) items.

    The horizontal flip (p=0.5) is drawn from a torch.Generator seeded by (seed, epoch, index), so it does not depend
    on worker count or on where a resumed run starts; call `set_epoch(e)` before each epoch (before the DataLoader
    creates its iterator; persistent workers keep the epoch they were started with).
    """

    def __init__(self, face_ds, preprocess: Preprocess, flip: bool = True, seed: int = 0):
        self.face_ds, self.preprocess, self.flip, self.seed = face_ds, preprocess, flip, seed
        self.epoch = 0
        self.labels = face_ds.labels
        self.num_classes = face_ds.num_classes

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.face_ds)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img, label = self.face_ds[i]
        if self.flip:
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 100_000_007 + int(i))
            if torch.rand((), generator=g) < 0.5:
                img = img[:, ::-1]
        x = self.preprocess(img[None])[0]
        return torch.from_numpy(x), torch.tensor(label, dtype=torch.int64)
