"""`edgekd verify A B`: raw LFW photos through the exported MTCNN and the foamliu MobileFaceNet (ONNX, thresholds
written into its metadata as `edgekd export --gate-data` writes them) decide as `edgekd eval --protocol all-pairs`
does at the same stored thresholds; aligned crops are used as is; --threshold, a FAR not stored, an artifact with no
thresholds, no face, a corrupt image and files of the wrong kind; the JSON; no torch on the path."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from detector_files import exported_detector
from edgekd.cli import cli

FOAMLIU = ("weights", "mobilefacenet_ms1m_foamliu", "MobileFaceNet.onnx")
# scripted pairs of LFW view 2, fold 1 (pairs.txt lines 2-4 and 302-304): 3 same-person, 3 different-person
SAME = [("Abel_Pacheco", 1, 4), ("Akhmed_Zakayev", 1, 3), ("Akhmed_Zakayev", 2, 3)]
DIFFERENT = [("Abdel_Madi_Shabneh", 1, "Dean_Barker", 1), ("Abdel_Madi_Shabneh", 1, "Giancarlo_Fisichella", 1),
             ("Abdel_Madi_Shabneh", 1, "Mikhail_Gorbachev", 1)]
FARS = ("1e-03", "1e-04", "1e-05")


def _edgekd(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


def _one_error(r, *words):
    assert r.exit_code == 1, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.output
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def _photo(root: Path, name: str, num: int) -> Path:
    return root / name / f"{name}_{num:04d}.jpg"


def _embedder(path: Path, source: Path, thresholds: dict | None) -> Path:
    """The foamliu ONNX file with edgekd metadata (model, preprocessing and, when given, the thresholds record in the
    format edgekd.export.thresholds.measure_thresholds writes) as one self-contained file."""
    import onnx

    from edgekd.export import graph
    from edgekd.models.registry import model_preprocess

    m = onnx.load(str(source))
    meta = {"model": "mobilefacenet_ms1m_foamliu", "precision": "fp32",
            "preprocess": model_preprocess("mobilefacenet_ms1m_foamliu").to_dict()}
    if thresholds is not None:
        meta["thresholds"] = thresholds
    onnx.save(graph.set_metadata(m, meta), str(path))
    return path


def _thresholds(values: dict, data: str = "test gate data") -> dict:
    return {"cosine_at_far": values, "flip": "none", "rule": "cosine of L2-normalised embeddings; accept when "
            "strictly above", "num_impostor_pairs": 0, "data": data, "sha256": "0" * 64, "images": 0, "identities": 0}


@pytest.fixture(scope="module")
def raw(shared_data):
    root = shared_data / "lfw" / "raw_150"
    if not root.is_dir() or not shared_data.joinpath(*FOAMLIU).is_file():
        pytest.skip("shared LFW raw_150 or the foamliu ONNX file absent")
    return root


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    return exported_detector(tmp_path_factory)


@pytest.fixture(scope="module")
def photos(raw):
    """The distinct photos of the scripted pairs (identity, path), in pairs.txt order."""
    out = []
    for p in SAME:
        out += [(p[0], _photo(raw, p[0], p[1])), (p[0], _photo(raw, p[0], p[2]))]
    for p in DIFFERENT:
        out += [(p[0], _photo(raw, p[0], p[1])), (p[2], _photo(raw, p[2], p[3]))]
    return list(dict.fromkeys(out))


@pytest.fixture(scope="module")
def plain(raw, shared_data, tmp_path_factory):
    """The embedder with no stored thresholds."""
    return _embedder(tmp_path_factory.mktemp("plain") / "foamliu.onnx", shared_data.joinpath(*FOAMLIU), None)


@pytest.fixture(scope="module")
def scores(photos, plain, detector):
    """Cosine of every pair of the photos, through verify_pair with a given threshold (the library the CLI wraps)."""
    from edgekd.detect.open import open_detector
    from edgekd.detect.verify import verify_pair
    from edgekd.runtime import open_artifact

    out = {}
    with open_detector(detector, threads=1) as det, open_artifact(plain, device="cpu", threads=1) as rt:
        for (ia, a), (ib, b) in itertools.combinations(photos, 2):
            out[a, b] = (ia == ib, verify_pair(a, b, rt, det, threshold=0.0)["cosine"])
    return out


def _between(values: np.ndarray, q: float) -> float:
    """A threshold between two neighbouring scores near quantile q, away from both (no rounding ties)."""
    s = np.sort(values)
    k = int(q * (s.size - 1))
    while k + 1 < s.size and s[k + 1] - s[k] < 1e-3:
        k += 1
    return float((s[k] + s[k + 1]) / 2)


@pytest.fixture(scope="module")
def stored(scores):
    """Three thresholds spread over the pair scores (so some genuine pairs are rejected and some impostors accepted
    at one or another), stored under the three FAR keys."""
    cos = np.array([c for _, c in scores.values()])
    return dict(zip(FARS, (_between(cos, q) for q in (0.5, 0.9, 0.97))))


@pytest.fixture(scope="module")
def shipped(raw, shared_data, tmp_path_factory, stored):
    return _embedder(tmp_path_factory.mktemp("shipped") / "foamliu.onnx", shared_data.joinpath(*FOAMLIU),
                     _thresholds(stored))


def _counts(scores: dict, t: float) -> tuple[int, int, int, int]:
    """(genuine accepted, genuine pairs, impostors accepted, impostor pairs) when 'same' is cosine > t."""
    g = [c > t for same, c in scores.values() if same]
    i = [c > t for same, c in scores.values() if not same]
    return sum(g), len(g), sum(i), len(i)


def _eval_allpairs(artifact: Path, data: Path, out: Path, *extra) -> dict:
    r = _edgekd("eval", "--onnx", artifact, "--data", data, "--protocol", "all-pairs", "--flip", "none",
                "--threads", 1, "--quiet", "--json", out, *extra)
    assert r.exit_code == 0, r.output
    return json.loads(out.read_text())


def _assert_same_decisions(e: dict, scores: dict, stored: dict):
    for k, t in stored.items():
        g_acc, g_n, i_acc, i_n = _counts(scores, t)
        assert (e["num_genuine_pairs"], e["num_impostor_pairs"]) == (g_n, i_n)
        assert e["stored_thresholds"][k] == t
        assert round(e["tar_at_stored_threshold"][k] * g_n) == g_acc, k
        assert round(e["far_at_stored_threshold"][k] * i_n) == i_acc, k


def test_raw_pairs_decide_as_eval_does_on_their_aligned_crops(photos, scores, stored, shipped, detector, tmp_path):
    """verify on raw photos vs `edgekd eval --protocol all-pairs` on the crops detect_and_align makes of them
    (written losslessly), at the thresholds stored in the artifact: the same accepted genuine and impostor pairs at
    each stored threshold, and the CLI's verdict at each --far is the library's."""
    from edgekd.data.image import decode_image
    from edgekd.detect.align import detect_and_align
    from edgekd.detect.open import open_detector

    g_all = [_counts(scores, t) for t in stored.values()]
    assert any(0 < g < n for g, n, _, _ in g_all) or any(0 < i < n for _, _, i, n in g_all)  # decisions are mixed
    crops = tmp_path / "aligned"
    with open_detector(detector, threads=1) as det:
        for ident, p in photos:
            (crops / ident).mkdir(parents=True, exist_ok=True)
            Image.fromarray(detect_and_align(decode_image(p), det).crops[0]).save(crops / ident / f"{p.stem}.png")
    e = _eval_allpairs(shipped, crops, tmp_path / "e.json")
    _assert_same_decisions(e, scores, stored)
    (a, b), (same_id, cos) = next((k, v) for k, v in scores.items() if v[0])
    for k, t in stored.items():
        r = _edgekd("verify", a, b, "--onnx", shipped, "--detector", detector, "--far", k, "--json", "--threads", 1)
        assert r.exit_code == 0, r.output
        j = json.loads(r.output)
        assert j["same"] == (cos > t) and j["threshold"] == t and j["cosine"] == pytest.approx(cos, abs=1e-6)
        assert j["threshold_source"] == f"stored: FAR {k} on test gate data" and j["far"] == float(k)


def test_raw_pairs_decide_as_eval_detector_does(photos, scores, stored, shipped, detector, tmp_path):
    """The same comparison against `edgekd eval --detector` on the raw photos themselves."""
    if "--detector" not in _edgekd("eval", "--help").output:
        pytest.skip("edgekd eval has no --detector")
    folder = tmp_path / "raw"
    for ident, p in photos:
        (folder / ident).mkdir(parents=True, exist_ok=True)
        shutil.copy(p, folder / ident / p.name)
    e = _eval_allpairs(shipped, folder, tmp_path / "e.json", "--detector", detector)
    _assert_same_decisions(e, scores, stored)


def test_default_far_text_and_both_verdicts_exit_0(raw, shipped, detector, stored, scores):
    a, b = _photo(raw, *SAME[0][:2]), _photo(raw, SAME[0][0], SAME[0][2])
    c = _photo(raw, *DIFFERENT[0][2:])
    for x, y in ((a, b), (a, c)):
        r = _edgekd("verify", x, y, "--onnx", shipped, "--detector", detector, "--threads", 1)
        assert r.exit_code == 0, r.output
        cos = scores.get((x, y), scores.get((y, x)))[1]
        verdict = "same person" if cos > stored["1e-04"] else "different people"
        assert verdict in r.output and f"{cos:.4f}" in r.output
        assert f"{stored['1e-04']:.4f} (stored: FAR 1e-04 on test gate data)" in r.output
        assert r.output.count("1 face detected") == 2 and "box (" in r.output


def test_aligned_crops_are_used_as_is(raw, plain, detector, tmp_path):
    """Crops of the raw photos (as detect_and_align writes them) give the raw pair's cosine, with no detector."""
    from edgekd.data.image import decode_image
    from edgekd.detect.align import detect_and_align
    from edgekd.detect.open import open_detector

    a, b = _photo(raw, *SAME[1][:2]), _photo(raw, SAME[1][0], SAME[1][2])
    with open_detector(detector, threads=1) as det:
        for p in (a, b):
            Image.fromarray(detect_and_align(decode_image(p), det).crops[0]).save(tmp_path / f"{p.stem}.png")
    ra = _edgekd("verify", a, b, "--onnx", plain, "--detector", detector, "--threshold", 0.3, "--json")
    rc = _edgekd("verify", tmp_path / f"{a.stem}.png", tmp_path / f"{b.stem}.png", "--onnx", plain,
                 "--threshold", 0.3, "--json")
    assert ra.exit_code == 0 and rc.exit_code == 0, ra.output + rc.output
    ja, jc = json.loads(ra.output), json.loads(rc.output)
    assert jc["cosine"] == pytest.approx(ja["cosine"], abs=1e-6)
    assert [i["kind"] for i in jc["images"]] == ["aligned", "aligned"] and jc["detector"] is None
    assert all(i["detected"] is None and i["chosen"] is None and i["size"] == [112, 112] for i in jc["images"])
    r = _edgekd("verify", tmp_path / f"{a.stem}.png", b, "--onnx", plain, "--detector", detector, "--threshold", 0.3)
    assert r.exit_code == 0 and "aligned 112x112 crop, used as is" in r.output and "raw 150x150 photo" in r.output


def test_threshold_override(raw, shipped, detector, scores):
    a, b = _photo(raw, *SAME[0][:2]), _photo(raw, SAME[0][0], SAME[0][2])
    cos = scores[a, b][1]
    for t, same in ((cos - 0.01, True), (cos + 0.01, False)):
        r = _edgekd("verify", a, b, "--onnx", shipped, "--detector", detector, "--threshold", t, "--json")
        assert r.exit_code == 0, r.output  # a verdict either way
        j = json.loads(r.output)
        assert j["same"] is same and j["threshold"] == pytest.approx(t) and j["threshold_source"] == "command line"
        assert j["far"] is None
    r = _edgekd("verify", a, b, "--onnx", shipped, "--detector", detector, "--threshold", 0.5, "--far", "1e-4")
    assert r.exit_code == 2 and "only one of them" in r.output


def test_far_not_stored_lists_the_stored_ones(raw, shipped, detector):
    a = _photo(raw, *SAME[0][:2])
    _one_error(_edgekd("verify", a, a, "--onnx", shipped, "--detector", detector, "--far", "1e-2"),
               str(shipped), "no threshold stored for FAR 1e-02", "stored FARs: 1e-03, 1e-04, 1e-05")


def test_no_stored_thresholds_names_the_fix(raw, plain, detector):
    a = _photo(raw, *SAME[0][:2])
    _one_error(_edgekd("verify", a, a, "--onnx", plain, "--detector", detector), str(plain),
               "no stored thresholds", "edgekd export --gate-data", "--threshold")


def test_raw_photo_without_detector(raw, shipped):
    a = _photo(raw, *SAME[0][:2])
    _one_error(_edgekd("verify", a, a, "--onnx", shipped), str(a), "raw 150x150 photo", "pass --detector")


def test_no_face_is_one_error_line(raw, shipped, detector, tmp_path):
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((150, 150, 3), 128, np.uint8)).save(grey)
    _one_error(_edgekd("verify", _photo(raw, *SAME[0][:2]), grey, "--onnx", shipped, "--detector", detector),
               str(grey), "no face found")


def test_corrupt_image_is_one_error_line(raw, shipped, detector, tmp_path):
    a = _photo(raw, *SAME[0][:2])
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(a.read_bytes()[:2000])
    _one_error(_edgekd("verify", a, cut, "--onnx", shipped, "--detector", detector), str(cut), "corrupt")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    _one_error(_edgekd("verify", empty, a, "--onnx", shipped, "--detector", detector), str(empty), "empty file")


def test_files_of_the_wrong_kind(raw, shipped, detector, tmp_path):
    a = _photo(raw, *SAME[0][:2])
    _one_error(_edgekd("verify", a, a, "--onnx", shipped, "--detector", shipped), str(shipped),
               "not an MTCNN detector")
    pnet = Path(detector) / "mtcnn-pnet.onnx"
    _one_error(_edgekd("verify", a, a, "--onnx", pnet, "--detector", detector), str(pnet), "not a face model")
    fake = tmp_path / "fake"  # named as a detector's network, but a face model inside
    fake.mkdir()
    for n in ("rnet", "onet"):
        shutil.copy(Path(detector) / f"mtcnn-{n}.onnx", fake)
    shutil.copy(shipped, fake / "mtcnn-pnet.onnx")
    _one_error(_edgekd("verify", a, a, "--onnx", shipped, "--detector", fake), "mtcnn-pnet.onnx",
               "not an MTCNN detector network")


def test_json_schema_and_several_faces(raw, shipped, detector, tmp_path):
    a = _photo(raw, *SAME[0][:2])
    two = tmp_path / "two.png"  # two LFW photos side by side: two faces, the rule keeps one
    c = _photo(raw, *DIFFERENT[0][2:])
    Image.fromarray(np.concatenate([np.asarray(Image.open(a)), np.asarray(Image.open(c))], axis=1)).save(two)
    r = _edgekd("verify", a, two, "--onnx", shipped, "--detector", detector, "--json", "--face", "largest")
    assert r.exit_code == 0, r.output
    j = json.loads(r.output)
    assert {"cosine", "same", "threshold", "threshold_source", "far", "images", "face_rule", "flip"} <= set(j)
    assert isinstance(j["cosine"], float) and isinstance(j["same"], bool) and j["far"] == 1e-4
    assert j["face_rule"] == "largest" and j["flip"] == "none"
    ia, ib = j["images"]
    assert ia["path"] == str(a) and ia["kind"] == "raw" and ia["detected"] == 1 and ib["detected"] == 2
    for im in (ia, ib):
        f = im["chosen"]
        assert len(f["box"]) == 4 and 0 < f["score"] <= 1 and np.asarray(f["landmarks"]).shape == (5, 2)
    x1, _, x2, _ = ib["chosen"]["box"]
    assert x2 <= 150 or x1 >= 150  # one photo's face
    assert j["detector"]["detector"] == "mtcnn" and j["embedder"]["model"] == "mobilefacenet_ms1m_foamliu"
    text = _edgekd("verify", a, two, "--onnx", shipped, "--detector", detector)
    assert "2 faces detected; largest-central" in text.output


def test_verify_runs_without_torch(raw, shipped, detector):
    a, b = _photo(raw, *SAME[0][:2]), _photo(raw, SAME[0][0], SAME[0][2])
    code = ("import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None\n"
            "from click.testing import CliRunner\nfrom edgekd.cli import cli\n"
            f"r = CliRunner().invoke(cli, ['verify', {str(a)!r}, {str(b)!r}, '--onnx', {str(shipped)!r}, "
            f"'--detector', {str(detector)!r}, '--json'])\n"
            "assert r.exit_code == 0, r.output\nimport json; json.loads(r.output)\n"
            "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_engine_takes_its_thresholds_from_the_sidecar(shared_data, shipped, stored, tmp_path, one_machine):
    """An engine built from the shipped ONNX file (strict TensorRT doubles) decides at the thresholds its sidecar
    copied from the ONNX metadata, with the ONNX file's cosine on the same aligned crops."""
    from edgekd.export.tensorrt_build import build_engine

    one_machine()
    engine = tmp_path / "foamliu.fp32.engine"
    build_engine(shipped, engine, "fp32", (1, 1, 1), 64)
    aligned = shared_data / "lfw" / "aligned_112x112" / SAME[0][0]
    a, b = aligned / f"{SAME[0][0]}_0001.jpg", aligned / f"{SAME[0][0]}_0004.jpg"
    re_ = _edgekd("verify", a, b, "--engine", engine, "--json")
    ro = _edgekd("verify", a, b, "--onnx", shipped, "--json")
    assert re_.exit_code == 0 and ro.exit_code == 0, re_.output + ro.output
    je, jo = json.loads(re_.output), json.loads(ro.output)
    assert je["threshold"] == stored["1e-04"] and je["threshold_source"] == "stored: FAR 1e-04 on test gate data"
    assert je["cosine"] == pytest.approx(jo["cosine"], abs=1e-4) and je["same"] == jo["same"]
    assert je["embedder"]["runtime"] == "tensorrt"
