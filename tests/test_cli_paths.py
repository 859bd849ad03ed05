"""Path options: a missing file, a folder given for a file or a file for a folder is one `Error: <path>: <problem>`
line with exit status 1, worded by edgekd from the path itself (click's message is translatable text)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from edgekd.cli import cli


@pytest.fixture(params=["click's wording", "translated"])
def click_wording(request, monkeypatch):
    """The second case rewords click's own message, as a translation would: edgekd's line must not change."""
    if request.param == "translated":
        original = click.Path.convert

        def reworded(self, value, param, ctx):
            try:
                return original(self, value, param, ctx)
            except click.BadParameter:
                raise click.BadParameter("Datei ungültig", ctx=ctx, param=param) from None

        monkeypatch.setattr(click.Path, "convert", reworded)
    return request.param


@pytest.mark.parametrize("args, problem", [
    (["export", "--weights", "{missing}"], "does not exist"),
    (["eval", "--onnx", "{folder}"], "is a folder, expected a file"),
    (["calib", "show", "{file}"], "is a file, expected a folder"),
])
def test_path_problems_are_one_input_error_line(tmp_path, click_wording, args, problem):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    paths = {"missing": tmp_path / "missing.onnx", "folder": tmp_path / "folder", "file": tmp_path / "file"}
    argv = [a.format(**paths) for a in args]
    r = CliRunner().invoke(cli, argv)
    assert r.exit_code == 1, r.output
    bad = next(a for a in argv if a.startswith(str(tmp_path)))
    assert r.output.strip().splitlines() == [f"Error: {bad}: {problem}"]


def test_a_malformed_command_line_still_exits_2():
    r = CliRunner().invoke(cli, ["eval", "--batch-size", "abc"])
    assert r.exit_code == 2
