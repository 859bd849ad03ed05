"""`edgekd` commands: distill."""

import click

from edgekd.cli.app import cli
