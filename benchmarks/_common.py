"""What every benchmark script shares: the machine record, the busy-machine wait/warn, interleaved timing, and
writing JSON + markdown into benchmarks/results/.

A figure is only as good as the record beside it: each result file carries the host (edgekd.bench.environment),
the load average at start and end, the threads used, and the sha256 of the models and data it measured. Absolute
latencies from a loaded machine are flagged as such; ratios from interleaved rounds are the headline because
background load hits every contender of a round alike.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
if str(ROOT) not in sys.path:  # `python benchmarks/x.py` from a checkout without an installed edgekd
    sys.path.insert(0, str(ROOT))


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load1() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def wait_for_quiet(max_wait_s: float, poll_s: float = 15.0, log=print) -> dict:
    """Wait (at most `max_wait_s`) until the 1-minute load average drops below the core count.

    Returns what happened, for the result file: load at the start, seconds waited, and whether the machine was
    still busy when measuring began (then absolute timings from this run are not the machine's speed).
    """
    n, start, t0 = cores(), load1(), time.monotonic()
    load = start
    while load is not None and load >= n and time.monotonic() - t0 < max_wait_s:
        left = max_wait_s - (time.monotonic() - t0)
        log(f"machine busy: load average {load:.2f} >= {n} cores; waiting (at most {left:.0f} s more)")
        time.sleep(min(poll_s, max(0.0, max_wait_s - (time.monotonic() - t0))))
        load = load1()
    busy = load is not None and load >= n
    if busy:
        log(f"WARNING: still busy after {time.monotonic() - t0:.0f} s (load {load:.2f} >= {n} cores): absolute "
            "timings of this run are not this machine's speed; read the interleaved ratios")
    return {"cores": n, "load_at_call": start, "load_at_start": load, "waited_s": round(time.monotonic() - t0, 1),
            "busy_at_start": busy}


class Record:
    """The measured facts of one benchmark run: start/end time and load, threads, environment, hashed inputs."""

    def __init__(self, name: str, argv: list[str] | None = None, max_wait_s: float = 0.0, log=print):
        self.name = name
        self.log = log
        self.inputs: dict[str, dict] = {}
        self.load = wait_for_quiet(max_wait_s, log=log) if max_wait_s > 0 else {
            "cores": cores(), "load_at_call": load1(), "load_at_start": load1(), "waited_s": 0.0,
            "busy_at_start": (load1() or 0) >= cores()}
        if self.load["busy_at_start"] and max_wait_s <= 0:
            log(f"WARNING: load average {self.load['load_at_start']:.2f} >= {self.load['cores']} cores at start")
        self.started = dt.datetime.now(dt.timezone.utc)
        self._t0 = time.perf_counter()
        self.command = "python " + " ".join([f"benchmarks/{Path(sys.argv[0]).name}"] + (argv if argv is not None
                                                                                         else sys.argv[1:]))

    def add_input(self, key: str, path: str | os.PathLike, **extra) -> str:
        """Record a model or data file by sha256; returns the hash."""
        from edgekd.io import sha256_file

        sha = sha256_file(path)
        self.inputs[key] = {"path": str(path), "sha256": sha, **extra}
        return sha

    def finish(self, threads: dict | None = None) -> dict:
        from edgekd.bench.environment import collect_environment

        end_load = load1()
        n = self.load["cores"]
        return {
            "name": self.name,
            "command": self.command,
            "started": self.started.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "finished": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "wall_s": round(time.perf_counter() - self._t0, 1),
            "load": {**self.load, "load_at_end": end_load,
                     "busy_at_end": end_load is not None and end_load >= n},
            "threads": threads or {},
            "inputs": self.inputs,
            "env": collect_environment(),
        }


def machine_line(run: dict, timed: bool = True) -> str:
    """One markdown paragraph of measured facts about the run (never fixed prose); `timed`: the file reports times."""
    env, load = run["env"], run["load"]
    fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
    threads = ", ".join(f"{k} {v}" for k, v in run["threads"].items()) or "library defaults"
    pk = env["packages"]
    versions = ", ".join(f"{k} {pk[k]}" for k in ("edgekd", "torch", "onnxruntime", "onnx", "numpy") if pk.get(k))
    text = (f"Run {run['started']} → {run['finished']} ({run['wall_s']:.0f} s) on {env['cpu_model']} "
            f"({env['cpu_available']} cores available), Python {env['python']}; threads: {threads}; "
            f"1-min load average {fmt(load['load_at_start'])} at start"
            + (f" (after waiting {load['waited_s']:.0f} s)" if load["waited_s"] else "")
            + f", {fmt(load['load_at_end'])} at the end. {versions}.")
    if (load["busy_at_start"] or load["busy_at_end"]) and timed:
        text += (f" **The machine was busy (load ≥ {load['cores']} cores) during this run: absolute timings are "
                 "not this machine's speed; the interleaved ratios are the figures to read.**")
    elif load["busy_at_start"] or load["busy_at_end"]:
        text += (f" The machine was busy (load ≥ {load['cores']} cores) during this run, which changes how long it "
                 "took, not the accuracies.")
    return text


def shown(path: str | os.PathLike) -> str:
    """Repository-relative when inside the checkout, so result files do not name one machine's folders."""
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if ROOT in p.parents else str(p)


def inputs_lines(run: dict) -> list[str]:
    if not run["inputs"]:
        return []
    return ["", "| input | file | sha256 |", "|---|---|---|"] + [
        f"| {k} | `{v['path']}` | `{v['sha256'][:16]}…` |" for k, v in run["inputs"].items()]


def time_round(fn: Callable, x, min_time_s: float, min_iters: int) -> list[float]:
    """Milliseconds per call of fn(x), at least `min_iters` calls and `min_time_s` seconds."""
    out, start = [], time.perf_counter()
    while len(out) < min_iters or time.perf_counter() - start < min_time_s:
        t0 = time.perf_counter()
        fn(x)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def interleaved(fns: dict[str, Callable], x, baseline: str, rounds: int, min_time_s: float, min_iters: int = 2,
                log=None) -> dict[str, dict]:
    """Time every callable in interleaved rounds (A B C, then C B A, ...) so load changes hit all of them alike.

    Per contender: the per-round medians, their median, and the ratio to `baseline` both as ratio of medians and
    as the per-round paired ratios (their spread shows how much the load moved within the run).
    """
    for fn in fns.values():  # warm-up: allocations, ORT arena, oneDNN primitive cache
        fn(x)
    per: dict[str, list[float]] = {k: [] for k in fns}
    medians: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(rounds):
        for k in (list(fns) if r % 2 == 0 else list(reversed(fns))):
            t = time_round(fns[k], x, min_time_s, min_iters)
            per[k] += t
            medians[k].append(statistics.median(t))
        if log:
            log(f"round {r + 1}/{rounds}: " + ", ".join(f"{k} {medians[k][-1]:.2f} ms" for k in fns))
    base = statistics.median(medians[baseline])
    out = {}
    for k in fns:
        med = statistics.median(medians[k])
        paired = [a / b for a, b in zip(medians[k], medians[baseline])]
        out[k] = {"latency_ms_median": med, "latency_ms_mean": statistics.fmean(per[k]),
                  "latency_ms_std": statistics.stdev(per[k]) if len(per[k]) > 1 else 0.0,
                  "round_medians_ms": medians[k], "iterations": len(per[k]),
                  "ratio": med / base, "paired_ratios": paired,
                  "paired_ratio_range": [min(paired), max(paired)]}
    return out


def code_key(*packages: str, root: str | os.PathLike = ROOT) -> str:
    """Hash of the Python sources of edgekd sub-packages (e.g. "edgekd/export"): a benchmark cache keyed by it is
    rebuilt when the code that made it changes, not only when its inputs do."""
    import hashlib

    h = hashlib.sha256()
    for pkg in packages:
        for f in sorted((Path(root) / pkg).rglob("*.py")):
            h.update(f.relative_to(root).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:8]


def edgekd_cmd() -> list[str]:
    """The `edgekd` console script of the running interpreter's environment (benchmarks call the CLI as users do)."""
    beside = Path(sys.executable).parent / "edgekd"
    found = str(beside) if beside.is_file() else shutil.which("edgekd")
    if found is None:
        raise SystemExit("the edgekd command is not installed in this environment (pip install -e .)")
    return [found]


def write_result(stem: str, result: dict, markdown: str, out_dir: str | os.PathLike = RESULTS) -> Path:
    """`<out_dir>/<stem>.json` and `.md`, each atomically."""
    from edgekd.io import write_json_atomic, write_text_atomic

    out = Path(out_dir)
    write_json_atomic(out / f"{stem}.json", result)
    write_text_atomic(out / f"{stem}.md", markdown if markdown.endswith("\n") else markdown + "\n")
    return out / f"{stem}.json"


def pct(v, digits: int = 2) -> str:
    return "n/a" if v is None else f"{100 * v:.{digits}f}"
