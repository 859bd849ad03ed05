"""Face data: verification sets (.bin, pairs.txt), training datasets (RecordIO, folders, label lists, synthetic),
alignment from raw photos, fold lists (folds.py) and which data a run uses (plan.py). numpy + Pillow only; the
torch wrapper loads lazily."""

from edgekd.data.datasets import FaceDataset, open_dataset, pack_dataset
from edgekd.data.image import FACE_SIZE, decode_image
from edgekd.data.synthetic import SyntheticFaces, synthetic_verification_set
from edgekd.data.verification import (VerificationSet, lfw_fold_identities, load_verification, pack_pairs, read_bin,
                                      write_bin)

__all__ = ["FACE_SIZE", "FaceDataset", "SyntheticFaces", "TorchFaceDataset", "VerificationSet", "align_folder",
           "decode_image", "lfw_fold_identities", "load_verification", "open_dataset", "pack_dataset", "pack_pairs",
           "read_bin", "synthetic_verification_set", "write_bin"]


def __getattr__(name):
    """`TorchFaceDataset` imports torch and `align_folder` multiprocessing only when asked for."""
    if name == "TorchFaceDataset":
        from edgekd.data.torch_dataset import TorchFaceDataset

        return TorchFaceDataset
    if name == "align_folder":
        from edgekd.data.align import align_folder

        return align_folder
    raise AttributeError(f"module 'edgekd.data' has no attribute {name!r}")
