"""Training datasets: folder-per-identity, label lists, synthetic identities, the torch wrapper, decode errors."""

import tarfile

import numpy as np
import pytest

from edgekd.data import SyntheticFaces, TorchFaceDataset, decode_image, open_dataset
from edgekd.data.image import encode_jpeg
from edgekd.errors import EdgekdError
from edgekd.preprocess import ARCFACE


@pytest.fixture
def tree(tmp_path):
    faces = SyntheticFaces(3, 2, seed=3)
    for i, name in enumerate(["alice", "bob", "carol"]):
        (tmp_path / name).mkdir()
        for j in range(2):
            (tmp_path / name / f"{j}.jpg").write_bytes(encode_jpeg(faces[2 * i + j][0]))
    (tmp_path / "bob" / ".DS_Store").write_bytes(b"junk")
    (tmp_path / ".hidden").mkdir()
    return tmp_path


def test_folder_dataset_and_identity_filter(tree):
    ds = open_dataset(tree)
    assert len(ds) == 6 and ds.num_classes == 3 and ds.class_names == ["alice", "bob", "carol"]
    assert ds.labels.tolist() == [0, 0, 1, 1, 2, 2] and ds.labels.dtype == np.int64
    img, label = ds[3]
    assert img.shape == (112, 112, 3) and img.dtype == np.uint8 and label == 1
    sub = open_dataset(tree, identities={"carol", "alice", "nobody"})
    assert sub.class_names == ["alice", "carol"] and sub.labels.tolist() == [0, 0, 1, 1]


def test_empty_identity_folder(tree):
    (tree / "dave").mkdir()
    (tree / "dave" / ".DS_Store").write_bytes(b"")
    with pytest.raises(EdgekdError, match=r"dave: identity folder has no images"):
        open_dataset(tree)


def test_empty_dataset(tree):
    with pytest.raises(EdgekdError, match=r"dataset is empty"):
        open_dataset(tree, identities={"nobody"})
    (tree / "void").mkdir()
    with pytest.raises(EdgekdError, match=r"void: dataset is empty"):
        open_dataset(tree / "void")


def test_non_face_sized_image(tree):
    (tree / "alice" / "big.jpg").write_bytes(encode_jpeg(np.zeros((250, 250, 3), np.uint8)))
    ds = open_dataset(tree)
    big = [f.name for f in ds.files].index("big.jpg")
    with pytest.raises(EdgekdError, match=r"alice/big\.jpg: image is 250x250, expected an aligned 112x112 face"):
        ds[big]


def test_label_list(tmp_path):
    faces = SyntheticFaces(2, 1)
    (tmp_path / "images").mkdir()
    for i in range(2):
        (tmp_path / "images" / f"{i}.jpg").write_bytes(encode_jpeg(faces[i][0]))
    (tmp_path / "label.txt").write_text("images/0.jpg\t7\nimages/1.jpg\t3\n")
    ds = open_dataset(tmp_path)
    assert ds.class_names == ["3", "7"] and ds.labels.tolist() == [1, 0]
    assert open_dataset(tmp_path / "label.txt", identities=[3]).labels.tolist() == [0]
    (tmp_path / "label.txt").write_text("images/0.jpg\t7\nimages/1.jpg\n")
    with pytest.raises(EdgekdError, match=r"label\.txt:2: malformed line"):
        open_dataset(tmp_path)
    (tmp_path / "label.txt").write_text("images/9.jpg\t7\n")
    with pytest.raises(EdgekdError, match=r"label\.txt:1: image .*9\.jpg does not exist"):
        open_dataset(tmp_path)


def test_label_list_entries_absolute_taken_as_given_relative_kept_inside(tmp_path):
    """An absolute entry is the writer's explicit path (edgekd's own training lists point into shared image folders
    that way); a relative one may not climb out of the list's folder."""
    images = tmp_path / "images" / "A"
    images.mkdir(parents=True)
    for i in range(2):
        (images / f"A_{i}.jpg").write_bytes(encode_jpeg(np.full((112, 112, 3), 40 * i, np.uint8)))
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "label.txt").write_text("".join(f"{images / f'A_{i}.jpg'}\t0\n" for i in range(2)))
    assert len(open_dataset(lists / "label.txt")) == 2
    (lists / "label.txt").write_text("../images/A/A_0.jpg\t0\n")
    with pytest.raises(EdgekdError, match="label.txt:1: .* lies outside the dataset folder"):
        open_dataset(lists / "label.txt")


@pytest.mark.shared_data
def test_the_pipelines_lfw_training_list_opens(shared_data, tmp_path):
    """What `make demo` trains on: a label list of absolute paths into the shared aligned LFW images."""
    from edgekd.data.plan import lfw_training_list

    listed = lfw_training_list(shared_data / "lfw" / "pairs.txt", shared_data / "lfw" / "aligned_112x112",
                               tmp_path / "train" / "label.txt", max_identities=3)
    assert len(open_dataset(listed["path"])) == listed["images"]


@pytest.mark.shared_data
def test_real_small_dataset_tar(shared_data, tmp_path):
    with tarfile.open(shared_data / "images" / "small_dataset.tar") as t:
        t.extractall(tmp_path, filter="data")
    ds = open_dataset(tmp_path / "small_dataset")
    assert len(ds) == 10 and ds.num_classes == 10
    assert all(ds[i][0].shape == (112, 112, 3) for i in range(10))


def test_synthetic_determinism_and_learnability():
    a, b = SyntheticFaces(4, 3, seed=0), SyntheticFaces(4, 3, seed=0)
    np.testing.assert_array_equal(a[5][0], b[5][0])
    assert not np.array_equal(a[5][0], SyntheticFaces(4, 3, seed=1)[5][0])
    assert not np.array_equal(a[3][0], a[4][0])  # images of one identity differ
    assert open_dataset("synthetic:4x3").source == "synthetic:4x3:0"
    assert open_dataset("synthetic:4x3:9").source == "synthetic:4x3:9"
    # nearest neighbour on raw pixels beats chance (3/31) clearly yet is far from perfect: learnable, not trivial
    ds = SyntheticFaces(8, 4, seed=0)
    x = np.stack([ds[i][0] for i in range(len(ds))]).reshape(len(ds), -1).astype(np.float32)
    x -= x.mean(1, keepdims=True)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    nn_acc = (ds.labels[sim.argmax(1)] == ds.labels).mean()
    assert 0.25 < nn_acc < 0.9


@pytest.mark.parametrize("spec", ["synthetic:4", "synthetic:axb", "synthetic:0x3"])
def test_bad_synthetic_spec(spec):
    with pytest.raises(EdgekdError, match=spec):
        open_dataset(spec)


def test_decode_errors(tmp_path):
    good = encode_jpeg(np.full((112, 112, 3), 128, np.uint8))
    (tmp_path / "trunc.jpg").write_bytes(good[: len(good) // 2])
    with pytest.raises(EdgekdError, match=r"trunc\.jpg: corrupt or unreadable image"):
        decode_image(tmp_path / "trunc.jpg")
    with pytest.raises(EdgekdError, match=r"blob: corrupt or unreadable image"):
        decode_image(b"nonsense", "blob")
    with pytest.raises(EdgekdError, match=r"nope\.jpg: cannot read image"):
        decode_image(tmp_path / "nope.jpg")


def test_torch_dataset_flip_is_seeded():
    import torch

    face = open_dataset("synthetic:2x4")
    t = TorchFaceDataset(face, ARCFACE, flip=True, seed=0)
    x, y = t[1]
    assert x.shape == (3, 112, 112) and x.dtype == torch.float32 and y.dtype == torch.int64 and int(y) == 0
    plain = torch.from_numpy(ARCFACE(face[1][0][None])[0])
    flips = []
    for epoch in range(8):
        t.set_epoch(epoch)
        x = t[1]
        assert torch.equal(x[0], t[1][0])  # same (seed, epoch, index) -> same draw
        flips.append(not torch.equal(x[0], plain))
        if flips[-1]:
            assert torch.equal(x[0], plain.flip(-1))
    assert 0 < sum(flips) < 8
    assert torch.equal(TorchFaceDataset(face, ARCFACE, flip=False)[1][0], plain)


def test_torch_dataset_in_workers_matches_main_process():
    import torch
    from torch.utils.data import DataLoader

    t = TorchFaceDataset(open_dataset("synthetic:2x3"), ARCFACE)
    main = torch.stack([t[i][0] for i in range(6)])
    loaded = torch.cat([x for x, _ in DataLoader(t, batch_size=3, num_workers=2)])
    assert torch.equal(main, loaded)
