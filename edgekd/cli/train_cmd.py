"""`edgekd` commands: train."""

import click

from edgekd.cli.app import cli
