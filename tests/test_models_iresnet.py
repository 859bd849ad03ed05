"""IResNet / MobileFaceNet key-for-key compatibility with insightface arcface_torch checkpoints.

The expected keys and shapes are written out here from arcface_torch's module tree (conv1, bn1, prelu,
layer1..4 of IBasicBlock bn1/conv1/bn2/prelu/conv2/bn3/downsample, bn2, fc, features), independently of
edgekd's implementation, so a renamed or reshaped parameter fails.
"""

import pytest
import torch

from edgekd.models import create_model, detect_architecture, load_model
from edgekd.models.iresnet import LAYOUTS


def _bn(prefix, c):
    return {f"{prefix}.{s}": (c,) for s in ("weight", "bias", "running_mean", "running_var")} | {
        f"{prefix}.num_batches_tracked": ()}


def arcface_iresnet_spec(layout, d=512):
    spec = {"conv1.weight": (64, 3, 3, 3), **_bn("bn1", 64), "prelu.weight": (64,)}
    cin = 64
    for li, (planes, n) in enumerate(zip((64, 128, 256, 512), layout), start=1):
        for b in range(n):
            p = f"layer{li}.{b}"
            spec |= {**_bn(f"{p}.bn1", cin), f"{p}.conv1.weight": (planes, cin, 3, 3), **_bn(f"{p}.bn2", planes),
                     f"{p}.prelu.weight": (planes,), f"{p}.conv2.weight": (planes, planes, 3, 3),
                     **_bn(f"{p}.bn3", planes)}
            if b == 0:
                spec |= {f"{p}.downsample.0.weight": (planes, cin, 1, 1), **_bn(f"{p}.downsample.1", planes)}
            cin = planes
    return spec | {**_bn("bn2", 512), "fc.weight": (d, 512 * 49), "fc.bias": (d,), **_bn("features", d)}


def _shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_iresnet_keys_and_shapes_match_arcface_torch(name):
    with torch.device("meta"):  # r200 costs no memory this way
        model = create_model(name)
    assert _shapes(model) == arcface_iresnet_spec(LAYOUTS[name])
    assert list(model.state_dict()) == list(arcface_iresnet_spec(LAYOUTS[name]))  # same order too


def test_arcface_torch_blocks_per_layer():
    assert LAYOUTS == {"r18": (2, 2, 2, 2), "r34": (3, 4, 6, 3), "r50": (3, 4, 14, 3), "r100": (3, 13, 30, 3),
                       "r200": (6, 26, 60, 6), "r101": (3, 4, 23, 3)}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_iresnet_detected_from_keys(name):
    """detect_architecture reads only keys and shapes, so a meta-tensor state_dict stands in for a file."""
    sd = {k: torch.empty(s, device="meta") for k, s in arcface_iresnet_spec(LAYOUTS[name], d=256).items()}
    assert detect_architecture(sd, "x.pth") == (name, {"embedding_size": 256})


@pytest.mark.parametrize("name", ["r18", "r34"])
def test_arcface_format_backbone_pth_loads_strict(tmp_path, name):
    """An arcface_torch-style backbone.pth (plain state_dict, random values) loads with no --model."""
    torch.manual_seed(0)
    spec = arcface_iresnet_spec(LAYOUTS[name])
    sd = {k: (torch.randn(s) if s else torch.tensor(7)) for k, s in spec.items()}
    torch.save(sd, tmp_path / "backbone.pth")
    model, info = load_model(tmp_path / "backbone.pth")
    assert info.name == name and info.embedding_size == 512 and not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_mobilefacenet_keys_match_arcface_torch_get_mbf():
    """Spot-check arcface_torch mbf names/shapes, including its groups=64 second conv and the GDC head."""
    s = _shapes(create_model("mbf"))
    assert s["layers.0.layers.0.weight"] == (128, 3, 3, 3)
    assert s["layers.1.layers.0.weight"] == (128, 2, 3, 3)
    assert s["layers.2.layers.1.layers.0.weight"] == (128, 1, 3, 3)
    assert s["layers.3.layers.3.layers.2.layers.0.weight"] == (128, 128, 1, 1)
    assert s["layers.5.layers.5.layers.0.layers.0.weight"] == (256, 256, 1, 1)
    assert s["layers.6.layers.0.layers.0.weight"] == (512, 256, 1, 1)
    assert "layers.8.layers.0.weight" not in s and "layers.7.layers.2.layers.0.layers.0.weight" not in s
    assert s["conv_sep.layers.0.weight"] == (512, 256, 1, 1) and s["conv_sep.layers.2.weight"] == (512,)
    assert s["features.layers.0.layers.0.weight"] == (512, 1, 7, 7)
    assert s["features.layers.2.weight"] == (512, 512) and "features.layers.2.bias" not in s
    assert s["features.layers.3.running_var"] == (512,)
    assert len(s) == 333
