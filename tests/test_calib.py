"""Calibration sets: manifest round trip, identity balance, the one reader, and every refusal."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.export.calib import _balanced, make_calib, open_calib
from edgekd.errors import EdgekdError
from edgekd.io import read_json, write_json_atomic
from edgekd.preprocess import ARCFACE, Preprocess


def test_round_trip_and_reader(tmp_path):
    from edgekd.data import open_dataset

    m = make_calib("synthetic:6x5:3", tmp_path / "c", n=20, seed=1, progress=False)
    c = open_calib(tmp_path / "c", ARCFACE)
    assert c.count == m["count"] == 20 and c.manifest == read_json(tmp_path / "c" / "manifest.json")
    assert m["identities"] == 6 and m["seed"] == 1 and m["preprocess"] == ARCFACE.to_dict()
    x = np.concatenate(list(c.batches(7)))
    assert x.shape == (20, 3, 112, 112) and x.dtype == np.float32
    ds = open_dataset("synthetic:6x5:3")
    first = int(m["samples"][0])
    np.testing.assert_array_equal(x[0], ARCFACE(ds[first][0])[0])  # stored tensors are exactly the preprocessed faces
    assert sum(len(b) for b in c.batches(8, limit=10)) == 10
    again = make_calib("synthetic:6x5:3", tmp_path / "d", n=20, seed=1, progress=False)
    assert again["samples"] == m["samples"]  # seeded


def test_identity_balanced():
    labels = np.repeat(np.arange(5), [1, 2, 10, 10, 10])
    picked = _balanced(labels, 10, seed=0)
    counts = np.bincount(labels[picked], minlength=5)
    assert counts[0] == 1 and counts[1] == 2 and sorted(counts[2:]) == [2, 2, 3]  # one each, then round robin


def test_refusals(tmp_path):
    with pytest.raises(EdgekdError, match="no manifest.json"):
        open_calib(tmp_path)
    make_calib("synthetic:3x2", tmp_path / "c", n=6, progress=False)
    with pytest.raises(EdgekdError, match="model expects"):
        open_calib(tmp_path / "c", Preprocess(input_size=(112, 96), mean=(127.5,) * 3, std=(128.0,) * 3))
    shard = tmp_path / "c" / "shard_0000.npy"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(EdgekdError, match="sha256 mismatch"):
        open_calib(tmp_path / "c")
    man = read_json(tmp_path / "c" / "manifest.json")
    man.update(count=0, shards=[])
    write_json_atomic(tmp_path / "c" / "manifest.json", man)
    with pytest.raises(EdgekdError, match="empty"):
        open_calib(tmp_path / "c")
    with pytest.raises(EdgekdError, match="already exists"):
        make_calib("synthetic:3x2", tmp_path / "c", n=6, progress=False)
    with pytest.raises(EdgekdError, match="positive"):
        make_calib("synthetic:3x2", tmp_path / "e", n=0, progress=False)
    assert not (tmp_path / "e").exists()


def test_cli_make_and_show(tmp_path):
    from click.testing import CliRunner

    from edgekd.cli import cli

    r = CliRunner().invoke(cli, ["calib", "make", "--from", "synthetic:4x3", "--n", "8", "--out", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["calib", "show", str(tmp_path / "c")])
    assert r.exit_code == 0 and "8 faces, 4 identities" in r.output
    r = CliRunner().invoke(cli, ["calib", "show", str(tmp_path / "missing")])
    assert r.exit_code == 1 and r.output.count("\n") == 1 and r.output.startswith("Error:")


@pytest.mark.shared_data
def test_from_lfw_pairs_folds(shared_data, tmp_path):
    m = make_calib(str(shared_data / "lfw" / "pairs.txt"), tmp_path / "c", n=12, folds=[1, 2], progress=False)
    assert m["count"] == 12 and m["identities"] == 12 and m["folds"] == [1, 2]
    assert open_calib(tmp_path / "c", ARCFACE).count == 12
