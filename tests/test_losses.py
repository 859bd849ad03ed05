"""Margin heads and Partial FC: exact margin values, the threshold fallback, finite gradients, sampling."""

import math

import pytest
import torch

from edgekd.errors import EdgekdError
from edgekd.losses import CombinedMarginLoss, PartialFC, margin_preset


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _margin(loss, target_cos, label=0):
    logits = torch.tensor([[target_cos, 0.3]])
    return loss(logits, torch.tensor([label]))[0]


def test_arcface_adds_angle_and_scales():
    out = _margin(CombinedMarginLoss(64, 1.0, 0.5, 0.0), 0.8)
    assert out[0].item() == pytest.approx(64 * math.cos(math.acos(0.8) + 0.5), rel=1e-5)
    assert out[1].item() == pytest.approx(64 * 0.3, rel=1e-6)  # non-target logits only scaled


def test_arcface_threshold_fallback_keeps_target_monotonic():
    loss = CombinedMarginLoss(64, 1.0, 0.5, 0.0)
    below = -0.9  # theta + m > pi: cos(theta + m) would rise again
    assert below < loss.th
    assert _margin(loss, below)[0].item() == pytest.approx(64 * (below - math.sin(math.pi - 0.5) * 0.5), rel=1e-5)
    easy = CombinedMarginLoss(64, 1.0, 0.5, 0.0, easy_margin=True)
    assert _margin(easy, -0.2)[0].item() == pytest.approx(64 * -0.2, rel=1e-5)


def test_cosface_and_combined():
    assert margin_preset("cosface") == (1.0, 0.0, 0.35)
    assert _margin(CombinedMarginLoss(30, *margin_preset("cosface")), 0.7)[0].item() == pytest.approx(30 * 0.35, rel=1e-5)
    out = _margin(CombinedMarginLoss(64, 1.2, 0.3, 0.2), 0.6)
    assert out[0].item() == pytest.approx(64 * (math.cos(1.2 * math.acos(0.6) + 0.3) - 0.2), rel=1e-4)
    with pytest.raises(EdgekdError, match="unknown margin head 'sphere'"):
        margin_preset("sphere")


def test_label_minus_one_gets_no_margin_and_gradients_are_finite_at_cos_one():
    logits = torch.tensor([[1.0, 0.2], [0.5, -0.1]], requires_grad=True)
    out = CombinedMarginLoss(64, 1.0, 0.5, 0.0)(logits, torch.tensor([0, -1]))
    assert torch.allclose(out[1], 64 * logits[1].detach())
    out.sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_partial_fc_samples_all_positives_and_remaps_labels():
    torch.manual_seed(0)
    head = PartialFC(CombinedMarginLoss(), 8, 20, sample_rate=0.3, seed=1)
    labels = torch.tensor([3, 17, 3, 9])
    index, local = head.sample(labels)
    assert index.numel() == 6 and set(labels.tolist()) <= set(index.tolist())
    assert torch.equal(index[local], labels)
    again, _ = head.sample(labels)
    assert torch.equal(index, again)  # same step counter: same sample (resume reproduces it)
    loss = head(torch.randn(4, 8), labels)
    loss.backward()
    touched = (head.weight.grad.abs().sum(1) > 0).nonzero().flatten()
    assert set(touched.tolist()) <= set(index.tolist()) and int(head.steps) == 1


def test_partial_fc_full_rate_learns():
    torch.manual_seed(0)
    centres = torch.randn(5, 16)
    labels = torch.arange(5).repeat(4)
    emb = torch.nn.Parameter(centres[labels] + 0.3 * torch.randn(20, 16))
    head = PartialFC(CombinedMarginLoss(s=16, m2=0.2), 16, 5)
    opt = torch.optim.SGD(list(head.parameters()) + [emb], lr=0.5)
    first = None
    for _ in range(30):
        loss = head(emb, labels)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


@pytest.mark.parametrize("rate", [0.0, 1.5, -0.1])
def test_partial_fc_rejects_rate_outside_unit_interval(rate):
    with pytest.raises(EdgekdError, match=r"outside \(0, 1\]"):
        PartialFC(CombinedMarginLoss(), 8, 10, sample_rate=rate)


def test_head_rejects_labels_beyond_its_classes():
    with pytest.raises(EdgekdError, match="outside the head's 4 classes"):
        PartialFC(CombinedMarginLoss(), 8, 4)(torch.randn(2, 8), torch.tensor([1, 4]))
