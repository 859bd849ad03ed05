"""Run (or resume) the pipeline's stage plan into an output folder and write <out>/pipeline.json."""

from __future__ import annotations

import datetime as _dt
import os
import time
from pathlib import Path

from edgekd.io import check_writable_dir, write_json_atomic
from edgekd.pipeline.plan import build_stages, resolve_threads
from edgekd.pipeline.settings import PipelineConfig
from edgekd.pipeline.stages import StageRunner


def run_pipeline(cfg: PipelineConfig, out: str | Path, progress: bool = True) -> dict:
    """Run (or resume) every stage; returns and writes <out>/pipeline.json (stages, wall times, data source)."""
    from edgekd.bench.environment import collect_environment

    out = Path(out).resolve()
    check_writable_dir(out, "pipeline output folder")  # before hours of training, not at the first result
    if cfg.runtime_device.startswith("cuda"):  # ONNX files are evaluated there: CPU-only onnxruntime fails now
        from edgekd.runtime.onnx_runtime import check_device

        check_device(cfg.runtime_device, f"runtime_device {cfg.runtime_device}")
    threads = resolve_threads(cfg.threads)
    import torch

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    started = _dt.datetime.now(_dt.timezone.utc)
    load_start = list(os.getloadavg())
    stages = build_stages(cfg, out)  # checks the data source: a bad one fails before the folder exists
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "pipeline_config.json", cfg.to_dict())
    StageRunner(out, stages, progress=progress).run()
    wall = time.perf_counter() - t0
    env = collect_environment()
    summary = {
        "kind": "pipeline_run",
        "name": cfg.name,
        "started": started.isoformat(timespec="seconds"),
        "wall_time_s": wall,
        "data_source": next(s for s in stages if s.name == "data").result.get("note"),
        "stages": [{"name": s.name, "status": s.status, "wall_s": s.wall_s, "cpu_s": s.cpu_s,
                    "note": s.result.get("note")} for s in stages],
        "report": next(s for s in stages if s.name == "report").result.get("files"),
        "threads": threads,
        "cpu_seconds": sum(st.cpu_s or 0 for st in stages),
        "load_average_start": load_start,
        "load_average_end": env["load_average"],
        "environment": {k: env[k] for k in ("cpu_model", "cpu_count", "cpu_available", "load_average", "gpus",
                                            "packages")},
        "config": cfg.to_dict(),
    }
    write_json_atomic(out / "pipeline.json", summary)
    return summary
