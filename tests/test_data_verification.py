"""Verification sets: insightface .bin (bytes and numpy forms), LFW pairs.txt, folds, packing, bad input."""

import pickle

import numpy as np
import pytest

from edgekd.data import (SyntheticFaces, lfw_fold_identities, load_verification, pack_pairs, read_bin,
                         synthetic_verification_set, write_bin)
from edgekd.data.image import encode_jpeg
from edgekd.data.verification import kfold_ids
from edgekd.errors import EdgekdError


def _faces(n, seed=0):
    ds = SyntheticFaces(n, 1, seed)
    return [ds[i][0] for i in range(n)]


def test_bin_round_trip_bytes_form(tmp_path):
    imgs = _faces(20)
    issame = [bool(i % 2) for i in range(10)]
    write_bin(tmp_path / "t.bin", [encode_jpeg(x) for x in imgs], issame)
    v = load_verification(tmp_path / "t.bin")
    assert len(v) == 10 and v.num_images == 20 and v.issame.tolist() == issame
    assert v.pairs.tolist() == [[2 * i, 2 * i + 1] for i in range(10)]
    assert v.folds.tolist() == list(range(10)) and v.note == ""
    assert np.abs(v.image(7).astype(int) - imgs[7]).mean() < 6
    assert len(v.sha256) == 64


def test_bin_numpy_array_form(tmp_path):
    """small_lfw.bin stores each JPEG as a (n, 1) uint8 array; the reader must accept that."""
    imgs = _faces(4)
    arrays = [np.frombuffer(encode_jpeg(x), np.uint8).reshape(-1, 1) for x in imgs]
    with open(tmp_path / "np.bin", "wb") as f:
        pickle.dump((arrays, np.array([True, False])), f, protocol=3)
    blobs, flags = read_bin(tmp_path / "np.bin")
    assert [b[:3] for b in blobs] == [b"\xff\xd8\xff"] * 4 and flags.tolist() == [True, False]
    assert load_verification(tmp_path / "np.bin").images([0, 3]).shape == (2, 112, 112, 3)


def test_kfold_matches_insightface_unshuffled():
    assert kfold_ids(6000)[0].tolist() == np.repeat(np.arange(10), 600).tolist()
    ids, note = kfold_ids(13)
    assert np.bincount(ids).tolist() == [2, 2, 2] + [1] * 7 and "not divisible" in note


@pytest.mark.shared_data
def test_real_small_lfw_bin(shared_data):
    v = load_verification(shared_data / "bins" / "small_lfw.bin")
    assert (len(v), v.num_images, int(v.issame.sum())) == (10, 20, 10)
    assert v.images(range(20)).shape == (20, 112, 112, 3)


@pytest.fixture
def lfw_fixture(tmp_path):
    """A 2-fold pairs.txt in LFW layout (header, same lines then different lines) with its image tree."""
    names = ["Ann_A", "Bob_B", "Cid_C", "Dee_D"]
    faces = SyntheticFaces(4, 3, seed=2)
    for i, n in enumerate(names):
        (tmp_path / "img" / n).mkdir(parents=True)
        for j in range(3):
            (tmp_path / "img" / n / f"{n}_{j + 1:04d}.jpg").write_bytes(encode_jpeg(faces[i * 3 + j][0]))
    lines = ["2\t2", "Ann_A\t1\t2", "Bob_B\t1\t3", "Ann_A\t1\tBob_B\t2", "Ann_A\t2\tBob_B\t1",
             "Cid_C\t1\t2", "Dee_D\t2\t3", "Cid_C\t3\tDee_D\t1", "Cid_C\t1\tDee_D\t2"]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_pairs_txt_fixture(lfw_fixture):
    v = load_verification(lfw_fixture / "pairs.txt", images_root=lfw_fixture / "img")
    assert len(v) == 8 and v.issame.tolist() == [True, True, False, False] * 2
    assert v.folds.tolist() == [0] * 4 + [1] * 4
    assert v.num_images == 11  # unique: Ann 1,2  Bob 1,2,3 (fold 1)  Cid 1,2,3  Dee 1,2,3 (fold 2)
    a, b = v.pairs[2]
    assert v.pairs[0][0] == a  # Ann_A_0001 is one image, shared by pairs 1 and 3
    s = v.subset([1])
    assert len(s) == 4 and s.num_images == 6 and s.pairs.max() == 5
    np.testing.assert_array_equal(s.image(s.pairs[0][0]), v.image(v.pairs[4][0]))
    assert lfw_fold_identities(lfw_fixture / "pairs.txt", [2]) == {"Cid_C", "Dee_D"}


def test_pack_pairs_round_trip(lfw_fixture, tmp_path):
    out = tmp_path / "out" / "lfw.bin"
    pack_pairs(lfw_fixture / "pairs.txt", lfw_fixture / "img", out, progress=False)
    blobs, flags = read_bin(out)
    src = load_verification(lfw_fixture / "pairs.txt", images_root=lfw_fixture / "img")
    assert len(blobs) == 16 and flags.tolist() == src.issame.tolist()
    b = load_verification(out)
    for k in (0, 5, 15):
        np.testing.assert_array_equal(b.image(k), src.image(src.pairs.ravel()[k]))  # original JPEG bytes kept


@pytest.mark.shared_data
def test_real_lfw_pairs(shared_data):
    p = shared_data / "lfw" / "pairs.txt"
    v = load_verification(p)
    assert (len(v), v.num_images, int(v.issame.sum())) == (6000, 7701, 3000)
    assert np.bincount(v.folds).tolist() == [600] * 10
    assert v.issame[:300].all() and not v.issame[300:600].any()
    assert v.image(v.pairs[0][0]).shape == (112, 112, 3)
    first, second = lfw_fold_identities(p, range(1, 6)), lfw_fold_identities(p, range(6, 11))
    assert first and second and not first & second  # view-2 folds are identity-disjoint
    assert len(first | second) == len(lfw_fold_identities(p, range(1, 11)))


def test_synthetic_verification_set():
    v = synthetic_verification_set(num_identities=20, pairs_per_fold=4, images_per_identity=2)
    assert len(v) == 40 and v.issame.sum() == 20 and np.bincount(v.folds).tolist() == [4] * 10
    again = synthetic_verification_set(num_identities=20, pairs_per_fold=4, images_per_identity=2)
    np.testing.assert_array_equal(v.pairs, again.pairs)
    np.testing.assert_array_equal(v.image(3), again.image(3))
    assert v.sha256 == again.sha256


# ---- bad input ------------------------------------------------------------------------------------------------

def test_truncated_bin(tmp_path):
    write_bin(tmp_path / "t.bin", [encode_jpeg(x) for x in _faces(2)], [True])
    data = (tmp_path / "t.bin").read_bytes()
    (tmp_path / "t.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(EdgekdError, match=r"t\.bin: not a readable insightface \.bin pickle"):
        load_verification(tmp_path / "t.bin")


def test_bin_pair_count_mismatch(tmp_path):
    with open(tmp_path / "m.bin", "wb") as f:
        pickle.dump(([b"a", b"b", b"c"], [True, False]), f)
    with pytest.raises(EdgekdError, match=r"m\.bin: 3 images but 2 issame flags"):
        load_verification(tmp_path / "m.bin")


def test_bin_refuses_code(tmp_path):
    with open(tmp_path / "evil.bin", "wb") as f:
        pickle.dump((print, [True]), f)
    with pytest.raises(EdgekdError, match=r"evil\.bin: not a readable .*refusing to load builtins\.print"):
        load_verification(tmp_path / "evil.bin")


def test_corrupt_jpeg_in_bin(tmp_path):
    good = encode_jpeg(_faces(1)[0])
    write_bin(tmp_path / "c.bin", [good, good[: len(good) // 3]], [True])
    v = load_verification(tmp_path / "c.bin")
    with pytest.raises(EdgekdError, match=r"c\.bin\[image 1\]: corrupt or unreadable image"):
        v.image(1)


def test_wrong_size_image_and_resize(tmp_path):
    big = np.zeros((150, 150, 3), np.uint8)
    write_bin(tmp_path / "s.bin", [encode_jpeg(big), encode_jpeg(big + 9)], [True])
    with pytest.raises(EdgekdError, match=r"s\.bin\[image 0\]: image is 150x150, expected an aligned 112x112 face"):
        load_verification(tmp_path / "s.bin").image(0)
    import edgekd.data.image as image_mod

    image_mod._resize_warned = False
    with pytest.warns(UserWarning, match="resizing 150x150 images to 112x112"):
        assert load_verification(tmp_path / "s.bin", resize=True).image(0).shape == (112, 112, 3)


@pytest.mark.parametrize("line,msg", [("Ann_A\t1", "malformed pair line"), ("Ann_A\tx\t2", "malformed pair line"),
                                      ("Ann_A\t1\t2\t3\t4", "malformed pair line")])
def test_malformed_pairs_line(lfw_fixture, line, msg):
    p = lfw_fixture / "pairs.txt"
    lines = p.read_text().splitlines()
    lines[3] = line
    p.write_text("\n".join(lines))
    with pytest.raises(EdgekdError, match=rf"pairs\.txt:4: {msg}"):
        load_verification(p, images_root=lfw_fixture / "img")


def test_pairs_missing_image(lfw_fixture):
    (lfw_fixture / "img" / "Dee_D" / "Dee_D_0003.jpg").unlink()
    with pytest.raises(EdgekdError, match=r"pairs\.txt: pair 6 names image .*Dee_D_0003\.jpg, which does not exist"):
        load_verification(lfw_fixture / "pairs.txt", images_root=lfw_fixture / "img")


def test_pairs_header_count_mismatch(lfw_fixture):
    p = lfw_fixture / "pairs.txt"
    p.write_text("3\t2\n" + "\n".join(p.read_text().splitlines()[1:]))
    with pytest.raises(EdgekdError, match=r"header says 3 folds x 4 pairs but the file has 8 pairs"):
        load_verification(p, images_root=lfw_fixture / "img")


def test_lfw_fold_numbers_are_one_based(lfw_fixture):
    with pytest.raises(EdgekdError, match=r"LFW folds are numbered 1\.\.10, got \[0\]"):
        lfw_fold_identities(lfw_fixture / "pairs.txt", [0])
