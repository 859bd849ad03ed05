"""`edgekd` commands: report."""

import click

from edgekd.cli import params
from edgekd.cli.app import cli


@cli.command()
@click.argument("results", type=params.Path(file_okay=False))
@click.option("--out", "-o", type=params.Path(file_okay=False), help="Output folder (default: RESULTS/report).")
@click.option("--title", default="edgekd results", show_default=True)
def report(results, out, title):
    """Tables (accuracy; latency/memory/size) and Fig 1 (accuracy vs GFLOPs) from the result JSONs under RESULTS."""
    from edgekd.report import build_report

    summary = build_report(results, out, title=title)
    c = summary["counts"]
    click.echo(f"{c['results']} result files: {c['accuracy_entries']} accuracy figures, {c['bench_rows']} latency "
               f"rows, {c['fig1_points']} points in Fig 1")
    for note in summary["notes"]:
        click.echo(f"note: {note}")
    click.echo(f"wrote {summary['files']['report_md']} (+ CSV, JSON, PNG beside it)")
