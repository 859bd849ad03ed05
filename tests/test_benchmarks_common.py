"""benchmarks/_common.py: the busy-machine wait is bounded and recorded, interleaved rounds alternate their order,
and the machine paragraph of a result file says when the machine was busy."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import _common  # noqa: E402


def test_wait_for_quiet_returns_when_load_drops(monkeypatch):
    loads = iter([5.0, 3.0, 0.5])
    monkeypatch.setattr(_common, "cores", lambda: 2)
    monkeypatch.setattr(_common, "load1", lambda: next(loads))
    monkeypatch.setattr(_common.time, "sleep", lambda s: None)
    r = _common.wait_for_quiet(60, poll_s=1, log=lambda m: None)
    assert r["load_at_call"] == 5.0 and r["load_at_start"] == 0.5 and not r["busy_at_start"]


def test_wait_for_quiet_is_bounded_and_warns(monkeypatch):
    clock = iter(range(0, 1000, 10))
    monkeypatch.setattr(_common, "cores", lambda: 2)
    monkeypatch.setattr(_common, "load1", lambda: 7.0)
    monkeypatch.setattr(_common.time, "monotonic", lambda: float(next(clock)))
    monkeypatch.setattr(_common.time, "sleep", lambda s: None)
    said = []
    r = _common.wait_for_quiet(30, poll_s=10, log=said.append)
    assert r["busy_at_start"] and r["load_at_start"] == 7.0
    assert any(m.startswith("WARNING") for m in said)


def test_interleaved_alternates_order_and_reports_ratios(monkeypatch):
    calls = []
    fns = {"a": lambda x: calls.append("a"), "b": lambda x: calls.append("b")}
    monkeypatch.setattr(_common, "time_round", lambda fn, x, t, n: (fn(x), [2.0 if calls[-1] == "a" else 1.0])[1])
    out = _common.interleaved(fns, None, "b", rounds=3, min_time_s=0)
    assert calls[2:] == ["a", "b", "b", "a", "a", "b"]  # after one warm-up call each: A B, B A, A B
    assert out["a"]["ratio"] == pytest.approx(2.0) and out["a"]["paired_ratio_range"] == [2.0, 2.0]
    assert out["b"]["ratio"] == pytest.approx(1.0)


def _run(load_start, load_end):
    return {"started": "s", "finished": "f", "wall_s": 1.0, "threads": {"torch": 1}, "inputs": {},
            "load": {"cores": 2, "load_at_start": load_start, "load_at_end": load_end, "waited_s": 0.0,
                     "busy_at_start": load_start >= 2, "busy_at_end": load_end >= 2},
            "env": {"cpu_model": "CPU", "cpu_available": 2, "python": "3.11", "packages": {"torch": "2"}}}


def test_machine_line_flags_a_busy_run_only():
    assert "busy" not in _common.machine_line(_run(0.5, 1.0))
    line = _common.machine_line(_run(0.5, 3.0))
    assert "busy" in line and "3.00 at the end" in line


def test_code_key_follows_the_sources(tmp_path):
    pkg = tmp_path / "edgekd" / "export"
    pkg.mkdir(parents=True)
    (pkg / "int8.py").write_text("PLACEMENT = 'inputs'\n")
    before = _common.code_key("edgekd/export", root=tmp_path)
    assert _common.code_key("edgekd/export", root=tmp_path) == before
    (pkg / "int8.py").write_text("PLACEMENT = 'inputs and outputs'\n")
    assert _common.code_key("edgekd/export", root=tmp_path) != before
