"""`edgekd verify`: two photos, same person or not, at the deployed artifact's stored threshold."""

import click

from edgekd.artifacts import ENGINE_SUFFIXES
from edgekd.cli import params
from edgekd.cli.app import cli
from edgekd.detect.faces import ONE_FACE_RULES

_IMAGE = params.Path(exists=True, dir_okay=False)


@cli.command("verify")
@click.argument("a", type=_IMAGE)
@click.argument("b", type=_IMAGE)
@click.option("--onnx", "onnx_path", type=params.Path(dir_okay=False), callback=params.artifact_of("onnx"),
              help="Embedder ONNX file, run with ONNX Runtime.")
@click.option("--engine", type=params.Path(dir_okay=False), callback=params.artifact_of("engine"),
              help="Embedder TensorRT engine (" + "/".join(ENGINE_SUFFIXES) + ") with its sidecar.")
@click.option("--model", help="Registry name giving the preprocessing of an --onnx file without edgekd metadata.")
@params.detector_option("Needed when A or B is a raw photo (not an aligned crop).", settings=True)
@click.option("--face", "rule", type=click.Choice(ONE_FACE_RULES), default=ONE_FACE_RULES[0],
              show_default=True, help="Which face of a raw photo with several: largest-central (insightface's "
                                      "align_lfw choice: area - 2 x squared offset from the centre) or largest.")
@click.option("--far", type=click.FloatRange(0, 1, min_open=True),
              help="Use the artifact's threshold stored for this false accept rate (default 1e-4).")
@click.option("--threshold", type=click.FloatRange(-1, 1),
              help="Cosine threshold to use instead of a stored one (same when strictly above).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the text lines.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N (engines: cuda).")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (ONNX Runtime intra-op).")
def verify(a, b, onnx_path, engine, model, detector, detector_set, rule, far, threshold, as_json, device, threads):
    """Same person or not in photos A and B, at the embedder artifact's stored threshold.

    A and B are raw photos (the --detector finds the faces, --face picks one, it is aligned on its five landmarks)
    or aligned crops (an image exactly the embedder's aligned size, e.g. 112x112, is used as is). The threshold is
    the one `edgekd export --gate-data` measured for this artifact at --far (default 1e-4), or --threshold.

    Prints each photo's chosen face (box, score, faces detected), the cosine, the threshold and where it comes from,
    and the verdict. Exit status 0 for both verdicts ("different people" is a result, not a failure; as
    face_recognition's and deepface's command lines report a non-match), 1 with one `Error:` line when no verdict
    could be made: a photo with no face, an unreadable image, a file that is not a detector or not a face embedder,
    no stored threshold for the FAR. Scripts read the verdict from `--json` ("same": true/false)."""
    import json
    import warnings

    from edgekd.detect.verify import format_verdict, run_verify
    from edgekd.errors import EdgekdError

    warnings.formatwarning = lambda msg, *a, **k: f"Warning: {msg}\n"  # one line, as eval and bench
    given = [p for p in (onnx_path, engine) if p is not None]
    if len(given) != 1:
        raise EdgekdError("give exactly one embedder: --onnx or --engine")
    if far is not None and threshold is not None:
        raise click.UsageError("--far picks a stored threshold, --threshold gives one: use only one of them")
    pre = None
    if model is not None and onnx_path is not None:  # an engine's sidecar holds its preprocessing
        from edgekd.models.registry import model_preprocess  # answered from edgekd.models.cfgs, without torch

        pre = model_preprocess(model)
    r = run_verify(a, b, given[0], detector, far=far, threshold=threshold, rule=rule, device=device,
                   threads=threads, model=model if onnx_path else None, preprocess=pre,
                   detector_settings=detector_set)
    click.echo(json.dumps(r, indent=2) if as_json else format_verdict(r))
