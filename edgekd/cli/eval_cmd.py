"""`edgekd` commands: eval."""

from pathlib import Path

import click

from edgekd.artifacts import ENGINE_SUFFIXES
from edgekd.cli import params
from edgekd.cli.app import cli
from edgekd.detect.faces import ONE_FACE_RULES
from edgekd.runtime.base import TORCH_PRECISIONS


@cli.command("eval")
@click.option("--weights", type=params.Path(dir_okay=False), callback=params.artifact_of("checkpoint"), help="PyTorch checkpoint (architecture auto-detected).")
@click.option("--onnx", "onnx_path", type=params.Path(dir_okay=False), callback=params.artifact_of("onnx"), help="ONNX file, run with ONNX Runtime.")
@click.option("--engine", type=params.Path(dir_okay=False), callback=params.artifact_of("engine"), help="TensorRT engine (" + "/".join(ENGINE_SUFFIXES) + ") with its sidecar.")
@click.option("--model", help="Registry name: forces the architecture of --weights, or the preprocessing of an "
                               "--onnx file without edgekd metadata.")
@click.option("--data", required=True, type=params.Path(), help="Verification set: insightface .bin or LFW pairs.txt "
              "(--protocol all-pairs: also an identity folder, label.txt or RecordIO).")
@click.option("--images-root", type=params.Path(file_okay=False),
              help="Images of pairs.txt (default aligned_112x112/ beside it; with --detector: the raw photos, required).")
@click.option("--json", "out_json", type=params.Path(dir_okay=False), help="Write the results here (atomically).")
@click.option("--plot", type=params.Path(dir_okay=False), help="Write a ROC curve PNG here.")
@click.option("--reference", type=params.Path(dir_okay=False),
              help="FP32 checkpoint or artifact to compare embeddings with (min/mean cosine on the same images).")
@click.option("--flip", type=click.Choice(["sum", "concat", "none"]), default="sum", show_default=True,
              help="Flip test-time augmentation: emb(x)+emb(flip x) (insightface) or concatenated (2D-d).")
@click.option("--no-flip", is_flag=True, help="Same as --flip none.")
@click.option("--batch-size", default=64, show_default=True, type=params.BATCH)
@click.option("--resize", is_flag=True, help="Resize images of another size (with a warning) instead of failing.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda[:N], auto (PyTorch / ONNX Runtime).")
@click.option("--precision", type=click.Choice(TORCH_PRECISIONS), default="fp32", show_default=True,
              help="PyTorch compute precision (artifacts carry their own).")
@click.option("--channels-last", is_flag=True, help="PyTorch: channels_last memory format.")
@click.option("--compile", "use_compile", is_flag=True, help="PyTorch: torch.compile the model.")
@click.option("--cuda-graph", is_flag=True, help="PyTorch on CUDA: replay a captured CUDA graph per batch size.")
@click.option("--providers", help="ONNX Runtime execution providers, comma separated (default: by --device).")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (torch intra-op / ORT intra-op).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--protocol", type=click.Choice(["pairs", "all-pairs"]), default="pairs", show_default=True,
              help="pairs: the set's pair list, 10 folds. all-pairs: every impostor pair of the images of a set of "
                   "identities (--data: identity folder, label.txt, RecordIO or pairs.txt), TAR at FAR 1e-3..1e-5 "
                   "with bootstrap intervals, FAR at the artifact's stored thresholds.")
@click.option("--identities-from", type=params.Path(exists=True, dir_okay=False),
              help="all-pairs: keep only the identities of --folds of this LFW pairs.txt.")
@click.option("--folds", type=params.Folds(), help="LFW folds (1..10), e.g. 6-10: pairs of these folds only; all-pairs: their identities.")
@params.detector_option("Evaluate from raw photos: each is detected and aligned (--images-root: the raw photos of a "
                        "pairs.txt; all-pairs: an identity folder of raw photos). A photo with no face is never "
                        "dropped: pairs protocol, each pair using it is an error at every threshold; all-pairs, it "
                        "matches nothing (its genuine pairs are rejected). The JSON's detection block lists them.",
                        settings=True)
@click.option("--face", "face_rule", type=click.Choice(ONE_FACE_RULES), default=ONE_FACE_RULES[0], show_default=True,
              help="With --detector: which face of a photo is embedded (largest-central: insightface's align_lfw "
                   "choice, area - 2 x squared offset from the centre).")
def eval_cmd(weights, onnx_path, engine, model, data, images_root, out_json, plot, reference, flip, no_flip,
             batch_size, resize, device, precision, channels_last, use_compile, cuda_graph, providers, threads, quiet,
             protocol, identities_from, folds, detector, detector_set, face_rule):
    """Verification accuracy (10-fold, insightface protocol), TAR@FAR, EER, AUC and speed of a model or artifact."""
    import contextlib
    import warnings

    from edgekd.data.folds import parse_folds
    from edgekd.errors import EdgekdError
    from edgekd.eval.run import load_eval_data, run_eval, summary_table
    from edgekd.runtime import artifact_kind, open_artifact

    warnings.formatwarning = lambda msg, *a, **k: f"Warning: {msg}\n"
    given = [p for p in (weights, onnx_path, engine) if p is not None]
    if len(given) != 1:
        raise EdgekdError("give exactly one of --weights, --onnx or --engine")
    for p in given + ([reference] if reference else []):
        if not Path(p).is_file():
            raise EdgekdError(f"{p}: no such file")
    if detector is None and face_rule != ONE_FACE_RULES[0]:
        raise click.UsageError("--face applies to --detector only")
    if detector is not None:
        from edgekd.detect.photoset import load_raw_data

        raw, files, root = load_raw_data(data, protocol, images_root, identities_from, parse_folds(folds))
    else:
        vset = load_eval_data(data, protocol, images_root, resize, identities_from, parse_folds(folds))
    common = dict(device=device, threads=threads, providers=providers.split(",") if providers else None)

    def open_(path, kind, precision_="fp32", **torch_options):
        pre = None
        if model is not None and kind == "onnx":
            from edgekd.models.registry import model_preprocess

            pre = model_preprocess(model)
        return open_artifact(path, model=model if kind != "engine" else None, precision=precision_,
                             preprocess=pre, **common, **torch_options)

    kind = "checkpoint" if weights else "onnx" if onnx_path else "engine"
    with contextlib.ExitStack() as stack:
        if detector is not None:
            from edgekd.detect.open import open_detector
            from edgekd.detect.photoset import DetectedSet
            from edgekd.devices import resolve_device

            det = stack.enter_context(open_detector(detector, device=resolve_device(device, "onnxruntime"),
                                                    threads=threads, **detector_set))
            vset = DetectedSet(raw, files, det, face_rule, root=root)
        rt = stack.enter_context(open_(given[0], kind, precision, channels_last=channels_last,
                                       compile=use_compile, cuda_graph=cuda_graph))
        ref = None
        if reference:
            rkind = artifact_kind(reference)
            ref = stack.enter_context(open_(reference, rkind) if rkind != "checkpoint" else
                                      open_artifact(reference, **common))
        result = run_eval(rt, vset, reference=ref, out_json=out_json, plot=plot, flip="none" if no_flip else flip,
                          batch_size=batch_size, protocol=protocol, progress=not quiet)
    click.echo(summary_table(result))
    if out_json:
        click.echo(f"wrote {out_json}")
