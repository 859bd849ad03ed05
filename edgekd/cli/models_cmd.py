"""`edgekd` commands: models."""

import click

from edgekd.cli.app import cli
