"""`edgekd models`: every registered architecture with its measured size and cost."""

import json

import click

from edgekd.cli.app import cli


@cli.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
def models(as_json: bool) -> None:
    """List registered models with parameters and GFLOPs (multiply-adds x 1e-9, measured)."""
    from edgekd.models.flops import CONVENTION, model_table
    from edgekd.models.registry import aliases

    rows = model_table()
    if as_json:
        click.echo(json.dumps({"convention": CONVENTION, "aliases": aliases(), "models": rows}, indent=2))
        return
    click.echo(f"{'model':<30} {'input':>7} {'dim':>4} {'params (M)':>11} {'GFLOPs':>8}")
    for r in rows:
        size = "x".join(map(str, r["input_size"]))
        click.echo(f"{r['name']:<30} {size:>7} {r['embedding_size']:>4} {r['params'] / 1e6:>11.3f} {r['gflops']:>8.3f}")
    click.echo(f"\n{CONVENTION}")
    click.echo("aliases: " + ", ".join(f"{a} = {n}" for a, n in aliases().items()))
