"""`edgekd` commands: report."""

import click

from edgekd.cli.app import cli
