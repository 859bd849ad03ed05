"""Command-line interface. Each module registers its commands on the root group."""

from edgekd.cli.app import cli
from edgekd.cli import models_cmd, data_cmd, eval_cmd, train_cmd, distill_cmd, export_cmd, bench_cmd, report_cmd, pipeline_cmd, device_check_cmd, qat_cmd, verify_cmd  # noqa: F401,E501  (registration)


def main() -> None:
    cli(prog_name="edgekd")
