"""`edgekd` commands: pipeline."""

import click

from edgekd.cli.app import cli
