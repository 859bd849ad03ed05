"""`edgekd device-check`: thin wrapper over edgekd.device_check.run_device_check."""

import click

from edgekd.cli import params
from edgekd.cli.app import cli


@cli.command("device-check")
@click.option("--onnx", "onnx_path", required=True, type=params.Path(exists=True, dir_okay=False),
              help="FP32 ONNX written by `edgekd export`.")
@click.option("--data", required=True, type=params.Path(exists=True, dir_okay=False),
              help="Verification set: LFW pairs.txt or insightface .bin (real faces).")
@click.option("--images-root", type=params.Path(file_okay=False), help="Images of pairs.txt (default aligned_112x112/).")
@click.option("--folds", type=params.Folds(), help="LFW folds to use, e.g. 6-7 (default all).")
@click.option("--out", required=True, type=params.Path(file_okay=False), help="Bundle folder (JSON + markdown + engines).")
@click.option("--calib", type=params.Path(file_okay=False),
              help="Calibration set: also an INT8 engine, from a Q/DQ file quantized here from it.")
@click.option("--qdq-onnx", type=params.Path(exists=True, dir_okay=False), help="Q/DQ INT8 ONNX: also an INT8 engine.")
@click.option("--gate-data", type=params.Path(exists=True),
              help="With --calib: quantize the accuracy-gated Q/DQ file on these images (as `edgekd export`).")
@click.option("--gate-folds", help="LFW folds whose identities form the gate data, e.g. 1-5.")
@click.option("--int8-gate", default="tar@1e-4=0.3", show_default=True, help="The gate, with --gate-data.")
@click.option("--profile", default="1,8,32", show_default=True, type=params.Profile(), help="Batch MIN,OPT,MAX of the engines.")
@params.detector_option("device-check builds its FP16 engines (or uses the given engines), compares them with ONNX "
                        "Runtime on real photos and times detection and detect -> align -> embed -> match per frame.")
@click.option("--detector-photos", type=params.Path(exists=True, file_okay=False),
              help="With --detector: real photos for its checks (default the shared LFW raw photos, else the "
                   "faces of --data).")
@click.option("--frame-size", default="640x480", show_default=True, type=params.FrameSize(),
              help="With --detector: the composited test frames and the P-Net engine profile.")
@click.option("--detector-frames", default=20, show_default=True, type=click.IntRange(min=1),
              help="With --detector: timed test frames (after one warm-up frame).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def device_check(onnx_path, data, images_root, folds, out, calib, qdq_onnx, gate_data, gate_folds, int8_gate, profile,
                 detector, detector_photos, frame_size, detector_frames, quiet):
    """On a GPU: build engines, compare with ONNX Runtime on real faces, re-measure accuracy, latency, memory."""
    from edgekd.data.folds import parse_folds
    from edgekd.device_check import run_device_check

    run_device_check(onnx_path, data, out, folds=parse_folds(folds), images_root=images_root, calib=calib,
                     qdq_onnx=qdq_onnx, gate_data=gate_data, gate_folds=parse_folds(gate_folds, "--gate-folds"),
                     int8_gate=int8_gate, profile=profile, detector=detector, detector_photos=detector_photos,
                     frame_size=frame_size, detector_frames=detector_frames, progress=not quiet, log=click.echo)
