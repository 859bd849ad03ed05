"""`edgekd models` lists every registered model with measured params and GFLOPs."""

import json

from click.testing import CliRunner

from edgekd.cli import cli
from edgekd.models import complexity, list_models


def test_models_command_table_and_json():
    runner = CliRunner()
    text = runner.invoke(cli, ["models"])
    assert text.exit_code == 0, text.output
    for name in list_models():
        assert f"\n{name} " in text.output
    assert "multiply-adds" in text.output and "mbf = mobilefacenet" in text.output
    mbf_line = next(ln for ln in text.output.splitlines() if ln.startswith("mobilefacenet "))
    assert f"{complexity('mbf')['gflops']:.3f}" in mbf_line

    out = runner.invoke(cli, ["models", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert [r["name"] for r in data["models"]] == list_models() and "multiply-adds" in data["convention"]
    r200 = next(r for r in data["models"] if r["name"] == "r200")
    assert r200["params"] > 1e8 and r200["gflops"] > 20 and r200["embedding_size"] == 512
