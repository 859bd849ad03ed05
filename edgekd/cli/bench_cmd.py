"""`edgekd` commands: bench."""

import click

from edgekd.artifacts import ENGINE_SUFFIXES
from edgekd.cli import params
from edgekd.cli.app import cli
from edgekd.runtime.base import TORCH_PRECISIONS


@cli.command()
@click.option("--engine", type=params.Path(dir_okay=False), callback=params.artifact_of("engine"), help="TensorRT engine (" + "/".join(ENGINE_SUFFIXES) + ") to benchmark.")
@click.option("--onnx", "onnx_path", type=params.Path(dir_okay=False), callback=params.artifact_of("onnx"), help="ONNX file to benchmark (ONNX Runtime).")
@click.option("--model", help="Registry model name (PyTorch; random init unless --weights).")
@click.option("--weights", type=params.Path(dir_okay=False), callback=params.artifact_of("checkpoint"), help="PyTorch checkpoint (architecture auto-detected).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N (ONNX: also tensorrt, auto).")
@click.option("--precision", type=click.Choice(TORCH_PRECISIONS), default="fp32", show_default=True,
              help="PyTorch compute precision (artifacts carry their own).")
@click.option("--batch-sizes", "-b", default="1,8,32", show_default=True, type=params.Batches(),
              help="Comma-separated batch sizes.")
@click.option("--warmup", default=5, show_default=True, type=click.IntRange(0), help="Untimed calls per batch size.")
@click.option("--iterations", "-n", default=20, show_default=True, type=click.IntRange(1),
              help="At least this many timed calls per batch size.")
@click.option("--min-time", default=1.0, show_default=True, type=click.FloatRange(0),
              help="...and at least this many seconds per batch size.")
@click.option("--video", type=params.Path(), help="Video file (needs OpenCV) or folder of frames: per-frame time "
              "with decode + preprocessing vs inference only, at batch 1.")
@params.detector_option("With --video: each frame is detected, aligned, embedded and matched (without it the whole "
                        "frame is centre-cropped as a face, no detection).", settings=True)
@click.option("--gallery", type=params.Path(file_okay=False), help="With --detector: folder of identity subfolders "
              "(raw photos, detected and aligned, or aligned crops) to match faces against.")
@click.option("--far", default=1e-4, show_default=True, type=float,
              help="With --gallery: match at the artifact's stored cosine threshold for this FAR.")
@click.option("--threads", type=click.IntRange(1), help="With --detector: CPU threads (ONNX Runtime intra-op).")
@click.option("--frames", "max_frames", default=200, show_default=True, type=click.IntRange(1),
              help="At most this many frames from --video.")
@click.option("--out", "-o", type=params.Path(dir_okay=False), help="Write the bench JSON here.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def bench(engine, onnx_path, model, weights, device, precision, batch_sizes, warmup, iterations, min_time, video,
          detector, detector_set, gallery, far, threads, max_frames, out, quiet):
    """Latency (mean ± std, p50/p90/p99), throughput and memory of an engine, ONNX file or PyTorch model."""
    import warnings

    from edgekd.bench import format_bench, run_bench
    from edgekd.io import write_json_atomic

    warnings.formatwarning = lambda msg, *a, **k: f"Warning: {msg}\n"  # one line, as eval: no source line
    if onnx_path is None and engine is None and model is None and weights is None:
        raise click.UsageError("give one of --engine, --onnx, --model or --weights")
    if detector is not None or gallery is not None:
        if video is None or detector is None or (onnx_path is None and engine is None):
            raise click.UsageError("--detector needs --video and --onnx or --engine (--gallery needs --detector)")
        from edgekd.bench.video import format_pipeline, run_video_pipeline

        result = run_video_pipeline(video, detector, onnx_path or engine, gallery=gallery, far=far, device=device,
                                    threads=threads, max_frames=max_frames, detector_settings=detector_set)
        click.echo(format_pipeline(result))
        if out:
            write_json_atomic(out, result)
            click.echo(f"wrote {out}")
        return
    result = run_bench(engine=engine, onnx=onnx_path, model=model, weights=weights, device=device,
                       precision=precision, batch_sizes=batch_sizes, warmup=warmup, iterations=iterations,
                       min_time_s=min_time, video=video, max_frames=max_frames, progress=not quiet)
    click.echo(format_bench(result))
    if out:
        write_json_atomic(out, result)
        click.echo(f"wrote {out}")
