"""The root `edgekd` command group. Command modules register on it; they stay thin and import libraries lazily
(so `edgekd bench --engine` on a Jetson never imports torch)."""

from __future__ import annotations

import errno
import re

import click

from edgekd import __version__
from edgekd.errors import EdgekdError


class _Group(click.Group):
    """Turns edgekd's one-line errors (and OS errors such as a full disk) into `Error: ...` and exit 1, no traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EdgekdError as e:
            raise click.ClickException(str(e)) from None
        except click.BadParameter as e:
            if isinstance(e, click.MissingParameter) or e.param is None or not isinstance(e.param.type, click.Path):
                raise  # a missing option or a malformed value: the command line itself is wrong (exit 2)
            raise click.ClickException(_path_problem(e.message)) from None
        except ModuleNotFoundError as e:
            if e.name != "onnxruntime":
                raise
            raise click.ClickException("onnxruntime is not installed: pip install 'edgekd[cpu]' "
                                       "(or 'edgekd[gpu]' for CUDA)") from None
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EACCES, errno.EROFS, errno.ENOENT, errno.EDQUOT, errno.ENAMETOOLONG):
                where = f"{e.filename}: " if e.filename else ""
                raise click.ClickException(f"{where}{e.strerror}") from None
            raise


_PATH_MESSAGE = re.compile(r"(?:File|Directory|Path) '(?P<path>.*)' (?P<problem>.+?)\.?$", re.S)
_EXPECTED = {"is a directory": "is a folder, expected a file", "is a file": "is a file, expected a folder"}


def _path_problem(message: str) -> str:
    """click's check of a path argument ("File 'x' is a directory.") as an input error like any other:
    `<path>: <problem>`, exit status 1. Exit status 2 stays for a malformed command line (unknown option,
    missing argument, a value that is not a number)."""
    m = _PATH_MESSAGE.fullmatch(message.strip())
    if not m:
        return message
    return f"{m['path']}: {_EXPECTED.get(m['problem'], m['problem'])}"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgekd")
def cli() -> None:
    """edgekd: train, distill, export and re-measure face-verification models on the deployed artifact."""
