"""`edgekd device-check`: thin wrapper over edgekd.device_check.run_device_check."""

import click

from edgekd.cli.app import cli


@cli.command("device-check")
@click.option("--onnx", "onnx_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="FP32 ONNX written by `edgekd export`.")
@click.option("--data", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Verification set: LFW pairs.txt or insightface .bin (real faces).")
@click.option("--images-root", type=click.Path(file_okay=False), help="Images of pairs.txt (default aligned_112x112/).")
@click.option("--folds", help="LFW folds to use, e.g. 6-7 (default all).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Bundle folder (JSON + markdown + engines).")
@click.option("--calib", type=click.Path(file_okay=False), help="Calibration set: also build and check an INT8 engine.")
@click.option("--qdq-onnx", type=click.Path(exists=True, dir_okay=False), help="Q/DQ INT8 ONNX: also an INT8 engine.")
@click.option("--profile", default="1,8,32", show_default=True, help="Batch MIN,OPT,MAX of the engines.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def device_check(onnx_path, data, images_root, folds, out, calib, qdq_onnx, profile, quiet):
    """On a GPU: build engines, compare with ONNX Runtime on real faces, re-measure accuracy, latency, memory."""
    from edgekd.cli.export_cmd import _profile
    from edgekd.data.folds import parse_folds
    from edgekd.device_check import run_device_check

    run_device_check(onnx_path, data, out, folds=parse_folds(folds), images_root=images_root, calib=calib,
                     qdq_onnx=qdq_onnx, profile=_profile(profile), progress=not quiet, log=click.echo)
