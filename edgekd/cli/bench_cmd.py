"""`edgekd` commands: bench."""

import click

from edgekd.cli.app import cli
