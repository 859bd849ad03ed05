"""Resumable stage runner of `edgekd pipeline`: each stage's key is sha256 of its config and its input files'
hashes; a marker JSON written atomically on success lets a re-run skip it. Progress: a stage list with status and
ETA (tqdm bars of the library calls appear inside the running stage)."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgekd.errors import EdgekdError
from edgekd.io import read_json, sha256_file, write_json_atomic, write_text_atomic


@dataclass
class Stage:
    """`run(stage) -> dict` does the work and returns {"outputs": [paths...], ...result}; outputs are hashed into
    the marker and become inputs of the stages that list this one in `after`. `work_dir` is cleared before a fresh
    (non-resumed) run, so a changed config never mixes with an older partial run."""

    name: str
    config: dict
    run: Callable[["Stage"], dict]
    after: list[str] = field(default_factory=list)
    input_files: list[Path] = field(default_factory=list)  # external inputs (data, pretrained weights)
    estimate_s: float = 10.0
    work_dir: Path | None = None
    key: str = ""
    resume: bool = False  # set by the runner: an interrupted run of the same key left work behind
    result: dict = field(default_factory=dict)
    status: str = "pending"
    wall_s: float | None = None
    cpu_s: float | None = None  # CPU seconds of this process and its children (user + system)


def _hash_file(path: Path, cache: dict[Path, str]) -> str:
    path = Path(path)
    if path not in cache:
        cache[path] = sha256_file(path)
    return cache[path]


def _cpu_seconds() -> float:
    import resource

    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def _fmt(s: float | None) -> str:
    if s is None:
        return "—"
    s = int(round(s))
    return f"{s // 60}:{s % 60:02d}"


class StageRunner:
    def __init__(self, out: Path, stages: list[Stage], progress: bool = True, stream=None):
        self.out, self.stages, self.progress = Path(out), stages, progress
        self.stream = stream or sys.stderr
        self.marker_dir = self.out / ".stages"
        self.by_name = {s.name: s for s in stages}
        if len(self.by_name) != len(stages):
            raise EdgekdError("pipeline: duplicate stage names")
        seen: set[str] = set()
        for s in stages:
            missing = [d for d in s.after if d not in seen]
            if missing:
                raise EdgekdError(f"pipeline: stage {s.name} runs after {missing[0]}, which is not an earlier stage")
            seen.add(s.name)
        self._hashes: dict[Path, str] = {}

    # -- keys and markers ------------------------------------------------------------------------------------
    def marker_path(self, stage: Stage) -> Path:
        return self.marker_dir / (stage.name.replace("/", "__") + ".json")

    def compute_key(self, stage: Stage) -> str:
        inputs = {}
        for dep in stage.after:
            d = self.by_name[dep]
            if d.status not in ("done", "skipped"):
                raise EdgekdError(f"pipeline: stage {stage.name} needs {dep}, which did not finish")
            inputs[dep] = d.result.get("output_sha256", {})
        for p in stage.input_files:
            inputs[str(p)] = _hash_file(p, self._hashes)
        blob = json.dumps({"stage": stage.name, "config": stage.config, "inputs": inputs}, sort_keys=True,
                          default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _finished(self, stage: Stage) -> dict | None:
        """The marker's result if it records this key and its outputs are unchanged on disk."""
        path = self.marker_path(stage)
        if not path.exists():
            return None
        try:
            marker = read_json(path)
        except EdgekdError:
            return None
        if marker.get("key") != stage.key:
            return None
        for p, sha in (marker.get("result", {}).get("output_sha256") or {}).items():
            if not Path(p).exists() or _hash_file(Path(p), self._hashes) != sha:
                return None
        return marker["result"]

    # -- display ---------------------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        if not self.progress:
            return
        from tqdm import tqdm

        tqdm.write(text, file=self.stream)
        self.stream.flush()

    def _eta(self, index: int, started: float) -> float | None:
        done = [s for s in self.stages[:index] if s.status == "done" and s.wall_s is not None]
        factor = (sum(s.wall_s for s in done) / max(1e-9, sum(s.estimate_s for s in done))) if done else 1.0
        remaining = sum(s.estimate_s for s in self.stages[index:] if s.status == "pending")
        return remaining * factor

    def write_status(self, started: float) -> None:
        write_json_atomic(self.out / "pipeline_status.json", {
            "kind": "pipeline_status", "elapsed_s": time.perf_counter() - started,
            "stages": [{"name": s.name, "status": s.status, "wall_s": s.wall_s, "cpu_s": s.cpu_s,
                        "note": s.result.get("note")} for s in self.stages]})

    # -- run -------------------------------------------------------------------------------------------------
    def run(self) -> list[Stage]:
        started = time.perf_counter()
        n = len(self.stages)
        self.say(f"pipeline: {n} stages -> {self.out}")
        for i, stage in enumerate(self.stages):
            stage.key = self.compute_key(stage)
            prior = self._finished(stage)
            tag = f"[{i + 1:>2}/{n}] {stage.name}"
            if prior is not None:
                stage.result, stage.status, stage.wall_s = prior, "skipped", 0.0
                self.say(f"  {tag:<44} skipped (finished earlier, same inputs)")
                continue
            eta = self._eta(i, started)
            self.say(f"> {tag:<44} running  (elapsed {_fmt(time.perf_counter() - started)}, ETA {_fmt(eta)})")
            stage.status = "running"
            self.write_status(started)
            self._prepare_work_dir(stage)
            t0, c0 = time.perf_counter(), _cpu_seconds()
            try:
                result = stage.run(stage) or {}
            except BaseException:
                stage.status = "failed"
                self.write_status(started)
                raise
            stage.wall_s = time.perf_counter() - t0
            stage.cpu_s = _cpu_seconds() - c0
            outputs = [Path(p) for p in result.pop("outputs", [])]
            result["output_sha256"] = {str(p): _hash_file(p, self._hashes) for p in outputs}
            result["wall_s"] = stage.wall_s
            result["cpu_s"] = stage.cpu_s
            stage.result, stage.status = result, "done"
            write_json_atomic(self.marker_path(stage), {
                "stage": stage.name, "key": stage.key, "config": stage.config,
                "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "result": result})
            note = f" — {result['note']}" if result.get("note") else ""
            self.say(f"  {tag:<44} done in {_fmt(stage.wall_s)} (CPU {_fmt(stage.cpu_s)}){note}")
        self.write_status(started)
        return self.stages

    def _prepare_work_dir(self, stage: Stage) -> None:
        """Resume an interrupted run of the same key; otherwise start the stage's folder afresh."""
        wd = stage.work_dir
        if wd is None:
            return
        key_file = wd / ".stage_key"
        if wd.exists() and key_file.exists() and key_file.read_text().strip() == stage.key:
            stage.resume = True
            return
        if wd.exists():
            shutil.rmtree(wd)
        wd.mkdir(parents=True)
        write_text_atomic(key_file, stage.key + "\n")
