"""`edgekd eval --detector`: real LFW raw photos detected and aligned end to end; a photo with no face costs its
pairs (never dropped), in the pairs protocol and all-pairs; the JSON's detection block; one-line errors."""

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from detector_files import exported_detector
from edgekd.cli import cli
from edgekd.eval.allpairs import allpairs_metrics
from edgekd.eval.metrics import sphereface_accuracy, verification_metrics

FOAMLIU = ("weights", "mobilefacenet_ms1m_foamliu", "MobileFaceNet.onnx")
# One fold of 5 same + 5 different pairs the foamliu model separates by a wide margin from the detector's crops
# (squared distances 0.24-0.75 vs >= 1.8): accuracy is exactly 1 until a photo goes missing.
SAME = [("Abel_Pacheco", 1, 4), ("Hamzah_Haz", 1, 2), ("Kristin_Davis", 1, 2), ("Federico_Trillo", 2, 3),
        ("Trent_Lott", 2, 3)]
DIFFERENT = [("Abdel_Madi_Shabneh", 1, "Dean_Barker", 1), ("Angela_Lansbury", 1, "Steven_Van_Zandt", 1),
             ("Glenn_Plummer", 1, "Maria_Garcia", 1), ("Dave_Tucker", 1, "Gary_Gitnick", 1),
             ("Abel_Pacheco", 1, "Glenn_Plummer", 1)]
MULTI_FACE = 3  # Hamzah_Haz_0001 (3 faces), Kristin_Davis_0002 and Trent_Lott_0002 (2 each)
MISSING = "Abel_Pacheco/Abel_Pacheco_0001.jpg"  # in one same and one different pair


def _grey(path):
    Image.fromarray(np.full((150, 150, 3), 128, np.uint8)).save(path, format="JPEG")


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    return exported_detector(tmp_path_factory)


@pytest.fixture(scope="module")
def embedder(shared_data):
    path = shared_data.joinpath(*FOAMLIU)
    if not path.is_file():
        pytest.skip(f"{path} absent")
    return path


@pytest.fixture
def lfw_raw(shared_data, tmp_path):
    """pairs.txt (1 fold of 5 + 5) and a folder with copies of the raw_150 photos it names."""
    root = tmp_path / "raw"
    names = [(n, a) for n, a, _ in SAME] + [(n, b) for n, _, b in SAME] + \
        [(n, a) for n, a, _, _ in DIFFERENT] + [(m, b) for _, _, m, b in DIFFERENT]
    for name, k in set(names):
        (root / name).mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_data / "lfw" / "raw_150" / name / f"{name}_{k:04d}.jpg", root / name)
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("1\t5\n" + "".join(f"{n}\t{a}\t{b}\n" for n, a, b in SAME)
                     + "".join(f"{n}\t{a}\t{m}\t{b}\n" for n, a, m, b in DIFFERENT))
    return pairs, root


def _eval(embedder, detector, data, *args):
    return CliRunner().invoke(cli, ["eval", "--onnx", str(embedder), "--model", "mobilefacenet_ms1m_foamliu",
                                    "--data", str(data), "--detector", str(detector), "--threads", "2", "--quiet",
                                    *map(str, args)])


@pytest.mark.shared_data
def test_a_photo_without_a_face_makes_its_pairs_errors(lfw_raw, detector, embedder, tmp_path):
    pairs, root = lfw_raw
    out = tmp_path / "all_found.json"
    res = _eval(embedder, detector, pairs, "--images-root", root, "--json", out)
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    d = r["detection"]
    assert r["num_pairs"] == 10 and r["num_images"] == 18 and r["accuracy_mean"] == 1.0, r["fold_accuracies"]
    assert d["images"] == 18 and d["num_misses"] == 0 and d["misses"] == [] and d["pairs_scored_wrong"] == 0
    assert d["multi_face"]["count"] == MULTI_FACE and d["face_rule"] == "largest-central"
    assert d["images_root"] == str(root) and d["detector"]["runtime"] == "onnxruntime"
    assert d["detector"]["settings"]["thresholds"] == [0.6, 0.7, 0.7] and "no_face_rule" in d

    _grey(root / MISSING)
    out = tmp_path / "one_missing.json"
    res = _eval(embedder, detector, pairs, "--images-root", root, "--json", out)
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    d = r["detection"]
    assert d["misses"] == [MISSING] and d["num_misses"] == 1
    assert (d["pairs_scored_wrong"], d["same_pairs_scored_wrong"]) == (2, 1)
    # both pairs are errors at every threshold (dropping them would leave 8 of 8 right)
    assert r["accuracy_mean"] == pytest.approx(0.8) and r["accuracy_by_flip"]["none"] == pytest.approx(0.8)
    assert f"no face in 1 (first: {MISSING}), 2 pairs using them scored as errors" in res.output, res.output


@pytest.mark.shared_data
def test_all_pairs_from_an_identity_folder_of_raw_photos(shared_data, detector, embedder, tmp_path):
    ids = {"George_W_Bush": (1, 2, 3, 4), "Abdullah_Gul": (1, 2, 3), "Aaron_Peirsol": (1, 2, 3),
           "Kristin_Davis": (1, 2)}
    root = tmp_path / "ids"
    for name, nums in ids.items():
        (root / name).mkdir(parents=True)
        for k in nums:
            shutil.copy(shared_data / "lfw" / "raw_150" / name / f"{name}_{k:04d}.jpg", root / name)
    _grey(root / "Aaron_Peirsol" / "Aaron_Peirsol_0099.jpg")
    out = tmp_path / "r.json"
    res = _eval(embedder, detector, root, "--protocol", "all-pairs", "--json", out)
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    d = r["detection"]
    assert r["protocol"] == "all-pairs" and r["num_images"] == 13 and d["images"] == 13
    assert d["misses"] == ["Aaron_Peirsol/Aaron_Peirsol_0099.jpg"]
    # its 3 genuine pairs (with the other Aaron_Peirsol photos) rejected, its 9 impostor pairs too
    assert (d["genuine_pairs_rejected"], d["impostor_pairs_rejected"]) == (3, 9)
    assert r["num_genuine_pairs"] == 6 + 3 + 6 + 1 and "-inf" in d["no_face_rule"]
    assert "matching nothing (3 genuine pairs rejected)" in res.output, res.output


def test_no_face_scoring_in_the_metrics():
    """Separable embeddings: a no-face pair is an error at every threshold (pairs protocol); all-pairs, a no-face
    image's genuine pairs are rejected and FAR is untouched."""
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:4] * 10
    labels = np.repeat(np.arange(4), 5)
    emb = centres[labels] + rng.normal(0, 0.1, (20, 8))
    r = allpairs_metrics(emb, labels, fars=(0.1,), bootstrap=20)
    assert r["tar_at_far"]["1e-01"] == 1.0
    r = allpairs_metrics(emb, labels, fars=(0.1,), bootstrap=20, no_face=np.array([0]))
    assert r["tar_at_far"]["1e-01"] == pytest.approx(1 - 4 / 40)  # image 0's 4 of 4*10 genuine pairs
    assert (r["no_face"]["genuine_pairs_rejected"], r["no_face"]["impostor_pairs_rejected"]) == (4, 15)

    i, j = np.triu_indices(20, 1)
    issame = labels[i] == labels[j]
    folds = np.arange(i.size) % 2
    assert verification_metrics(emb[i], emb[j], issame, folds)["accuracy_mean"] == 1.0
    wrong = (i == 0) | (j == 0)
    m = verification_metrics(emb[i], emb[j], issame, folds, wrong)
    assert m["accuracy_mean"] == pytest.approx(1 - wrong.mean(), abs=0.01)
    assert sum(m["fold_accuracies"]) / 2 == pytest.approx(1 - wrong.mean(), abs=0.01)
    assert m["auc"] < 1.0
    sphere = sphereface_accuracy(emb[i], emb[j], issame, folds, wrong)
    assert sphere["accuracy_mean"] == pytest.approx(1 - wrong.mean(), abs=0.01)


@pytest.mark.shared_data
def test_bad_inputs_are_one_error_line(lfw_raw, detector, embedder, tmp_path):
    pairs, root = lfw_raw
    out = tmp_path / "r.json"
    broken = tmp_path / "broken"
    shutil.copytree(root, broken)
    (broken / "Dean_Barker" / "Dean_Barker_0001.jpg").write_bytes(b"\xff\xd8\xff broken")
    cases = [
        ([pairs, "--images-root", broken], "Dean_Barker_0001.jpg: corrupt or unreadable image"),
        ([pairs, "--images-root", root, "--detector", embedder], "not an MTCNN detector file"),
        ([pairs], "--images-root names the folder of raw photos"),
    ]
    for args, msg in cases:
        res = _eval(embedder, detector, *args, "--json", out)
        assert res.exit_code == 1, (args, res.output)
        assert msg in res.output and len(res.output.strip().splitlines()) == 1, res.output
        assert not out.exists()
    res = CliRunner().invoke(cli, ["eval", "--onnx", str(embedder), "--data", str(pairs), "--face", "largest"])
    assert res.exit_code == 2 and "--face applies to --detector only" in res.output
