"""KD methods, the frozen teacher's preprocessing and cache, the two-player adversarial update, spec parsing."""

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import register_tiny  # noqa: E402

from edgekd.distill.methods import METHODS, MethodShapes, Features, build_methods, parse_methods, parse_options  # noqa: E402
from edgekd.distill.objective import DistillObjective  # noqa: E402
from edgekd.distill.teacher import Teacher, embed_dataset, fit_teacher_head  # noqa: E402
from edgekd.errors import EdgekdError  # noqa: E402
from edgekd.preprocess import ARCFACE, Preprocess  # noqa: E402

register_tiny("distill")  # distill_tiny: tiny_models "distill", a stride-8 stem on 112x112 faces

FOAMLIU = Preprocess(mean=(0.485 * 255, 0.456 * 255, 0.406 * 255), std=(0.229 * 255, 0.224 * 255, 0.225 * 255))
XIAOCCER = Preprocess(input_size=(112, 96), mean=(127.5,) * 3, std=(128.0,) * 3, crop=(0, 8, 112, 96))


def _teacher(preprocess=ARCFACE, dim=8, **kw) -> Teacher:
    from edgekd.models import create_model

    torch.manual_seed(1)
    model = create_model("distill_tiny", embedding_size=dim, **kw)
    model.preprocess = preprocess
    return Teacher(model, SimpleNamespace(weights="t.pt", weights_sha256="0" * 64, name="distill_tiny"), ARCFACE)


@pytest.mark.parametrize("name", ["soft", "cosine", "sp", "rkd", "adv"])
def test_each_method_loss_decreases(name):
    """A linear student trained with the method alone moves towards a fixed random teacher."""
    torch.manual_seed(0)
    x, labels = torch.randn(32, 20), torch.arange(32) % 4
    teacher, student = nn.Linear(20, 8), nn.Linear(20, 12)
    proj, own_head = nn.Linear(12, 8, bias=False), nn.Parameter(torch.randn(4, 12))
    centres = nn.functional.normalize(torch.randn(4, 8), dim=1)
    method = build_methods([(name, 1.0)], parse_options([], [name]), MethodShapes(12, 8, 4))[0]
    params = list(student.parameters()) + list(proj.parameters()) + [own_head]
    opt = torch.optim.Adam(params, lr=0.02)
    losses = []
    for _ in range(40):
        with torch.no_grad():
            t = teacher(x)
        s = student(x)
        f = Features(labels, s, proj(s), t,
                     s_logits=16 * nn.functional.normalize(s, dim=1) @ nn.functional.normalize(own_head, dim=1).t(),
                     t_logits=16 * nn.functional.normalize(t, dim=1) @ centres.t())
        loss, logs = method(f)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        assert all(np.isfinite(v) for v in logs.values())
    # D is a fixed random net here (no after_step): the generator loss moves, but less than a distance does
    assert losses[-1] < (0.95 if name == "adv" else 0.8) * losses[0], losses


def test_teacher_input_matches_its_own_numpy_preprocess():
    """Student input -> exact uint8 pixels -> teacher preprocessing (ImageNet mean/std; 112x96 crop)."""
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    x = torch.from_numpy(ARCFACE(imgs))
    for pre in (FOAMLIU, XIAOCCER, ARCFACE):
        got = _teacher(pre).teacher_input(x)
        np.testing.assert_allclose(got.numpy(), pre(imgs), atol=1e-5)


def test_teacher_is_frozen_and_cache_is_exact():
    t = _teacher()
    assert not t.model.training and all(not p.requires_grad for p in t.model.parameters())
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (4, 112, 112, 3), dtype=np.uint8)
    x = torch.from_numpy(ARCFACE(imgs))
    first = t.embed(x)
    assert (t.hits, t.misses) == (0, 4)
    again = t.embed(x.flip(3))  # horizontal flips are new content ...
    assert t.misses == 8
    np.testing.assert_allclose(t.embed(x).numpy(), first.numpy())  # ... the originals now come from the cache
    assert t.hits == 4
    np.testing.assert_allclose(again.numpy(), t.forward_uint8(imgs[:, :, ::-1].copy()).numpy(), atol=1e-5)


def test_dataset_embeddings_are_cached_on_disk_and_seed_flipped_lookups(tmp_path):
    from edgekd.data import SyntheticFaces

    data = SyntheticFaces(3, 2)
    t = _teacher()
    emb = embed_dataset(t, data, tmp_path)
    assert emb.shape == (2, 6, 8) and len(list(tmp_path.glob("teacher_emb_*.npz"))) == 1
    img, _ = data[4]
    x = torch.from_numpy(ARCFACE(img[None, :, ::-1].copy()))
    np.testing.assert_allclose(t.embed(x)[0].numpy(), emb[1, 4], atol=1e-5)
    assert t.misses == 0  # served from the precomputed flipped view
    t2 = _teacher()
    assert np.array_equal(embed_dataset(t2, data, tmp_path, compute=False), emb)  # read back, not recomputed
    assert embed_dataset(t2, SyntheticFaces(3, 3), tmp_path, compute=False) is None  # other data: other key
    centres = fit_teacher_head(t, data, emb, tmp_path, epochs=5)
    assert centres.shape == (3, 8) and np.allclose(np.linalg.norm(centres, axis=1), 1, atol=1e-5)
    x_all = torch.nn.functional.normalize(torch.from_numpy(emb.reshape(-1, 8)), dim=1)
    assert ((x_all @ torch.from_numpy(centres).t()).argmax(1).numpy() == np.tile(data.labels, 2)).mean() > 0.8


def test_adversarial_d_and_student_use_separate_optimizers():
    from edgekd.models import create_model

    for disc in ("mlp", "conv"):
        torch.manual_seed(0)
        t = _teacher(dim=8, channels=6)
        student = create_model("distill_tiny", embedding_size=16)
        spec = [("adv", 1.0)]
        obj = DistillObjective(t, spec, parse_options([f"adv.disc={disc}"], ["adv"]), 4, 16,
                               student_fmap=(8, 7, 7), teacher_fmap=(6, 7, 7))
        adv = obj.methods[0]
        d_params = list(adv.d.parameters())
        d_ids = {id(p) for p in d_params}
        main = obj.main_parameters()
        assert not d_ids & {id(p) for p in main}  # D is never in the trainer's optimizer
        assert {id(p) for g in obj.own_optimizers["adv.discriminator"].param_groups for p in g["params"]} == d_ids
        assert {id(p) for p in obj.project.parameters()} <= {id(p) for p in main}
        if disc == "conv":  # 8 student channels -> 6 teacher channels by a learned 1x1 conv, trained with the student
            assert {id(p) for p in adv.fmap_proj.parameters()} <= {id(p) for p in main}
        opt = torch.optim.SGD(list(student.parameters()) + main, lr=0.1)
        x = torch.from_numpy(ARCFACE(np.random.default_rng(0).integers(0, 256, (8, 112, 112, 3), dtype=np.uint8)))
        y = torch.arange(8) % 4
        s0, d0 = [p.detach().clone() for p in student.parameters()], [p.detach().clone() for p in d_params]
        loss, logs = obj(student, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert all(torch.equal(a, b) for a, b in zip(d0, d_params))  # the student step leaves D alone
        assert any(not torch.equal(a, b) for a, b in zip(s0, student.parameters()))
        s1 = [p.detach().clone() for p in student.parameters()]
        d_logs = obj.after_step(student, x, y)
        assert any(not torch.equal(a, b) for a, b in zip(d0, d_params))  # D's own step
        assert all(torch.equal(a, b) for a, b in zip(s1, student.parameters()))  # ... leaves the student alone
        assert 0.0 <= d_logs["adv_d_acc"] <= 1.0 and "adv_g" in logs and "arcface" in logs
        assert "adv.discriminator" in obj.extra_state()


def test_parse_methods_and_options():
    assert parse_methods("soft:1.0, adv:0.1,cosine") == [("soft", 1.0), ("adv", 0.1), ("cosine", 1.0)]
    opts = parse_options(["soft.temperature=2", "soft.teacher_centres=true", "adv.disc=conv"], ["soft", "adv"])
    assert opts["soft"] == {"temperature": 2.0, "alpha": None, "teacher_centres": True}
    assert opts["adv"]["disc"] == "conv" and opts["adv"]["smooth"] == 0.9
    assert set(METHODS) >= {"soft", "adv", "cosine", "sp", "rkd"}


@pytest.mark.parametrize("spec,opts,msg", [
    ("bogus", [], "unknown distillation method 'bogus'"),
    ("soft:abc", [], "is not a number"),
    ("soft:-1", [], "positive finite"),
    ("soft,soft:2", [], "given twice"),
    ("", [], "no distillation method"),
    ("soft", ["soft.tau=3"], "has no option 'tau'"),
    ("soft", ["adv.disc=conv"], "not among --method"),
    ("soft", ["soft.temperature=hot"], "expected float"),
    ("soft", ["temperature=3"], "METHOD.KEY=VALUE"),
])
def test_bad_method_specs_are_one_line_errors(spec, opts, msg):
    with pytest.raises(EdgekdError, match=msg) as e:
        parse_options(opts, [n for n, _ in parse_methods(spec)])
    assert "\n" not in str(e.value)


def test_bad_method_values_are_errors():
    for opts, msg in ((["soft.temperature=0"], "temperature"), (["soft.alpha=1.5"], "alpha")):
        with pytest.raises(EdgekdError, match=msg):
            build_methods([("soft", 1.0)], parse_options(opts, ["soft"]), MethodShapes(8, 8, 4))
    with pytest.raises(EdgekdError, match="spatial size"):
        build_methods([("adv", 1.0)], parse_options(["adv.disc=conv"], ["adv"]),
                      MethodShapes(8, 8, 4, student_fmap=(8, 7, 7), teacher_fmap=(8, 7, 6)))
