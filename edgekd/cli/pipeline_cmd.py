"""`edgekd` commands: pipeline."""

import click

from edgekd.cli import params
from edgekd.cli.app import cli


@cli.command()
@click.option("--out", "-o", required=True, type=params.Path(file_okay=False),
              help="Run folder; re-running with the same folder skips finished stages.")
@click.option("--config", "-c", "config_file", type=params.Path(dir_okay=False, exists=True),
              help="YAML/TOML/JSON settings (configs/paper.yaml: full scale). Default: the demo settings.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override one setting, e.g. --set train.steps=20 (repeatable).")
@click.option("--quiet", "-q", is_flag=True, help="No stage list / progress bars.")
def pipeline(out, config_file, overrides, quiet):
    """Whole toolchain: data -> teacher -> students (vanilla, soft KD, adversarial KD) -> ONNX FP32/FP16/INT8
    (+ TensorRT where available) -> eval -> bench -> report. Resumable."""
    from edgekd.pipeline.run import run_pipeline
    from edgekd.pipeline.settings import load_pipeline_config

    cfg = load_pipeline_config(config_file, list(overrides))
    summary = run_pipeline(cfg, out, progress=not quiet)
    done = sum(s["status"] == "done" for s in summary["stages"])
    skipped = sum(s["status"] == "skipped" for s in summary["stages"])
    m, s = divmod(int(round(summary["wall_time_s"])), 60)
    click.echo(f"pipeline {cfg.name}: {done} stages run, {skipped} skipped (finished earlier) in {m}:{s:02d}")
    click.echo(f"data: {summary['data_source']}")
    click.echo(f"report: {summary['report']['report_md']}")
