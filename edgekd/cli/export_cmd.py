"""`edgekd` commands: export."""

import click

from edgekd.cli.app import cli
