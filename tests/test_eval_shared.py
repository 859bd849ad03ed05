"""Real-data checks: the pretrained MobileFaceNets on aligned LFW view 2 (shared data; skipped when absent)."""

import numpy as np
import pytest
import torch

from edgekd.eval import evaluate

FOAMLIU = ("weights", "mobilefacenet_ms1m_foamliu")


def small_lfw(shared_data, every=10):
    """Fold 1 of LFW view 2, every 10th pair (30 same + 30 different), re-split into 10 folds of 6."""
    from edgekd.data.verification import VerificationSet, load_verification

    v = load_verification(shared_data / "lfw" / "pairs.txt").subset([0])
    keep = np.arange(len(v.pairs))[::every]
    return VerificationSet("lfw-fold1-small", v.source, v.pairs[keep], v.issame[keep], np.arange(keep.size) % 10,
                           v.num_images, v.image, v.sha256)


@pytest.mark.shared_data
def test_foamliu_on_an_lfw_subset(shared_data):
    from edgekd.runtime import open_artifact

    torch.set_num_threads(2)
    rt = open_artifact(shared_data.joinpath(*FOAMLIU, "mobilefacenet.pt"), device="cpu")
    r = evaluate(rt, small_lfw(shared_data), rt.preprocess, flip=False, progress=False)
    assert r["num_pairs"] == 60 and r["accuracy_mean"] >= 0.95, r["fold_accuracies"]
    assert r["auc"] > 0.98


@pytest.mark.shared_data
def test_foamliu_onnx_agrees_with_checkpoint(shared_data):
    """The authors' ONNX (no edgekd metadata, fixed batch 1) with preprocessing from the registry via --model."""
    from edgekd.runtime import open_artifact

    torch.set_num_threads(2)
    pt = open_artifact(shared_data.joinpath(*FOAMLIU, "mobilefacenet.pt"), device="cpu")
    from edgekd.models.registry import model_preprocess

    ox = open_artifact(shared_data.joinpath(*FOAMLIU, "MobileFaceNet.onnx"), model="mobilefacenet_ms1m_foamliu",
                       preprocess=model_preprocess("mobilefacenet_ms1m_foamliu"))
    assert ox.preprocess == pt.preprocess and ox.embedding_size == 128
    v = small_lfw(shared_data)
    x = pt.preprocess(v.images(range(4)))
    a, b = pt(x), ox(x)
    cos = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.9999, cos


@pytest.mark.shared_data
def test_foamliu_full_lfw_reaches_99(shared_data):
    from edgekd.data.verification import load_verification
    from edgekd.runtime import open_artifact

    torch.set_num_threads(2)
    rt = open_artifact(shared_data.joinpath(*FOAMLIU, "mobilefacenet.pt"), device="cpu")
    r = evaluate(rt, load_verification(shared_data / "lfw" / "pairs.txt"), rt.preprocess, progress=False)
    assert r["num_pairs"] == 6000 and r["accuracy_mean"] >= 0.99, r["fold_accuracies"]
