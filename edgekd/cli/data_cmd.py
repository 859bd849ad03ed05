"""`edgekd data`: pack datasets into RecordIO / .bin, align raw photos, inspect data."""

from pathlib import Path

import click

from edgekd.cli import params
from edgekd.cli.app import cli
from edgekd.detect.faces import RULES as FACE_RULES


def _size(value: str) -> tuple[int, int]:
    try:
        h, w = (int(x) for x in value.lower().split("x"))
        return h, w
    except ValueError:
        raise click.BadParameter(f"{value!r} is not HxW (e.g. 112x112)") from None


@cli.group()
def data() -> None:
    """Pack, align and inspect face data."""


@data.command()
@click.argument("source")
@click.argument("out", type=params.Path())
@click.option("--resize", is_flag=True, help="Resize faces that are not 112x112 instead of failing.")
@click.option("--identities-from", type=params.Path(exists=True, dir_okay=False), help="LFW pairs.txt: keep only identities of --folds.")
@click.option("--folds", default="1-5", show_default=True, type=params.Folds(), help="LFW view-2 folds (1..10) for --identities-from.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def pack(source, out, resize, identities_from, folds, overwrite):
    """Pack SOURCE (folder per identity, label.txt, .rec or synthetic:AxB) into OUT/train.rec, train.idx, property."""
    from edgekd.data import lfw_fold_identities, open_dataset, pack_dataset
    from edgekd.data.folds import parse_folds

    ids = lfw_fold_identities(identities_from, parse_folds(folds)) if identities_from else None
    ds = open_dataset(source, resize=resize, identities=ids)
    pack_dataset(ds, out, overwrite=overwrite)
    click.echo(f"{out}: {len(ds)} images, {ds.num_classes} identities (insightface RecordIO)")


@data.command("pack-pairs")
@click.argument("pairs_txt", type=params.Path(exists=True, dir_okay=False))
@click.argument("images_dir", type=params.Path(exists=True, file_okay=False))
@click.argument("out", type=params.Path(dir_okay=False))
@click.option("--resize", is_flag=True, help="Resize faces that are not 112x112 instead of failing.")
def pack_pairs(pairs_txt, images_dir, out, resize):
    """Build an insightface verification .bin (2N JPEGs in pair order + N issame flags) from an LFW pairs.txt."""
    from edgekd.data import pack_pairs as run

    v = run(pairs_txt, images_dir, out, resize=resize)
    click.echo(f"{out}: {len(v)} pairs ({int(v.issame.sum())} same), {v.num_images} images")


@data.command()
@click.argument("raw_dir", type=params.Path(exists=True, file_okay=False))
@click.argument("out_dir", type=params.Path(file_okay=False))
@click.option("--landmarks", type=params.Path(exists=True, dir_okay=False),
              help="Lines: relative image path + 10 numbers (5 x,y points).")
@params.detector_option("Find the faces instead of reading a landmark file (give exactly one of --landmarks and "
                        "--detector); OUT_DIR/detections.json lists every photo's faces, the photos with none and "
                        "those with several.", settings=True)
@click.option("--face", "face_rule", type=click.Choice(FACE_RULES), default=FACE_RULES[0], show_default=True,
              help="With --detector: which face of a photo to align (largest-central: insightface's align_lfw "
                   "choice; all: one crop per face, named NAME_face1.jpg, NAME_face2.jpg, ...).")
@click.option("--scale", type=float, help="Multiply landmarks by this (0.6: LFW landmarks on raw_150).  [default: 1.0]")
@click.option("--size", "size", default="112x112", show_default=True, help="112x112 (ArcFace) or 112x96 (SphereFace).")
@click.option("--identities-from", type=params.Path(exists=True, dir_okay=False), help="LFW pairs.txt: only identities of --folds.")
@click.option("--folds", default="1-5", show_default=True, type=params.Folds(), help="LFW view-2 folds (1..10) for --identities-from.")
@click.option("--workers", type=int, default=None,
              help="Processes (--landmarks; default: all CPUs) or threads (--detector; default 1).")
@click.option("--threads", type=click.IntRange(min=1), help="With --detector: ONNX Runtime intra-op threads.")
@click.option("--device", default="auto", show_default=True, help="With --detector: cpu, cuda[:N], auto (engines run on CUDA).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--overwrite", is_flag=True, help="Replace OUT_DIR if it exists.")
def align(raw_dir, out_dir, landmarks, detector, detector_set, face_rule, scale, size, identities_from, folds, workers, threads,
          device, quiet, overwrite):
    """Align raw face photos onto the ArcFace template, by 5-point landmarks from a file or from a face detector
    (atomic: all or nothing)."""
    from edgekd.data import lfw_fold_identities
    from edgekd.data.folds import parse_folds

    if (landmarks is None) == (detector is None):
        raise click.UsageError("give exactly one of --landmarks and --detector")
    if detector is None and (face_rule != FACE_RULES[0] or threads is not None):
        raise click.UsageError("--face and --threads apply to --detector only")
    if detector is not None and scale is not None:
        raise click.UsageError("--scale applies to --landmarks only (a detector finds points in the photo's own pixels)")
    ids = lfw_fold_identities(identities_from, parse_folds(folds)) if identities_from else None
    if landmarks is not None:
        from edgekd.data.align import align_folder

        m = align_folder(raw_dir, out_dir, landmarks, 1.0 if scale is None else scale, _size(size), ids, overwrite,
                         workers, progress=not quiet)
        click.echo(f"{out_dir}: {m['count']} faces of {m['identities']} identities aligned to {size}; "
                   f"{m['skipped_without_landmarks']} images without landmarks skipped"
                   + (f" (first: {m['skipped_examples'][0]})" if m["skipped_examples"] else ""))
        return
    from edgekd.detect.folder import DETECTIONS, align_folder_detected
    from edgekd.detect.open import open_detector
    from edgekd.devices import resolve_device

    with open_detector(detector, device=resolve_device(device, "onnxruntime"), threads=threads, **detector_set) as det:
        m = align_folder_detected(raw_dir, out_dir, det, face_rule, _size(size), ids, overwrite, workers,
                                  progress=not quiet)
    d = m["detections"]
    click.echo(f"{out_dir}: {m['count']} faces of {m['identities']} identities aligned to {size} from {d['images']} "
               f"photos (face rule {face_rule}); no face in {d['num_misses']}"
               + (f" (first: {d['miss_examples'][0]})" if d["miss_examples"] else "")
               + f", more than one in {d['multi_face']['count']}; per photo: {Path(out_dir) / DETECTIONS}")


@data.command()
@click.argument("path")
@click.option("--images-root", type=params.Path(exists=True, file_okay=False), help="Images for a pairs.txt.")
def info(path, images_root):
    """Describe a verification set (.bin, pairs.txt) or a training dataset (RecordIO, folder, label.txt, synthetic:AxB)."""
    from pathlib import Path

    import numpy as np

    from edgekd.data import load_verification, open_dataset
    from edgekd.data.datasets import scan_images

    p = Path(path)
    if p.suffix == ".bin" or p.name.startswith("pairs") and p.suffix == ".txt":
        v = load_verification(p, images_root=images_root)
        sizes, read = scan_images(v.num_images, v.image)
        counts = np.bincount(v.folds)
        click.echo(f"{p}: verification set, {len(v)} pairs ({int(v.issame.sum())} same), {v.num_images} images "
                   f"{'/'.join(sizes)} ({_decoded(read, v.num_images)}), {len(counts)} folds of "
                   f"{counts.min()}-{counts.max()} pairs, sha256 {v.sha256}")
        if v.note:
            click.echo(f"note: {v.note}")
        return
    ds = open_dataset(path)
    per = np.bincount(ds.labels)
    sizes, read = scan_images(len(ds), lambda i: ds[i][0])
    click.echo(f"{ds.source}: {type(ds).__name__}, {len(ds)} images {'/'.join(sizes)} ({_decoded(read, len(ds))}), "
               f"{ds.num_classes} identities ({per.min()}-{per.max()} images each)")


def _decoded(read: int, total: int) -> str:
    return "all decoded" if read == total else f"{read:,} of {total:,} decoded, evenly spaced"
