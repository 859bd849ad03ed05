"""RecordIO reader/writer: round trip, insightface and plain layouts, multi-part and multi-label records, corruption."""

import struct

import numpy as np
import pytest

from edgekd.data import SyntheticFaces, open_dataset, pack_dataset
from edgekd.data.recordio import MAGIC, RecordReader, RecordWriter, pack, unpack
from edgekd.errors import EdgekdError


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    ds = SyntheticFaces(3, 4, seed=5)
    out = tmp_path_factory.mktemp("rec") / "shard"
    pack_dataset(ds, out, progress=False)
    return ds, out


def test_round_trip_labels_pixels_and_insightface_header(shard):
    ds, out = shard
    assert sorted(p.name for p in out.iterdir()) == ["property", "train.idx", "train.rec"]
    assert (out / "property").read_text().strip() == "3,112,112"
    r = RecordReader(out / "train.rec")
    flag, label, *_ = r.unpack(0)
    assert flag == 2 and label.tolist() == [13.0, 16.0]  # images 1..12, identity records 13..15
    assert r.unpack(13)[1].tolist() == [1.0, 5.0] and r.unpack(15)[1].tolist() == [9.0, 13.0]
    back = open_dataset(out)
    assert len(back) == 12 and back.num_classes == 3
    assert back.labels.tolist() == ds.labels.tolist()
    for i in (0, 5, 11):
        img, lab = back[i]
        assert lab == ds[i][1] and img.shape == (112, 112, 3)
        assert np.abs(img.astype(int) - ds[i][0].astype(int)).mean() < 6  # JPEG q95 of a noisy image


def test_identity_filter_on_record_labels(shard):
    _, out = shard
    back = open_dataset(out / "train.idx", identities={"2"})
    assert len(back) == 4 and back.num_classes == 1 and back.labels.tolist() == [0] * 4


def test_magic_inside_payload_is_split_and_reassembled(tmp_path):
    m = struct.pack("<I", MAGIC)
    payloads = [m + b"abcd" + m + b"xyz", b"ab" + m + b"cd", b"", m]  # aligned, unaligned, empty, only magic
    with RecordWriter(tmp_path / "a.rec", tmp_path / "a.idx") as w:
        for k, p in enumerate(payloads):
            w.write(k, p)
    raw = (tmp_path / "a.rec").read_bytes()
    assert struct.unpack_from("<I", raw, 4)[0] >> 29 == 1  # first record starts as a multi-part record
    r = RecordReader(tmp_path / "a.rec", tmp_path / "a.idx")
    assert [r.read(k) for k in range(4)] == payloads


def test_plain_layout_with_multi_label_records(tmp_path):
    """im2rec-style shard: no record 0 header, shuffled keys, labels as float arrays (identity first)."""
    from edgekd.data.image import encode_jpeg

    faces = SyntheticFaces(2, 2)
    with RecordWriter(tmp_path / "p.rec", tmp_path / "p.idx") as w:
        for key in (3, 1, 0, 2):
            img, label = faces[key]
            w.write(key, pack([float(label), 0.5, 7.0], encode_jpeg(img), id1=key))
    ds = open_dataset(tmp_path / "p.rec")
    assert ds.keys.tolist() == [0, 1, 2, 3] and ds.labels.tolist() == [0, 0, 1, 1]
    assert ds[2][0].shape == (112, 112, 3)


def test_multi_label_header():
    flag, label, i1, i2, data = unpack(pack([3.0, 7.5], b"JPEG", id1=4, id2=9))
    assert flag == 2 and label.tolist() == [3.0, 7.5] and (i1, i2, data) == (4, 9, b"JPEG")
    flag, label, *_ , data = unpack(pack(2, b"x"))
    assert flag == 0 and label == 2.0 and data == b"x"


@pytest.mark.shared_data
def test_real_adaface_shard_plain_layout(shared_data):
    root = shared_data / "recordio" / "adaface_tiny"
    ds = open_dataset(root / "train.rec")
    lst = {int(t[0]): int(t[1]) for t in (l.split("\t") for l in (root / "train.lst").read_text().splitlines())}
    assert len(ds) == 8 and ds.num_classes == 2
    assert {int(k): int(l) for k, l in zip(ds.keys, ds.labels)} == lst
    img, _ = ds[3]
    assert img.shape == (112, 112, 3) and img.std() > 10


def _corrupt(shard, tmp_path, edit_rec=None, edit_idx=None):
    _, out = shard
    d = tmp_path / "bad"
    d.mkdir()
    rec, idx = (out / "train.rec").read_bytes(), (out / "train.idx").read_text()
    (d / "train.rec").write_bytes(edit_rec(rec) if edit_rec else rec)
    (d / "train.idx").write_text(edit_idx(idx) if edit_idx else idx)
    return d


def test_index_past_end(shard, tmp_path):
    d = _corrupt(shard, tmp_path, edit_idx=lambda s: s + "99\t99999999\n")
    with pytest.raises(EdgekdError, match=r"train\.idx:\d+: key 99 points to offset 99999999, past the end"):
        open_dataset(d)


def test_malformed_index_line(shard, tmp_path):
    d = _corrupt(shard, tmp_path, edit_idx=lambda s: s + "oops\n")
    with pytest.raises(EdgekdError, match=r"train\.idx:\d+: malformed index line"):
        open_dataset(d)


def test_bad_magic(shard, tmp_path):
    _, out = shard
    off = int((out / "train.idx").read_text().splitlines()[3].split()[1])
    d = _corrupt(shard, tmp_path, edit_rec=lambda b: b[:off] + b"\0\0\0\0" + b[off + 4 :])
    ds = open_dataset(d)
    with pytest.raises(EdgekdError, match=rf"train\.rec: bad magic 0x00000000 at offset {off}"):
        ds[2]


def test_truncated_rec(shard, tmp_path):
    d = _corrupt(shard, tmp_path, edit_rec=lambda b: b[: len(b) // 2])
    with pytest.raises(EdgekdError, match=r"train\.(rec|idx).*(truncated|past the end)"):
        ds = open_dataset(d)
        for i in range(len(ds)):
            ds[i]


def test_corrupt_jpeg_in_record(tmp_path):
    with RecordWriter(tmp_path / "x.rec", tmp_path / "x.idx") as w:
        w.write(0, pack(0, b"\xff\xd8\xff\xe0 not really a jpeg"))
    ds = open_dataset(tmp_path / "x.rec")
    with pytest.raises(EdgekdError, match=r"x\.rec record 0: corrupt or unreadable image"):
        ds[0]


def test_missing_idx(tmp_path):
    (tmp_path / "y.rec").write_bytes(b"")
    with pytest.raises(EdgekdError, match=r"y\.idx: no such file"):
        open_dataset(tmp_path / "y.rec")


@pytest.mark.shared_data
def test_writer_reproduces_real_mxnet_shard_byte_for_byte(shared_data, tmp_path):
    root = shared_data / "recordio" / "adaface_tiny"
    r = RecordReader(root / "train.rec")
    with RecordWriter(tmp_path / "t.rec", tmp_path / "t.idx") as w:
        for key in sorted(r.keys, key=r.offsets.get):  # the file's own (shuffled) order
            w.write(key, r.read(key))
    assert (tmp_path / "t.rec").read_bytes() == (root / "train.rec").read_bytes()
    assert (tmp_path / "t.idx").read_text().split() == (root / "train.idx").read_text().split()
