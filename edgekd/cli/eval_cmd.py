"""`edgekd` commands: eval."""

import click

from edgekd.cli.app import cli
