"""The INT8 accuracy gate with controls: FP32 against itself passes, a deliberately broken INT8 (calibrated on blank
images) fails, two calibration subsets give the same verdict, bad SPEC / too small a calibration set fail early."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edgekd.errors import EdgekdError
from edgekd.export import gate
from edgekd.export.calib import make_calib, open_calib
from edgekd.export.int8 import Int8Quantizer, zero_points_zero
from edgekd.export.thresholds import embed, load_gate_data
from tiny_models import export_edgekd, tiny_class, tiny_model, tiny_onnx

PRE = tiny_class("convface").preprocess


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate")
    onnx = export_edgekd(root / "face.onnx")
    for seed in (0, 1):
        make_calib("synthetic:120x2:3", root / f"calib{seed}", n=64, seed=seed, preprocess=PRE, progress=False)
    blank = root / "blank"
    for k in range(64):
        (blank / f"id{k}").mkdir(parents=True)
        Image.fromarray(np.full((112, 112, 3), 128, np.uint8)).save(blank / f"id{k}" / "0.jpg")
    make_calib(str(blank), root / "calib_blank", n=64, preprocess=PRE, progress=False)
    data = load_gate_data("synthetic:40x4:7", PRE, limit=None)
    return {"root": root, "onnx": onnx, "data": data, "fp32": embed(onnx, data)}


def test_spec_parsing():
    assert gate.parse_spec("tar@1e-4=0.3") == gate.GateSpec("tar", 1e-4, 0.3)
    with pytest.raises(EdgekdError, match="unknown metric 'acc'"):
        gate.parse_spec("acc@1e-4=0.3")
    with pytest.raises(EdgekdError, match="expected METRIC@FAR=MAX_DROP_PT"):
        gate.parse_spec("tar=0.3")


def test_fp32_against_itself_passes_and_broken_int8_fails(tiny):
    judge = gate.Judge(tiny["fp32"], tiny["data"], gate.parse_spec("tar@1e-3=0.5"), bootstrap=200)
    same = judge(tiny["fp32"])
    assert same["passed"] and same["drop_pt"] == 0 and same["far_at_fp32_threshold"] <= 1e-4
    with Int8Quantizer(tiny["onnx"], open_calib(tiny["root"] / "calib_blank")) as q:
        q.write(tiny["root"] / "broken.onnx")
    broken = judge(embed(tiny["root"] / "broken.onnx", tiny["data"]))
    assert not broken["passed"] and broken["drop_pt_upper95"] > 0.5


def test_two_calibration_subsets_same_verdict_and_zero_points(tiny):
    spec = gate.parse_spec("tar@1e-3=1.0")
    verdicts = []
    for seed in (0, 1):
        with Int8Quantizer(tiny["onnx"], open_calib(tiny["root"] / f"calib{seed}")) as q:
            dst = tiny["root"] / f"gated{seed}.onnx"
            report, emb = gate.run_gate(q, tiny["fp32"], tiny["data"], spec, dst, log=lambda *a: None)
            verdicts.append(report["passed"])
            import onnx

            m = onnx.load(str(dst))
            assert zero_points_zero(m) and any(n.op_type == "QuantizeLinear" for n in m.graph.node)
            assert report["after"]["drop_pt_upper95"] <= 1.0 and len(report["trials"]) >= 3
    assert verdicts == [True, True]


def test_unsatisfiable_gate_is_one_error(tiny):
    with Int8Quantizer(tiny["onnx"], open_calib(tiny["root"] / "calib_blank")) as q:
        with pytest.raises(gate.GateNotMet, match=r"INT8 gate tar@0.001=0.1 not met: best was .* float layers") as e:
            gate.run_gate(q, tiny["fp32"], tiny["data"], gate.parse_spec("tar@1e-3=0.1"), tiny["root"] / "x.onnx",
                          methods=("minmax",), log=lambda *a: None)
    assert isinstance(e.value, EdgekdError) and "\n" not in str(e.value)
    report, best = e.value.report, e.value.best  # callers read fields, never the message
    assert not report["passed"] and best["method"] == report["method"] == "minmax"
    assert best["float_layers"] == report["float_layers"] and best["drop_pt_upper95"] > 0.1
    assert not (tiny["root"] / "x.onnx").exists()


@pytest.mark.parametrize("args, message", [
    (["--int8-gate", "acc@1e-4=0.3"], "unknown metric 'acc'"),
    (["--int8-gate", "tar@1e-4=0.3", "--calib-limit", "8"], "8 calibration faces is too few"),
    (["--int8-gate", "tar@1e-4=0.3", "--gate-data", None], None),
])
def test_cli_gate_errors_are_one_line(tiny, tmp_path, args, message):
    from edgekd.cli import cli

    if None in args:  # --int8-gate without --gate-data
        args, message = args[:2], "--int8-gate needs --gate-data"
    base = ["export", "--model", "mobilefacenet", "--out", str(tmp_path / "m.onnx"), "--calib",
            str(tiny["root"] / "calib0"), "--no-fp16"]
    if "--gate-data" not in args and message != "--int8-gate needs --gate-data":
        args = [*args, "--gate-data", str(tiny["root"] / "blank")]
    res = CliRunner().invoke(cli, base + args)
    assert res.exit_code == (2 if "unknown metric" in message else 1), res.output  # a malformed value: usage error
    errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in res.output
    assert not (tmp_path / "m.onnx").exists()  # failed before any work


def test_int8_stage_writes_gated_cpu_and_thresholds(tiny, tmp_path):
    """The export hook: gated Q/DQ + CPU INT8 files, each artifact with its own thresholds in its metadata, and
    `eval --protocol all-pairs --flip none` on the gate data reproduces the FAR each threshold was set for."""
    import json
    import shutil

    import onnx

    from edgekd.eval.allpairs import allpairs_metrics, stored_thresholds
    out = tmp_path / "face.onnx"
    shutil.copy(tiny["onnx"], out)
    artifacts = {"fp32": {"precision": "fp32", "path": out}}
    with Int8Quantizer(out, open_calib(tiny["root"] / "calib0")) as q:
        report = gate.int8_stage(out, artifacts, q, gate.parse_spec("tar@1e-3=1.0"), tiny["data"],
                                 log=lambda *a: None)
    assert report["passed"] and set(artifacts) == {"fp32", "int8-gated", "int8-cpu"}
    from edgekd.export.int8 import CPU_FORMS

    cpu = artifacts["int8-cpu"]
    assert cpu["form"] in CPU_FORMS and set(cpu["form_choice"]["candidates"]) == set(CPU_FORMS)
    assert cpu["form_choice"]["chosen"]["passed"] and cpu["form_choice"]["chosen"]["form"] == cpu["form"]
    for key, a in artifacts.items():
        meta = {p.key: p.value for p in onnx.load(str(a["path"])).metadata_props}
        t = stored_thresholds({"thresholds": meta["edgekd.thresholds"]})
        assert t["flip"] == "none" and set(t["cosine_at_far"]) == {"1e-03", "1e-04", "1e-05"}
        if key == "int8-cpu":
            assert meta["edgekd.int8_form"] == cpu["form"] and meta["edgekd.target"] == "onnxruntime-cpu-x86"
        r = allpairs_metrics(embed(a["path"], tiny["data"]), tiny["data"].labels, fars=(1e-3,),
                             stored_thresholds=t["cosine_at_far"], bootstrap=10)
        assert r["far_at_stored_threshold"]["1e-03"] <= 1e-3
    assert json.loads(meta["edgekd.thresholds"])["sha256"] == tiny["data"].sha256


def test_tensorrt_int8_builds_default_to_the_gated_file(tmp_path, machine):
    """Every API generation builds INT8 from `<stem>.int8-gated.onnx` when it exists (no entropy calibrator), and
    the engine sidecar carries that file's thresholds. TensorRT is the strict double of that generation."""
    import json

    from edgekd.export import graph
    from edgekd.export.run import build_from_onnx

    state = machine()
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    gated = tiny_onnx(tmp_path / "m.int8-gated.onnx", precision="int8")
    thresholds = {"cosine_at_far": {"1e-04": 0.31}, "flip": "none"}
    graph.save(graph.set_metadata(graph.load(gated), {"thresholds": thresholds}), gated)
    side = build_from_onnx(onnx_path, "int8", engines_dir=tmp_path / "e", log=lambda *a: None)
    assert side["onnx"] == str(gated) and side["thresholds"] == thresholds
    assert not state.calibration
    assert json.loads((tmp_path / "e" / "m.int8.engine.json").read_text())["thresholds"] == thresholds


def test_runtime_runs_tensorrt_qdq_files_as_written(tiny):
    """`edgekd eval` (OnnxRuntime) and the gate see the same numbers for a TensorRT-targeted Q/DQ file: its Q/DQ ops
    as written, not ORT's fused x86 S8S8 kernels (which saturate on CPUs without VNNI)."""
    from edgekd.runtime.onnx_runtime import OnnxRuntime

    with Int8Quantizer(tiny["onnx"], open_calib(tiny["root"] / "calib0")) as q:
        q.write(tiny["root"] / "s8s8.onnx")
    data = tiny["data"]
    rt = OnnxRuntime(tiny["root"] / "s8s8.onnx")
    np.testing.assert_allclose(rt(data.x[:16]), embed(tiny["root"] / "s8s8.onnx", data)[:16], rtol=1e-5, atol=1e-6)


def test_tensorrt_file_quantizes_weighted_op_inputs_only_and_float_layers_stay_float(tiny, tmp_path):
    """TensorRT's Q/DQ placement: activations quantized only where a weighted op reads them, never at a conv output
    or before a ReLU6; a float layer's input carries no Q/DQ (ORT's default left one there through the ReLU6/Add
    feeding it, so 'float' layers were still fed INT8-rounded activations)."""
    import onnx

    src = export_edgekd(tmp_path / "res.onnx", tiny_model("relu6res"))
    calib = open_calib(tiny["root"] / "calib0", PRE)
    with Int8Quantizer(src, calib) as q:
        convs = [n for n in q.quantizable_nodes() if n not in q.default_float]
        dst = tmp_path / "q.onnx"
        q.write(dst, "minmax", [convs[-1]])
    m = onnx.load(str(dst))
    weights = {i.name for i in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    consumers = {}
    for n in m.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    act_dq = [n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in producer]
    assert act_dq
    for dq in act_dq:  # every activation Q/DQ exists because a weighted op reads it (an Add may share it: the
        # residual input, which TensorRT's placement guide quantizes as well)
        assert any(c.op_type in ("Conv", "Gemm", "MatMul") and c.input[0] == dq.output[0]
                   for c in consumers[dq.output[0]]), dq.name
        assert {c.op_type for c in consumers[dq.output[0]]} <= {"Conv", "Gemm", "MatMul", "Add"}, dq.name
        q_src = producer[producer[dq.input[0]].input[0]] if producer[dq.input[0]].input[0] in producer else None
        assert q_src is None or q_src.op_type not in ("Conv", "Gemm", "MatMul"), "a conv output is quantized"
    float_conv = next(n for n in m.graph.node if n.name == convs[-1])
    assert producer[float_conv.input[0]].op_type != "DequantizeLinear"
    assert float_conv.input[1] in weights  # float weights, no DequantizeLinear


def test_sensitivity_ranks_every_quantized_layer(tiny, tmp_path):
    """Each quantized layer gets a rank (the gate's fallback search draws from it). onnxruntime's own matching pairs
    only Q/DQ'd tensors, and conv outputs carry none under TensorRT's placement: it ranked 1 of 3 layers here."""
    src = export_edgekd(tmp_path / "res.onnx", tiny_model("relu6res"))
    with Int8Quantizer(src, open_calib(tiny["root"] / "calib0", PRE)) as q:
        q.write(tmp_path / "q.onnx", "minmax")
        ranking = gate.sensitivity(q, tmp_path / "q.onnx")
        expected = set(q.quantizable_nodes()) - set(q.default_float)
    assert {r["node"] for r in ranking} == expected and len(expected) == 3
    noise = [r["added_noise_sqnr_db"] for r in ranking]
    assert noise == sorted(noise) and all(np.isfinite(noise))


def test_fewest_float_layers_doubles_then_bisects():
    tried = []

    def attempt(layers, need=5):
        tried.append(len(layers))
        return {"passed": len(layers) >= need, "drop_pt_upper95": 1.0 / (1 + len(layers)),
                "far_at_fp32_threshold": 1e-4, "k": len(layers)}

    names = [f"L{i}" for i in range(20)]
    start = {"passed": False, "drop_pt_upper95": 9.0, "far_at_fp32_threshold": 1e-4, "k": 0}
    assert gate.fewest_float_layers(attempt, names, start)["k"] == 5 and tried == [1, 2, 4, 8, 6, 5]
    tried.clear()
    best = gate.fewest_float_layers(lambda layers: attempt(layers, need=99), names, start)
    assert not best["passed"] and best["k"] == 20 and tried == [1, 2, 4, 8, 16, 20]


class _FloatLayerJudge:
    """Stands in for gate.Judge (same verdict keys) over files instead of embeddings (gate.embed is patched to pass
    the path through): a file passes once it keeps `need` layers in float. The search's wiring is then checked
    without depending on how noisy the tiny model's INT8 happens to be."""

    spec = gate.parse_spec("tar@1e-4=0.3")

    def __init__(self, data, need):
        self.data, self.need = data, need

    def __call__(self, path):
        import json

        from edgekd.export import graph

        n = len(json.loads(graph.read_metadata(graph.load(path))["float_layers"]))
        drop = 0.2 * max(0, self.need - n) + 0.1
        return {"drop_pt": drop, "drop_pt_ci95": [drop - 0.1, drop + 0.1], "drop_pt_upper95": drop + 0.05,
                "far_at_fp32_threshold": 1e-4, "passed": n >= self.need}


@pytest.mark.parametrize("need", [2, 99])
def test_cpu_form_keeps_its_own_noisiest_layers_in_float_until_the_gate_holds(tiny, monkeypatch, need):
    """A method can pass as the TensorRT file (weighted-op inputs only) and fail in the CPU forms, which quantize
    every activation: the fastest form then keeps its noisiest layers in float (fewest that pass); when it cannot
    pass, the most accurate candidate is written, and the record says so."""
    from edgekd.export.int8 import CPU_FORMS

    monkeypatch.setattr(gate, "embed", lambda path, data, threads=None: path)
    with Int8Quantizer(tiny["onnx"], open_calib(tiny["root"] / "calib0", PRE)) as q:
        judge = _FloatLayerJudge(tiny["data"], need)
        form, layers, record, _ = gate.choose_cpu_form(q, tiny["onnx"], "minmax", [], judge, log=lambda *a: None)
        q.write(q.tmp / "ranked.onnx", "minmax", [], "qdq-u8s8")
        ranking = [r["node"] for r in gate.sensitivity(q, q.tmp / "ranked.onnx")]
    ratios = {f: c["latency_ratio_to_fp32_b32"] for f, c in record["candidates"].items()}
    assert set(ratios) == set(CPU_FORMS) and not any(c["passed"] for c in record["candidates"].values())
    assert record["chosen"]["form"] == form and record["chosen"]["float_layers"] == layers
    if need == 2:
        assert form == min(ratios, key=ratios.get) and layers == ranking[:2] and record["chosen"]["passed"]
        assert record["search"]["form"] == form
        assert [t["num_float_layers"] for t in record["search"]["trials"]] == [1, 2]
        assert "fewest of its own noisiest layers" in record["rule"]
    else:
        assert not record["chosen"]["passed"] and record["search"]["form"] == min(ratios, key=ratios.get)
        assert record["rule"] == "no form passed the gate: the most accurate one" and len(layers) == len(ranking[:3])
