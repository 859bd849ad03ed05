"""load_model / save_checkpoint: formats, wrappers, detection, and one-line errors naming file, arch and keys."""

import argparse

import pytest
import torch

from edgekd.errors import EdgekdError
from edgekd.models import create_model, load_model, read_weights, save_checkpoint
from edgekd.preprocess import ARCFACE


@pytest.fixture(scope="module")
def mbf128():
    torch.manual_seed(1)
    return create_model("mbf", embedding_size=128).eval()


def _one_line_error(fn, *args, **kw) -> str:
    with pytest.raises(EdgekdError) as e:
        fn(*args, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_checkpoint_roundtrip_restores_model_and_meta(tmp_path, mbf128):
    path = save_checkpoint(tmp_path / "ck.pt", mbf128, "mbf", {"embedding_size": 128},
                           extra={"meta": {"method": "soft", "teacher": "r50"}, "step": 12})
    raw = torch.load(path, map_location="cpu", weights_only=True)  # primitives and tensors only
    assert raw["step"] == 12 and raw["edgekd"]["format"] == 1 and raw["edgekd"]["method"] == "soft"
    assert raw["edgekd"]["model"] == "mobilefacenet" and raw["edgekd"]["preprocess"] == ARCFACE.to_dict()
    model, info = load_model(path)  # no name: the meta block says what it is
    assert info.name == "mobilefacenet" and info.kwargs == {"embedding_size": 128} and info.embedding_size == 128
    assert info.meta["teacher"] == "r50" and info.weights == path and len(info.weights_sha256) == 64
    assert info.preprocess == ARCFACE and not model.training
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        torch.testing.assert_close(model(x), mbf128(x))
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left nothing behind


def test_checkpoint_of_wrapped_model_has_plain_keys(tmp_path, mbf128):
    wrapped = torch.nn.DataParallel(mbf128)
    save_checkpoint(tmp_path / "ck.pt", wrapped, "mobilefacenet", {"embedding_size": 128})
    sd, meta = read_weights(tmp_path / "ck.pt")
    assert set(sd) == set(mbf128.state_dict()) and meta["model"] == "mobilefacenet"


def test_explicit_name_and_kwargs_override(tmp_path, mbf128):
    path = save_checkpoint(tmp_path / "ck.pt", mbf128, "mbf", {"embedding_size": 128})
    model, info = load_model(path, "mbf", fp16=True)
    assert info.kwargs == {"embedding_size": 128, "fp16": True} and model.fp16


@pytest.mark.parametrize("wrap", [
    lambda sd: sd,
    lambda sd: {"state_dict": sd, "epoch": 3},
    lambda sd: {"model": sd, "optimizer": {"lr": 0.1}},
    lambda sd: {"net_state_dict": sd, "epoch": 68},
    lambda sd: {"model": {"state_dict": sd}},
    lambda sd: {"epoch": 1, "state_dict_backbone": sd, "state_dict_softmax_fc": {"weight": torch.zeros(4, 128)}},
    lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
    lambda sd: {f"_orig_mod.{k}": v for k, v in sd.items()},
], ids=["plain", "state_dict", "model", "net_state_dict", "nested", "arcface-resume", "module-prefix", "compiled-prefix"])
def test_wrappers_and_prefixes(tmp_path, mbf128, wrap):
    torch.save(wrap(mbf128.state_dict()), tmp_path / "w.pth")
    model, info = load_model(tmp_path / "w.pth")
    assert info.name == "mobilefacenet" and info.kwargs == {"embedding_size": 128} and info.meta == {}
    for k, v in model.state_dict().items():
        assert torch.equal(v, mbf128.state_dict()[k])


@pytest.mark.parametrize("name", ["mobilefacenet", "mobilenetv2", "mobilefacenet_ms1m_foamliu",
                                  "mobilefacenet_casia_xiaoccer", "r18"])
def test_each_architecture_detected_from_a_plain_state_dict(tmp_path, name):
    torch.save(create_model(name).state_dict(), tmp_path / "w.pth")
    assert load_model(tmp_path / "w.pth")[1].name == name


def test_missing_num_batches_tracked_is_accepted(tmp_path, mbf128):
    """Checkpoints from old torch versions have no num_batches_tracked buffers."""
    sd = {k: v for k, v in mbf128.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(sd, tmp_path / "old.pth")
    assert load_model(tmp_path / "old.pth")[1].name == "mobilefacenet"


def test_other_architecture_names_file_arch_and_keys(tmp_path, mbf128):
    path = tmp_path / "mbf.pth"
    torch.save(mbf128.state_dict(), path)
    msg = _one_line_error(load_model, path, "r18")
    assert str(path) in msg and "r18" in msg and "missing" in msg and "conv1.weight" in msg
    assert "unexpected" in msg and "layers.0.layers.0.weight" in msg


def test_other_depth_reports_missing_blocks(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(create_model("r18").state_dict(), path)
    msg = _one_line_error(load_model, path, "r34")
    assert str(path) in msg and "r34" in msg and "missing" in msg and "layer1.2." in msg


def test_other_embedding_size_names_the_shape(tmp_path, mbf128):
    path = tmp_path / "mbf.pth"
    torch.save(mbf128.state_dict(), path)
    msg = _one_line_error(load_model, path, "mbf", embedding_size=512)
    assert str(path) in msg and "mobilefacenet" in msg and "embedding_size=512" in msg
    assert "features.layers.2.weight" in msg and "(128, 512)" in msg and "(512, 512)" in msg


def test_unknown_keys_ask_for_model(tmp_path):
    torch.save({"encoder.weight": torch.zeros(3, 3)}, tmp_path / "u.pth")
    msg = _one_line_error(load_model, tmp_path / "u.pth")
    assert "u.pth" in msg and "--model" in msg and "encoder.weight" in msg


def test_ambiguous_file_asks_for_model(tmp_path):
    """A file carrying the signature keys of two architectures cannot be told apart."""
    sd = {**create_model("mobilefacenet_ms1m_foamliu").state_dict(),
          **create_model("mobilefacenet_casia_xiaoccer").state_dict()}
    torch.save(sd, tmp_path / "both.pth")
    msg = _one_line_error(load_model, tmp_path / "both.pth")
    assert "several architectures" in msg and "--model" in msg and "both.pth" in msg


@pytest.mark.parametrize("content, expect", [
    (b"not a checkpoint at all", "not a PyTorch weights file"),
    (b"", "not a PyTorch weights file"),
], ids=["text", "empty"])
def test_non_torch_file(tmp_path, content, expect):
    (tmp_path / "bad.pth").write_bytes(content)
    msg = _one_line_error(load_model, tmp_path / "bad.pth")
    assert "bad.pth" in msg and expect in msg


def test_truncated_file(tmp_path, mbf128):
    torch.save(mbf128.state_dict(), tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    msg = _one_line_error(load_model, tmp_path / "cut.pth")
    assert "cut.pth" in msg and "corrupt" in msg


def test_unsafe_pickle_is_refused(tmp_path):
    torch.save({"args": argparse.Namespace(lr=0.1), "w": torch.zeros(1)}, tmp_path / "p.pth")
    msg = _one_line_error(load_model, tmp_path / "p.pth")
    assert "p.pth" in msg and "refused" in msg and "argparse.Namespace" in msg
    assert "False" not in msg and "add_safe_globals" not in msg  # never advise loading an untrusted file unsafely


def test_no_state_dict_inside(tmp_path):
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "n.pth")
    msg = _one_line_error(load_model, tmp_path / "n.pth")
    assert "n.pth" in msg and "no state_dict" in msg


def test_missing_file_and_missing_weights(tmp_path):
    assert "no such file" in _one_line_error(load_model, tmp_path / "absent.pth")
    assert "no weights given" in _one_line_error(load_model, None, "r18")


def test_checkpoint_naming_an_unknown_model(tmp_path, mbf128):
    path = save_checkpoint(tmp_path / "ck.pt", mbf128, "mbf", {"embedding_size": 128})
    raw = torch.load(path, weights_only=True)
    raw["edgekd"]["model"] = "mbf_v9"
    torch.save(raw, path)
    msg = _one_line_error(load_model, path)
    assert "ck.pt" in msg and "unknown model 'mbf_v9'" in msg
