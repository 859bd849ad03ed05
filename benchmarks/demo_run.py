"""The demo as a measurement: run `edgekd pipeline` (the demo settings unless --config/--set say otherwise) into a
work folder, time it, and keep its pipeline.json and report tables in benchmarks/results/demo/.

The pipeline is called through its CLI exactly as `make demo` does, so this measures what a user runs. It first
waits (at most --max-wait s) for the load average to drop below the core count. Recorded:
wall time and CPU time of the whole run (children included), the load average at start and end, the data source
the pipeline chose (real LFW or synthetic), every stage's status and wall time, and the accuracy and latency rows
of the pipeline's own report.

    python benchmarks/demo_run.py [--work runs/benchmarks/demo] [--fresh] [--set KEY=VALUE ...] [--results DIR]
        [--max-wait 300]

--fresh deletes an earlier pipeline folder at --work first (otherwise a re-run resumes and its timing says so).
Writes <results>/pipeline.json, <results>/report/* (copied), and <results>/demo_run.json + .md.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import time
from pathlib import Path

from _common import RESULTS, ROOT, Record, edgekd_cmd, machine_line, pct, shown, write_result

REPORT_FILES = ("report.md", "report.json", "table1_accuracy.md", "table1_accuracy.csv", "table2_latency.md",
                "table2_latency.csv", "fig1_accuracy_vs_gflops.png")


def children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def markdown(result: dict) -> str:
    p = result["pipeline"]
    ran = [s for s in p["stages"] if s["status"] != "skipped"]
    lines = ["# `edgekd pipeline` demo run", "",
             f"Command: `{result['run']['command']}` → `{' '.join(result['pipeline_command'])}`", "",
             f"Data source: {p.get('data_source')}. {len(p['stages'])} stages, {len(ran)} run in this invocation "
             f"({'fresh work folder' if result['fresh'] else 'resumed an existing work folder'}). Wall time "
             f"{result['wall_s']:.0f} s ({result['wall_s'] / 60:.1f} min), CPU time of the pipeline process "
             f"{result['cpu_s']:.0f} s, pipeline threads {p.get('threads')}.", "",
             "| stage | status | wall s |", "|---|---|---|"]
    lines += [f"| {s['name']} | {s['status']} | {'—' if s['wall_s'] is None else format(s['wall_s'], '.1f')} |"
              for s in p["stages"]]
    if result["accuracy_rows"]:
        lines += ["", "Accuracy of every evaluated artifact (from the pipeline's `report/report.json`):", "",
                  "| data | model | method | precision | runtime | accuracy | AUC | min cos vs FP32 |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in result["accuracy_rows"]:
            auc = "—" if r.get("auc") is None else format(r["auc"], ".4f")
            lines.append(f"| {r.get('dataset')} | {r.get('model')} | {r.get('method')} | {r.get('precision')} | "
                         f"{r.get('runtime')} | {pct(r.get('accuracy_mean'))} ± {pct(r.get('accuracy_std'))} % | {auc} | "
                         f"{'—' if r.get('cosine_min') is None else format(r['cosine_min'], '.4f')} |")
    lines += ["", f"The pipeline's own tables: `{result['kept']['report_dir']}` (copied from the work folder); its "
              f"pipeline.json: `{result['kept']['pipeline_json']}`.", "", machine_line(result["run"])]
    return "\n".join(lines)


def accuracy_rows(report_json: Path) -> list[dict]:
    """The accuracy rows of the pipeline report (one per evaluated artifact), reduced to the fields a reader compares."""
    from edgekd.io import read_json

    if not report_json.is_file():
        return []
    rep = read_json(report_json)
    rows = rep.get("accuracy") or []
    keep = ("dataset", "model", "method", "precision", "runtime", "accuracy_mean", "accuracy_std", "auc", "cosine_min",
            "source")
    return [{k: r.get(k) for k in keep} for r in rows if isinstance(r, dict)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "benchmarks" / "demo", help="pipeline output folder")
    ap.add_argument("--fresh", action="store_true", help="delete an earlier pipeline run at --work first")
    ap.add_argument("--config", help="settings file passed to `edgekd pipeline --config`")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="passed to `edgekd pipeline --set` (repeatable)")
    ap.add_argument("--results", type=Path, default=RESULTS / "demo", help="where the kept files go")
    ap.add_argument("--max-wait", type=float, default=300,
                    help="seconds to wait for load < cores before starting (the wall time is the figure here)")
    a = ap.parse_args()

    work = a.work.resolve()
    if a.fresh and work.exists():
        if not (work / "pipeline_config.json").is_file() and any(work.iterdir()):
            raise SystemExit(f"{work}: not a pipeline folder (no pipeline_config.json); refusing to delete it")
        shutil.rmtree(work)
    fresh = not (work / "pipeline_config.json").is_file()
    cmd = [*edgekd_cmd(), "pipeline", "--out", str(work)] + (["--config", a.config] if a.config else [])
    for s in a.sets:
        cmd += ["--set", s]
    rec = Record("demo_run", max_wait_s=a.max_wait)
    cpu0, t0 = children_cpu_s(), time.perf_counter()
    proc = subprocess.run(cmd)
    wall, cpu = time.perf_counter() - t0, children_cpu_s() - cpu0
    if proc.returncode != 0:
        raise SystemExit(f"edgekd pipeline failed (exit {proc.returncode}); nothing written to {a.results}")

    from edgekd.io import read_json, write_json_atomic

    pipeline = read_json(work / "pipeline.json")
    out = a.results
    write_json_atomic(out / "pipeline.json", pipeline)
    report_out = out / "report"
    report_out.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in REPORT_FILES:
        src = work / "report" / name
        if src.is_file():
            shutil.copyfile(src, report_out / name)
            copied.append(name)
    result = {"kind": "benchmark", "name": "demo_run", "pipeline_command": [Path(cmd[0]).name] + cmd[1:],
              "fresh": fresh, "wall_s": wall, "cpu_s": cpu,
              "pipeline": {k: pipeline.get(k) for k in ("data_source", "stages", "threads", "wall_time_s",
                                                        "load_average_start", "load_average_end", "config")},
              "accuracy_rows": accuracy_rows(work / "report" / "report.json"),
              "kept": {"pipeline_json": shown(out / "pipeline.json"), "report_dir": shown(report_out), "files": copied},
              "run": rec.finish({"pipeline": pipeline.get("threads")})}
    write_result("demo_run", result, markdown(result), out)
    print(markdown(result))


if __name__ == "__main__":
    main()
