"""The root `edgekd` command group. Command modules register on it; they stay thin and import libraries lazily
(so `edgekd bench --engine` on a Jetson never imports torch)."""

from __future__ import annotations

import errno

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


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgekd")
def cli() -> None:
    """edgekd: train, distill, export and re-measure face-verification models on the deployed artifact."""
