"""`edgekd data`: pack datasets into RecordIO / .bin, align raw photos, inspect data."""

import click

from edgekd.cli import params
from edgekd.cli.app import cli


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
@click.option("--landmarks", required=True, type=params.Path(exists=True, dir_okay=False),
              help="Lines: relative image path + 10 numbers (5 x,y points).")
@click.option("--scale", default=1.0, show_default=True, help="Multiply landmarks by this (0.6: LFW landmarks on raw_150).")
@click.option("--size", "size", default="112x112", show_default=True, help="112x112 (ArcFace) or 112x96 (SphereFace).")
@click.option("--identities-from", type=params.Path(exists=True, dir_okay=False), help="LFW pairs.txt: only identities of --folds.")
@click.option("--folds", default="1-5", show_default=True, type=params.Folds(), help="LFW view-2 folds (1..10) for --identities-from.")
@click.option("--workers", type=int, default=None, help="Processes (default: all CPUs).")
@click.option("--overwrite", is_flag=True, help="Replace OUT_DIR if it exists.")
def align(raw_dir, out_dir, landmarks, scale, size, identities_from, folds, workers, overwrite):
    """Align raw face photos onto the ArcFace template with 5-point landmarks (atomic: all or nothing)."""
    from edgekd.data import lfw_fold_identities
    from edgekd.data.align import align_folder
    from edgekd.data.folds import parse_folds

    ids = lfw_fold_identities(identities_from, parse_folds(folds)) if identities_from else None
    m = align_folder(raw_dir, out_dir, landmarks, scale, _size(size), ids, overwrite, workers)
    click.echo(f"{out_dir}: {m['count']} faces of {m['identities']} identities aligned to {size}; "
               f"{m['skipped_without_landmarks']} images without landmarks skipped"
               + (f" (first: {m['skipped_examples'][0]})" if m["skipped_examples"] else ""))


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
