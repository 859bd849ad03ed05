"""Params / multiply-adds are measured; check them against hand-computed counts and loose published ranges, and the
figures the cfgs record for each registered model's default build against the count."""

import pytest
import torch
from torch import nn

from edgekd.models import complexity, create_model
from edgekd.models.base import FaceEmbedder
from edgekd.models.flops import count_complexity, recorded_cfg
from edgekd.models.registry import entries
from edgekd.preprocess import Preprocess

BUILT_IN = [e.name for e in entries() if e.builder.__module__.startswith("edgekd.models.")]


class _ConvNet(FaceEmbedder):
    preprocess = Preprocess(input_size=(16, 12))

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.fc = nn.Linear(8 * 16 * 12, 5)
        self.embedding_size = 5

    def forward_features(self, x):
        return torch.relu(self.conv(x))

    def forward_head(self, fmap):
        return self.fc(fmap.flatten(1))


def test_counts_match_hand_computation():
    c = complexity(_ConvNet())
    conv_macs = 16 * 12 * 8 * 3 * 3 * 3
    fc_macs = 8 * 16 * 12 * 5
    assert c["macs"] == conv_macs + fc_macs
    assert c["params"] == 8 * 3 * 9 + 8 * 16 * 12 * 5 + 5
    assert c["gflops"] == pytest.approx(c["macs"] * 1e-9)


def test_model_is_left_untouched():
    model = create_model("mbf").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    by_instance, by_name = complexity(model), complexity("mbf")
    assert by_instance == by_name and model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_plausible_values():
    c = {n: complexity(n) for n in ["r18", "r50", "r100", "mobilefacenet", "mobilenetv2",
                                     "mobilefacenet_ms1m_foamliu", "mobilefacenet_casia_xiaoccer"]}
    assert c["r18"]["macs"] > c["mobilefacenet"]["macs"] and c["r100"]["macs"] > c["r50"]["macs"] > c["r18"]["macs"]
    assert 0.35 < c["mobilefacenet"]["gflops"] < 0.55  # insightface lists mbf at ~0.45 G
    assert 5.5 < c["r50"]["gflops"] < 7.0 and 11 < c["r100"]["gflops"] < 13.5  # ~6.3 G / ~12.1 G
    assert 1.5e6 < c["mobilefacenet"]["params"] < 2.5e6 and 20e6 < c["r18"]["params"] < 30e6
    for n in ["mobilefacenet_ms1m_foamliu", "mobilefacenet_casia_xiaoccer"]:  # "~1.0 M parameters" (README)
        assert 0.9e6 < c[n]["params"] < 1.1e6
    # 112x96 input: fewer multiply-adds than the 112x112 model with the same body
    assert c["mobilefacenet_casia_xiaoccer"]["macs"] < c["mobilefacenet_ms1m_foamliu"]["macs"]


@pytest.mark.parametrize("name", BUILT_IN)
def test_recorded_figures_are_the_count(name):
    """Every built-in model records its default build's figures, and they are exactly what the counter gives: a
    figure that drifts from the architecture (or a new model without one) fails here."""
    assert recorded_cfg(name) is not None, f"{name}: edgekd.models.cfgs records no params/macs"
    with torch.device("meta"):
        model = create_model(name)
    counted = count_complexity(model)
    assert complexity(name) == complexity(model, name) == counted
    assert complexity(name)["gflops"] == counted["gflops"]  # the same float, not an approximation


def test_other_builds_are_counted_not_looked_up():
    recorded = complexity("mobilefacenet")
    with torch.device("meta"):
        narrow, fp16 = create_model("mobilefacenet", embedding_size=128), create_model("mbf", fp16=True)
    c = complexity(narrow, "mobilefacenet")
    assert c == count_complexity(narrow) and c["macs"] < recorded["macs"] and c["params"] < recorded["params"]
    assert complexity(fp16, "mbf") == count_complexity(fp16) == recorded  # fp16 changes neither figure
    assert complexity(_ConvNet(), "mobilefacenet") == count_complexity(_ConvNet())  # a name that does not fit
