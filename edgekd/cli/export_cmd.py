"""`edgekd export`, `edgekd build`, `edgekd calib make|show`: thin wrappers over edgekd.export (calib sets: edgekd.export.calib)."""

import click

from edgekd.cli import params
from edgekd.cli.app import cli
from edgekd.export import DEFAULT_METHOD, DEFAULT_OPSET, METHODS
from edgekd.artifacts import GATED, PRECISIONS, Variant, engine_path, onnx_path
from edgekd.errors import EdgekdError
from edgekd.detect import DETECTORS

PRECISION = click.Choice(PRECISIONS)
API = click.Choice(["auto", "builder-flags", "strongly-typed"])


def _engine_options(f):
    for opt in reversed([
        click.option("--profile", default="1,8,64", show_default=True, type=params.Profile(), help="Batch MIN,OPT,MAX of the optimization profile."),
        click.option("--workspace", "workspace_mib", default=2048, show_default=True, type=params.WORKSPACE, help="Workspace limit, MiB."),
        click.option("--timing-cache", type=params.Path(dir_okay=False), help="Timing cache file (default: .timing_cache beside the engine), reused across builds."),
        click.option("--dla-core", type=int, help="Build for this Jetson DLA core (GPU fallback allowed)."),
        click.option("--api", default="auto", type=API, show_default=True, help="TensorRT API generation (auto: probe the installed module)."),
        click.option("--print-trtexec", is_flag=True, help="Print the equivalent trtexec command line(s)."),
    ]):
        f = opt(f)
    return f


@cli.command("export")
@click.option("--model", help="Registry name (optional when the checkpoint says which model it is).")
@click.option("--detector", type=click.Choice(DETECTORS), help="Export this face detector instead (its three networks into the --out folder).")
@click.option("--weights", type=params.Path(exists=True, dir_okay=False), help="Checkpoint; omitted: shared pretrained file, else RANDOM init.")
@click.option("--out", type=params.Path(), help="FP32 ONNX path (default engines/NAME.onnx); FP16/INT8 files go beside it. "
              "With --detector: a folder (default engines/DETECTOR/).")
@click.option("--parity-images", type=params.Path(exists=True, file_okay=False),
              help="With --detector: photo folder for the parity check (default: shared LFW raw photos).")
@click.option("--frame-size", default="640x480", show_default=True, type=params.FrameSize(),
              help="With --detector --trt: camera frame WxH whose P-Net pyramid the engine profile covers.")
@click.option("--opset", default=DEFAULT_OPSET, show_default=True, type=params.OPSET)
@click.option("--no-simplify", is_flag=True, help="Skip onnxslim/onnxsim.")
@click.option("--no-fp16", is_flag=True, help="Do not write the FP16 ONNX.")
@click.option("--calib", type=params.Path(file_okay=False), help="Calibration set (calib/NAME) -> INT8 Q/DQ ONNX.")
@click.option("--calib-method", "calib_methods", multiple=True, type=click.Choice(METHODS),
              help=f"Repeatable; one Q/DQ file per method (default {DEFAULT_METHOD}).")
@click.option("--calib-limit", type=params.COUNT, help="Use at most this many calibration faces.")
@click.option("--int8-first-conv", is_flag=True, help="Quantize the first conv too (default: keep it in float).")
@click.option("--int8-tail", is_flag=True, help="Quantize / half the embedding tail too (default: keep it in FP32).")
@click.option("--verify", type=params.Path(exists=True, dir_okay=False), help="pairs.txt or .bin: accuracy of every artifact.")
@click.option("--folds", type=params.Folds(), help="Verification folds to use, e.g. 6-10 (default all).")
@click.option("--trt", "trt_precision", type=PRECISION, help="Also build a TensorRT engine of this precision.")
@click.option("--int8-gate", type=params.GateSpec(), help="Accuracy gate for INT8, e.g. tar@1e-4=0.3 (largest TAR drop in points vs FP32, "
              "upper 95% bound, on --gate-data); writes " + str(onnx_path("NAME", Variant("int8", GATED))) + " (layer fallback to float as needed).")
@click.option("--gate-data", type=params.Path(exists=True),
              help="Gate/threshold images: identity folder, label.txt, RecordIO or LFW pairs.txt (with --gate-folds); "
                   "identities disjoint from what you report on. Every artifact gets its thresholds measured here.")
@click.option("--gate-folds", type=params.Folds("--gate-folds"), help="LFW folds whose identities form the gate data, e.g. 1-5.")
@click.option("--gate-images", type=click.IntRange(2, params.MAX_COUNT),
              help="Gate images to use (whole identities, seeded) [default: 6000, export.thresholds.GATE_IMAGES].")
@_engine_options
def export_command(model, detector, weights, out, parity_images, frame_size, opset, no_simplify, no_fp16, calib, calib_methods, calib_limit,
                   int8_first_conv, int8_tail, verify, folds, trt_precision, int8_gate, gate_data, gate_folds,
                   gate_images, profile, workspace_mib, timing_cache, dla_core, api, print_trtexec):
    """Export a model to ONNX (dynamic batch, parity-checked), FP16 and INT8 Q/DQ ONNX, optionally a TensorRT engine.
    With --detector: the detector's networks (ONNX FP32/FP16, optional engines) into a folder."""
    from pathlib import Path

    if detector:
        return _export_detector(click.get_current_context(), detector, out, parity_images, frame_size, opset)
    if out is not None and Path(out).is_dir():
        raise EdgekdError(f"{out}: is a folder, expected a file")
    from edgekd.artifacts import typed_onnx_for
    from edgekd.data.folds import parse_folds
    from edgekd.export.run import build_from_onnx, export_model, print_trtexec as show

    methods = tuple(calib_methods) or (DEFAULT_METHOD,)
    report = export_model(weights=weights, model=model, out=out, opset=opset, simplify=not no_simplify,
                          fp16=not no_fp16, calib=calib, calib_methods=methods, keep_first_conv=not int8_first_conv,
                          keep_tail=not int8_tail, calib_limit=calib_limit, verify=verify, folds=parse_folds(folds),
                          trt_precision=trt_precision, int8_gate=int8_gate, gate_data=gate_data,
                          gate_folds=parse_folds(gate_folds, "--gate-folds"),
                          **({"gate_limit": gate_images} if gate_images else {}))
    if trt_precision or print_trtexec:
        fp32 = Path(report["onnx"]["path"])
        precision = trt_precision or "fp16"
        typed = typed_onnx_for(fp32, precision, methods[0])
        typed = typed if typed.is_file() else None
        if not trt_precision:
            show(fp32, typed, engine_path(fp32, precision), precision, profile, workspace_mib,
                 timing_cache or fp32.parent / ".timing_cache", dla_core)
            return
        build_from_onnx(fp32, precision, typed_onnx=typed, calib=calib, profile=profile,
                        workspace_mib=workspace_mib, timing_cache=timing_cache, dla_core=dla_core, api=api,
                        show_trtexec=print_trtexec, engines_dir=fp32.parent)


# what a detector export uses from the command line; any other option given is refused, not silently ignored
DETECTOR_OPTIONS = {"detector", "out", "parity_images", "frame_size", "opset", "no_fp16", "trt_precision",
                    "profile", "workspace_mib", "api", "weights"}


def _export_detector(ctx, detector, out, parity_images, frame_size, opset):
    from edgekd.export.detector import describe, export_detector

    given = [p for p in ctx.command.params if p.name not in DETECTOR_OPTIONS
             and ctx.get_parameter_source(p.name) is not click.core.ParameterSource.DEFAULT]
    if given:
        raise click.UsageError(f"{given[0].opts[0]} does not apply to --detector")
    p = ctx.params
    if p["trt_precision"] == "int8":
        raise click.UsageError("--detector engines are fp32 or fp16")
    w, h = frame_size
    report = export_detector(detector, out or f"engines/{detector}", weights=p["weights"], opset=opset,
                             fp16=not p["no_fp16"], parity_images=parity_images, trt_precision=p["trt_precision"],
                             frame_size=(h, w), batch_profile=p["profile"], workspace_mib=p["workspace_mib"],
                             api=p["api"])
    click.echo(describe(report))


@cli.command("build")
@click.option("--onnx", "onnx_path", required=True, type=params.Path(exists=True, dir_okay=False),
              help="FP32 ONNX (builder-flags path) or the FP16 / Q/DQ ONNX (strongly typed path).")
@click.option("--precision", required=True, type=PRECISION)
@click.option("--typed-onnx", type=params.Path(exists=True, dir_okay=False), help="FP16 / Q/DQ ONNX for strongly typed builds when --onnx is the FP32 one.")
@click.option("--out", type=params.Path(dir_okay=False), help=f"Engine path (default {engine_path('engines/NAME', 'fp16')} for fp16, likewise for the others).")
@click.option("--calib", type=params.Path(file_okay=False), help="Calibration set for builder-flags INT8 builds.")
@_engine_options
def build_command(onnx_path, precision, typed_onnx, out, calib, profile, workspace_mib, timing_cache, dla_core, api,
                  print_trtexec):
    """Build a TensorRT engine (+ JSON sidecar) from an ONNX file."""
    from edgekd.export.run import build_from_onnx

    build_from_onnx(onnx_path, precision, out=out, typed_onnx=typed_onnx, calib=calib, profile=profile,
                    workspace_mib=workspace_mib, timing_cache=timing_cache, dla_core=dla_core, api=api,
                    show_trtexec=print_trtexec)


@cli.group("calib")
def calib_group():
    """Calibration sets (calib/NAME/): preprocessed faces read by ONNX Runtime quantization and TensorRT."""


@calib_group.command("make")
@click.option("--from", "source", required=True, help="Image folder, train.rec, lfw.bin or pairs.txt.")
@click.option("--out", required=True, type=params.Path(file_okay=False), help="Output folder, e.g. calib/lfw512.")
@click.option("--n", default=512, show_default=True, type=params.COUNT, help="Number of faces.")
@click.option("--model", help="Take preprocessing from this registry model (default: ArcFace (x-127.5)/127.5, 112x112).")
@click.option("--seed", default=0, show_default=True)
@click.option("--folds", type=params.Folds(), help="For pairs.txt/.bin: draw only from these folds (e.g. 1-5, to keep 6-10 unseen).")
@click.option("--overwrite", is_flag=True)
def calib_make(source, out, n, model, seed, folds, overwrite):
    """Draw a seeded, identity-balanced calibration set."""
    from edgekd.data.folds import parse_folds
    from edgekd.export.calib import make_calib
    from edgekd.preprocess import ARCFACE

    pre = ARCFACE
    if model:
        from edgekd.models.registry import model_preprocess

        pre = model_preprocess(model)
    m = make_calib(source, out, n, seed, pre, parse_folds(folds), model, overwrite)
    click.echo(f"{out}: {m['count']} faces from {m['identities']} identities of {m['source_description']}"
               + (f" ({m['note']})" if m.get("note") else ""))


@calib_group.command("show")
@click.argument("path", type=params.Path(file_okay=False))
def calib_show(path):
    """Check a calibration set (hashes) and print its manifest summary."""
    from edgekd.export.calib import open_calib

    c = open_calib(path)
    m = c.manifest
    click.echo(f"{path}: {c.count} faces, {m['identities']} identities, shape {m['shape']} {m['dtype']}, seed {m['seed']}")
    click.echo(f"source: {m['source_description']}" + (f", folds {m['folds']}" if m.get("folds") else ""))
    click.echo(f"preprocess: {m['preprocess']}")
    click.echo(f"shards: {len(m['shards'])}, all sha256 verified; manifest sha256 {c.sha256}")
