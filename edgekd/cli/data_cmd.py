"""`edgekd` commands: data."""

import click

from edgekd.cli.app import cli
