"""Result tables and the accuracy-vs-GFLOPs figure, built only from result JSON files (no torch, no click)."""

from edgekd.report.build import build_report

__all__ = ["build_report"]
