"""Registry API and the common model surface (preprocess, embedding_size, features/head split)."""

import pytest
import torch
from torch import nn

from edgekd.errors import EdgekdError
from edgekd.models import create_model, list_models, register_model
from edgekd.models import registry
from edgekd.models.base import FaceEmbedder
from edgekd.preprocess import ARCFACE

SMALL = ["mobilefacenet", "mobilenetv2", "mobilefacenet_ms1m_foamliu", "mobilefacenet_casia_xiaoccer"]


def test_list_models_has_every_required_name():
    names = list_models()
    for n in ["r18", "r34", "r50", "r100", "r200", "r101", "mobilefacenet", "mobilenetv2",
              "mobilefacenet_ms1m_foamliu", "mobilefacenet_casia_xiaoccer"]:
        assert n in names
    assert "mbf" not in names and "mbf" in list_models(include_aliases=True)


def test_alias_builds_the_same_architecture():
    a, b = create_model("mbf"), create_model("mobilefacenet")
    assert type(a) is type(b)
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}


@pytest.mark.parametrize("name", SMALL + ["r18"])
def test_model_surface(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    h, w = model.preprocess.input_size
    x = torch.randn(2, 3, h, w)
    with torch.no_grad():
        fmap = model.forward_features(x)
        emb = model(x)
        assert fmap.ndim == 4 and fmap.shape[0] == 2
        assert emb.shape == (2, model.embedding_size)
        torch.testing.assert_close(model.forward_head(fmap), emb)


def test_native_models_use_arcface_preprocessing_and_512d():
    for name in ["r18", "mobilefacenet", "mobilenetv2"]:
        with torch.device("meta"):
            m = create_model(name)
        assert m.preprocess == ARCFACE and m.embedding_size == 512


def test_pretrained_entries_have_their_own_input():
    with torch.device("meta"):
        f, x = create_model("mobilefacenet_ms1m_foamliu"), create_model("mobilefacenet_casia_xiaoccer")
    assert f.embedding_size == x.embedding_size == 128
    assert f.preprocess.input_size == (112, 112) and abs(f.preprocess.mean[0] - 0.485 * 255) < 1e-9
    assert x.preprocess.input_size == (112, 96) and x.preprocess.crop == (0, 8, 112, 96) and x.preprocess.std[0] == 128


@pytest.mark.parametrize("name", ["mobilefacenet", "mobilenetv2", "r18"])
def test_embedding_size_and_dropout_options(name):
    kw = {"embedding_size": 128} if name == "mobilefacenet" else {"embedding_size": 128, "dropout": 0.2}
    model = create_model(name, **kw).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 112, 112)).shape == (2, 128)


def test_fp16_option_keeps_float32_output_on_cpu():
    model = create_model("mbf", fp16=True).eval()
    assert model.fp16
    with torch.no_grad():
        assert model(torch.randn(1, 3, 112, 112)).dtype == torch.float32


def test_unknown_name_and_bad_option_are_one_line_errors():
    with pytest.raises(EdgekdError, match="unknown model 'r19'.*r18") as e:
        create_model("r19")
    assert "\n" not in str(e.value)
    with pytest.raises(EdgekdError, match="mobilefacenet.*bad option"):
        create_model("mbf", depth=3)


def test_register_model_decorator(monkeypatch):
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    monkeypatch.setattr(registry, "_ALIASES", dict(registry._ALIASES))

    class Tiny(FaceEmbedder):
        def __init__(self, embedding_size=8):
            super().__init__()
            self.embedding_size = embedding_size
            self.conv = nn.Conv2d(3, embedding_size, 112)

        def forward_features(self, x):
            return self.conv(x)

        def forward_head(self, fmap):
            return fmap.flatten(1)

    @register_model(aliases=("tn",))
    def tiny(embedding_size: int = 8):
        return Tiny(embedding_size)

    assert "tiny" in list_models() and create_model("tn", embedding_size=4).embedding_size == 4
    with pytest.raises(ValueError, match="twice"):
        register_model("tiny")(tiny)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["mbf", "r18"])
def test_fp16_autocast_on_cuda_matches_fp32(name):
    """arcface_torch semantics: body under autocast, float32 embedding close to the FP32 one."""
    torch.manual_seed(0)
    model = create_model(name).cuda().eval()
    x = torch.randn(4, 3, 112, 112, device="cuda")
    with torch.no_grad():
        ref = model(x)
        model.fp16 = True
        half = model(x)
    assert half.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(ref, half).min() > 0.99


def test_every_model_matches_its_cfg():
    """The torch-free cfg table is what the built models carry (preprocessing and default embedding size)."""
    from edgekd.models.cfgs import CFGS

    builtin = [e.name for e in registry.entries() if e.builder.__module__.startswith("edgekd.models.")]
    assert sorted(CFGS) == sorted(builtin)
    for name, cfg in CFGS.items():
        with torch.device("meta"):
            model = create_model(name)
        assert (model.preprocess, model.embedding_size) == (cfg.preprocess, cfg.embedding_size), name
        assert registry.model_preprocess(name) == cfg.preprocess


def test_model_preprocess_without_torch():
    """`--model NAME` for an ONNX file on the torch-free path: the preprocessing comes from the cfg."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None\n"
            "from edgekd.models.registry import model_preprocess\n"
            "p = model_preprocess('mobilefacenet_casia_xiaoccer')\n"
            "assert p.input_size == (112, 96) and p.crop == (0, 8, 112, 96), p\n"
            "assert p.aligned_size == (112, 112), p.aligned_size  # cut from the 112x112 ArcFace crop\n"
            "assert model_preprocess('mbf').input_size == model_preprocess('mbf').aligned_size == (112, 112)\n"
            "from edgekd.errors import EdgekdError\n"
            "try:\n    model_preprocess('nope')\nexcept EdgekdError as e:\n    assert 'unknown model' in str(e)\n"
            "else:\n    raise AssertionError('no error')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
