"""`edgekd eval --protocol all-pairs` end to end on a tiny LFW-format folder (ONNX Runtime, no torch at eval)."""

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from edgekd.cli import cli


@pytest.fixture(scope="module")
def lfw(tiny_lfw):
    """2 folds x 12 identities: enough impostor pairs for the all-pairs figures (pool_onnx: conftest.py)."""
    return tiny_lfw(folds=2, per=12)


def _brute(pool_onnx, lfw, names):
    """Embeddings straight from ONNX Runtime (flip sum) and every pair listed explicitly."""
    from edgekd.data import open_dataset
    from edgekd.eval.metrics import l2_normalize, tar_at_far
    from edgekd.runtime.onnx_runtime import OnnxRuntime

    ds = open_dataset(lfw.parent / "aligned_112x112", identities=names)
    imgs = np.stack([ds[i][0] for i in range(len(ds))])
    rt = OnnxRuntime(pool_onnx)
    x = rt.preprocess(imgs)
    e = l2_normalize(rt(x) + rt(np.ascontiguousarray(x[..., ::-1])))
    i, j = np.triu_indices(len(ds), 1)
    same = ds.labels[i] == ds.labels[j]
    return np.sum(e[i] * e[j], 1), same, tar_at_far


def test_allpairs_cli_matches_brute_force_and_reports_stored_thresholds(lfw, pool_onnx, tmp_path):
    from edgekd.data import lfw_fold_identities

    names = lfw_fold_identities(lfw, [2])
    scores, same, tar_at_far = _brute(pool_onnx, lfw, names)
    m = onnx.load(str(pool_onnx))
    t = float(np.sort(scores[~same])[-4:-2].mean())  # between two impostor scores: no rounding ties
    m.metadata_props.add(key="edgekd.thresholds", value=json.dumps({"cosine_at_far": {"1e-02": t}, "flip": "sum"}))
    art = tmp_path / "with_thr.onnx"
    onnx.save(m, str(art))
    out = tmp_path / "r.json"
    res = CliRunner().invoke(cli, ["eval", "--onnx", str(art), "--data", str(lfw), "--protocol", "all-pairs",
                                   "--folds", "2", "--json", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    assert r["protocol"] == "all-pairs" and r["num_impostor_pairs"] == int((~same).sum())
    assert r["num_genuine_pairs"] == int(same.sum())
    assert set(r["tar_at_far"]) == set(r["tar_at_far_ci95"]) == {"1e-03", "1e-04", "1e-05"}
    assert r["far_at_stored_threshold"]["1e-02"] == pytest.approx(np.mean(scores[~same] > t), abs=1e-6)
    assert r["tar_at_stored_threshold"]["1e-02"] == pytest.approx(np.mean(scores[same] > t), abs=1e-6)
    assert "TAR@FAR=1e-03" in res.output and "stored 1e-02" in res.output
    # the same folder given with --identities-from gives the same figures
    res2 = CliRunner().invoke(cli, ["eval", "--onnx", str(art), "--data", str(lfw.parent / "aligned_112x112"),
                                    "--identities-from", str(lfw), "--folds", "2", "--protocol", "all-pairs",
                                    "--json", str(tmp_path / "r2.json"), "--quiet"])
    assert res2.exit_code == 0, res2.output
    r2 = json.loads((tmp_path / "r2.json").read_text())
    assert r2["far_at_stored_threshold"] == r["far_at_stored_threshold"]


def test_allpairs_refuses_bin_and_folds_without_pairs(lfw, pool_onnx, tmp_path):
    from edgekd.data import write_bin

    b = write_bin(tmp_path / "x.bin", [b"x"] * 2, [True])
    for args, msg in ((["--data", str(b)], "identity labels"),
                      (["--data", str(lfw.parent / "aligned_112x112"), "--folds", "1"], "--folds needs a pairs.txt")):
        res = CliRunner().invoke(cli, ["eval", "--onnx", str(pool_onnx), "--protocol", "all-pairs", "--quiet", *args])
        assert res.exit_code == 1 and msg in res.output
        assert res.output.count("\n") == 1 and res.output.startswith("Error:")
