"""The pipeline's stage runner: keys from config + input hashes, markers, skipping, dependent re-runs, resume."""

from __future__ import annotations

import io
import json

import pytest

from edgekd.errors import EdgekdError
from edgekd.pipeline.stages import Stage, StageRunner


class Toy:
    """Three stages a -> b -> c writing files; counts how often each really ran."""

    def __init__(self, tmp_path):
        self.out = tmp_path / "run"
        self.calls: list[str] = []
        self.src = tmp_path / "input.txt"
        self.src.write_text("raw data")

    def stages(self, a_cfg=1, b_cfg=1, c_cfg=1, fail_c=False):
        def a(s):
            self.calls.append("a")
            p = self.out / "a.txt"
            p.write_text(f"a{a_cfg}:{self.src.read_text()}")
            return {"outputs": [p]}

        def b(s):
            self.calls.append("b")
            p = self.out / "b.txt"
            p.write_text(f"b{b_cfg}:" + (self.out / "a.txt").read_text())
            return {"outputs": [p], "note": "b done"}

        def c(s):
            self.calls.append("c" + ("-resumed" if s.resume else ""))
            (s.work_dir / "partial").write_text("half")
            if fail_c:
                raise KeyboardInterrupt
            p = s.work_dir / "c.txt"
            p.write_text(f"c{c_cfg}:" + (self.out / "b.txt").read_text())
            return {"outputs": [p]}

        return [Stage("a", {"v": a_cfg}, a, input_files=[self.src]),
                Stage("b", {"v": b_cfg}, b, after=["a"]),
                Stage("c", {"v": c_cfg}, c, after=["b"], work_dir=self.out / "c")]

    def run(self, **kw):
        self.out.mkdir(exist_ok=True)
        self.calls.clear()
        stages = StageRunner(self.out, self.stages(**kw), stream=io.StringIO()).run()
        return {s.name: s.status for s in stages}


def test_second_run_skips_everything(tmp_path):
    t = Toy(tmp_path)
    assert t.run() == {"a": "done", "b": "done", "c": "done"}
    assert t.calls == ["a", "b", "c"]
    assert t.run() == {"a": "skipped", "b": "skipped", "c": "skipped"}
    assert t.calls == []
    marker = json.loads((t.out / ".stages" / "b.json").read_text())
    assert marker["stage"] == "b" and marker["result"]["note"] == "b done" and len(marker["key"]) == 64
    status = json.loads((t.out / "pipeline_status.json").read_text())
    assert [s["status"] for s in status["stages"]] == ["skipped"] * 3


def test_changed_config_reruns_only_dependents(tmp_path):
    t = Toy(tmp_path)
    t.run()
    assert t.run(b_cfg=2) == {"a": "skipped", "b": "done", "c": "done"}
    assert t.calls == ["b", "c"]
    assert t.run(b_cfg=2, c_cfg=2) == {"a": "skipped", "b": "skipped", "c": "done"}
    assert (t.out / "c" / "c.txt").read_text() == "c2:b2:a1:raw data"


def test_changed_input_file_reruns_all(tmp_path):
    t = Toy(tmp_path)
    t.run()
    t.src.write_text("new raw data")
    t.run()
    assert t.calls == ["a", "b", "c"]


def test_modified_output_is_not_trusted(tmp_path):
    t = Toy(tmp_path)
    t.run()
    (t.out / "b.txt").write_text("tampered")
    t.run()
    assert t.calls == ["b", "c"]


def test_interrupted_stage_resumes_same_key_and_restarts_changed_key(tmp_path):
    t = Toy(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        t.run(fail_c=True)
    assert not (t.out / ".stages" / "c.json").exists()  # no marker for an unfinished stage
    status = json.loads((t.out / "pipeline_status.json").read_text())
    assert status["stages"][2]["status"] == "failed"
    assert t.run() == {"a": "skipped", "b": "skipped", "c": "done"}
    assert t.calls == ["c-resumed"]  # same key: its work folder was kept for the stage to resume
    with pytest.raises(KeyboardInterrupt):
        t.run(c_cfg=3, fail_c=True)
    (t.out / "c" / "stale").write_text("from the old config")
    t.run(c_cfg=4)
    assert t.calls == ["c"] and not (t.out / "c" / "stale").exists()  # new key: folder started afresh


def test_missing_dependency_is_an_error(tmp_path):
    s = Stage("x", {}, lambda s: {}, after=["nope"])
    with pytest.raises(EdgekdError, match="not an earlier stage"):
        StageRunner(tmp_path, [s], stream=io.StringIO())
    with pytest.raises(EdgekdError, match="duplicate"):
        StageRunner(tmp_path, [Stage("x", {}, lambda s: {}), Stage("x", {}, lambda s: {})])


def test_progress_lines(tmp_path):
    t = Toy(tmp_path)
    t.out.mkdir()
    buf = io.StringIO()
    StageRunner(t.out, t.stages(), stream=buf).run()
    text = buf.getvalue()
    assert "[ 1/3] a" in text and "ETA" in text and "done in" in text
    buf = io.StringIO()
    StageRunner(t.out, t.stages(), stream=buf).run()
    assert buf.getvalue().count("skipped") == 3
