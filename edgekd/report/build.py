"""`edgekd report`: results folder -> Table 1, Table 2, Fig 1 as markdown + CSV + JSON + PNG (one folder, written atomically as a whole)."""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict
from pathlib import Path

from edgekd.errors import EdgekdError
from edgekd.io import atomic_dir
from edgekd.report.collect import accuracy_entries, gflops_by_model, read_results
from edgekd.report.figure import accuracy_vs_gflops
from edgekd.report.tables import csv_text, markdown, table1, table1_details, table2

FILES = {
    "table1_md": "table1_accuracy.md", "table1_csv": "table1_accuracy.csv", "table1_details_csv": "table1_details.csv",
    "table2_md": "table2_latency.md", "table2_csv": "table2_latency.csv", "fig1_png": "fig1_accuracy_vs_gflops.png",
    "report_md": "report.md", "report_json": "report.json",
}


def build_report(results_dir: str | Path, out_dir: str | Path | None = None, title: str = "edgekd results") -> dict:
    """Read every result JSON under `results_dir` and write the tables/figure to `out_dir` (default: <results>/report).

    Returns {"files": {name: path}, "counts": ..., "notes": [...]}.
    """
    root = Path(results_dir)
    out = Path(out_dir) if out_dir is not None else root / "report"
    results = read_results(root)
    kinds = ("train", "distill", "eval", "bench", "video_pipeline")
    scored = [r for r in results if r[1]["kind"] in kinds]
    if not scored:
        raise EdgekdError(f"{root}: no result JSON files (kind {', '.join(kinds)}) found under it")
    entries, notes = accuracy_entries(results, root)
    t1, t1d, t2 = table1(entries), table1_details(entries), table2(results, root)
    files = {k: out / v for k, v in FILES.items()}
    _check_replaceable(out)
    with atomic_dir(out, overwrite=True) as tmp:  # the whole report or none: a failing file leaves the old one
        plotted, fig_notes = accuracy_vs_gflops(entries, gflops_by_model(results), tmp / FILES["fig1_png"],
                                                title=title)
        notes += fig_notes
        pipelines = [r for _, r in results if r["kind"] == "pipeline"]
        header = [f"# {title}", "", f"Built {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC from "
                  f"{len(scored)} result files under `{root}`. Missing figures are shown as —."]
        for p in pipelines:
            if p.get("data_source"):
                header.append(f"\nData: {p['data_source']}")
            if p.get("environment_note"):
                header.append(f"\n{p['environment_note']}")
        md = "\n".join(header) + "\n\n"
        md += "## Table 1: verification accuracy (%, mean ± std over folds)\n\n" + markdown(*t1)
        md += "\n### Table 1 (details: TAR@FAR, EER, AUC, agreement with FP32)\n\n" + markdown(*t1d)
        md += "\n## Table 2: latency, memory and size\n\n" + markdown(*t2)
        md += f"\n## Fig 1: accuracy vs GFLOPs\n\n![accuracy vs GFLOPs]({files['fig1_png'].name})\n\n{plotted} points.\n"
        if notes:
            md += "\n## Notes\n\n" + "".join(f"- {n}\n" for n in notes)
        summary = {
            "kind": "report",
            "results_dir": str(root),
            "counts": {"results": len(scored), "accuracy_entries": len(entries), "bench_rows": len(t2[1]),
                       "fig1_points": plotted},
            "table1": {"columns": t1[0], "rows": t1[1]},
            "table1_details": {"columns": t1d[0], "rows": t1d[1]},
            "table2": {"columns": t2[0], "rows": t2[1]},
            "accuracy": [asdict(e) for e in entries],
            "notes": notes,
            "files": {k: str(v) for k, v in files.items()},
        }
        texts = {"table1_md": markdown(*t1), "table1_csv": csv_text(*t1), "table1_details_csv": csv_text(*t1d),
                 "table2_md": markdown(*t2), "table2_csv": csv_text(*t2), "report_md": md,
                 "report_json": json.dumps(summary, indent=2, allow_nan=False) + "\n"}  # never a bare NaN
        for key, text in texts.items():
            (tmp / FILES[key]).write_text(text, encoding="utf-8")
    return summary


def _check_replaceable(out: Path) -> None:
    """The report folder is replaced whole: refuse one that holds anything but an earlier report's files."""
    if out.is_dir():
        other = sorted(p.name for p in out.iterdir() if p.name not in FILES.values())
        if other:
            raise EdgekdError(f"{out}: holds files other than a report's ({', '.join(other[:3])}); "
                              "choose an empty or new --out folder")
