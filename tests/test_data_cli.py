"""`edgekd data` commands through click's CliRunner: pack, pack-pairs, align, info, one-line errors."""

import numpy as np
import pytest
from click.testing import CliRunner

from edgekd.cli import cli
from edgekd.data import SyntheticFaces, load_verification, open_dataset
from edgekd.data.align import ARCFACE_TEMPLATE
from edgekd.data.image import encode_jpeg


def run(*args):
    return CliRunner().invoke(cli, ["data", *map(str, args)])


def test_pack_folder_then_info(tmp_path):
    faces = SyntheticFaces(2, 3, seed=4)
    for i in range(6):
        d = tmp_path / "src" / f"id{i // 3}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i}.jpg").write_bytes(encode_jpeg(faces[i][0]))
    r = run("pack", tmp_path / "src", tmp_path / "rec")
    assert r.exit_code == 0, r.output
    assert "6 images, 2 identities" in r.output
    ds = open_dataset(tmp_path / "rec")
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    src = open_dataset(tmp_path / "src")
    np.testing.assert_array_equal(ds[4][0], src[4][0])  # JPEG bytes copied, not re-encoded
    r = run("info", tmp_path / "rec")
    assert r.exit_code == 0 and "RecordFaces, 6 images 112x112 (all decoded), 2 identities (3-3 images each)" in r.output
    r = run("pack", tmp_path / "src", tmp_path / "rec")
    assert r.exit_code == 1 and "already exists" in r.output


def test_pack_synthetic_spec_and_info(tmp_path):
    r = run("pack", "synthetic:3x2", tmp_path / "s")
    assert r.exit_code == 0, r.output
    r = run("info", "synthetic:3x2")
    assert "SyntheticFaces, 6 images 112x112 (all decoded), 3 identities" in r.output


def test_pack_pairs_and_info(tmp_path):
    faces = SyntheticFaces(2, 2, seed=6)
    for i, n in enumerate(["Ann_A", "Bob_B"]):
        (tmp_path / "img" / n).mkdir(parents=True)
        for j in range(2):
            (tmp_path / "img" / n / f"{n}_{j + 1:04d}.jpg").write_bytes(encode_jpeg(faces[2 * i + j][0]))
    (tmp_path / "pairs.txt").write_text("1\t1\nAnn_A\t1\t2\nAnn_A\t1\tBob_B\t2\n")
    r = run("pack-pairs", tmp_path / "pairs.txt", tmp_path / "img", tmp_path / "lfw.bin")
    assert r.exit_code == 0, r.output
    assert "2 pairs (1 same), 4 images" in r.output
    assert load_verification(tmp_path / "lfw.bin").issame.tolist() == [True, False]
    r = run("info", tmp_path / "lfw.bin")
    assert r.exit_code == 0 and "2 pairs (1 same), 4 images 112x112 (all decoded)" in r.output and "not divisible" in r.output


def test_align_command(tmp_path):
    img = np.zeros((150, 150, 3), np.uint8)
    (tmp_path / "raw" / "Ann_A").mkdir(parents=True)
    (tmp_path / "raw" / "Ann_A" / "Ann_A_0001.jpg").write_bytes(encode_jpeg(img))
    pts = (ARCFACE_TEMPLATE + 40) / 0.6
    (tmp_path / "lm.txt").write_text("Ann_A/Ann_A_0001.jpg\t" + "\t".join(f"{v:.0f}" for v in pts.ravel()) + "\n")
    r = run("align", tmp_path / "raw", tmp_path / "out", "--landmarks", tmp_path / "lm.txt", "--scale", 0.6,
            "--size", "112x96", "--workers", 1)
    assert r.exit_code == 0, r.output
    assert "1 faces of 1 identities aligned to 112x96" in r.output
    assert (tmp_path / "out" / "Ann_A" / "Ann_A_0001.jpg").is_file()
    r = run("align", tmp_path / "raw", tmp_path / "o2", "--landmarks", tmp_path / "lm.txt", "--size", "big")
    assert r.exit_code == 2 and "not HxW" in r.output


@pytest.mark.parametrize("target", ["nothing/here", "synthetic:x"])
def test_errors_are_one_line(tmp_path, target):
    r = run("info", target)
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
