"""Accuracy-gated INT8: `edgekd export --calib C --int8-gate tar@1e-4=0.3 --gate-data D`.

Accept an INT8 Q/DQ model only when, on gate data D (identities disjoint from what is reported on), judged
all-pairs against the FP32 model on the same images:
- the one-sided upper 95 % confidence bound of the TAR drop at the SPEC's FAR (95th percentile of a paired
  identity bootstrap) is <= the allowed drop in points, and
- the INT8 FAR at the FP32 model's FAR=1e-4 threshold is <= 2e-4 (a deployed threshold must not let in twice the
  impostors it was set for).
Search: every calibration method with the default float layers (first conv, embedding tail); if none passes, rank
the quantized layers by sensitivity — the quantization noise each layer adds itself when the whole model runs
quantized (`sensitivity`: SQNR vs the float model at its input and output, on calibration faces) — and keep the
noisiest in float: k = 1, 2, 4, 8, ... until the gate holds, then bisect down to the
smallest passing k, at most half the weighted layers. If nothing passes: EdgekdError with the best reached.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekd.artifacts import CPU, GATED, Variant, onnx_path
from edgekd.errors import EdgekdError
from edgekd.eval.allpairs import far_at_threshold, paired_tar_drop, threshold_at_far
from edgekd.export import DEFAULT_METHOD
from edgekd.export.int8 import METHODS, Int8Quantizer
from edgekd.export.thresholds import GateData, embed, scores

FAR_GUARD = (1e-4, 2e-4)  # INT8 FAR at the FP32 threshold for 1e-4 must stay <= 2e-4
MIN_CALIB = 64
MAX_FLOAT_FRACTION = 0.5  # beyond half the weighted layers in float, "INT8" would be a float model in disguise
SENSITIVITY_FACES = 32
METRICS = ("tar",)
_SPEC = re.compile(r"(?P<metric>[a-z_]+)@(?P<far>[0-9.eE+-]+)=(?P<drop>[0-9.]+)")


@dataclass(frozen=True)
class GateSpec:
    metric: str
    far: float
    max_drop_pt: float

    def __str__(self) -> str:
        return f"{self.metric}@{self.far:g}={self.max_drop_pt:g}"


class GateNotMet(EdgekdError):
    """No candidate met the gate. Callers read `report` (the gate report: trials, sensitivity, the best candidate's
    `method` and `float_layers`, `after`) and `best` (its verdict), never the message."""

    def __init__(self, spec: GateSpec, report: dict, best: dict):
        self.spec, self.report, self.best = spec, report, best
        super().__init__(
            f"INT8 gate {spec} not met: best was {best['method']} with {len(best['float_layers'])} float "
            f"layers, TAR drop {best['drop_pt']:+.3f} pt (upper 95% {best['drop_pt_upper95']:+.3f}, allowed "
            f"{spec.max_drop_pt:g}), FAR at the FP32 1e-4 threshold {best['far_at_fp32_threshold']:.2e} "
            f"(allowed {FAR_GUARD[1]:.0e})")


def parse_spec(spec: str) -> GateSpec:
    """'tar@1e-4=0.3': TAR at FAR 1e-4 may drop at most 0.3 points (upper 95 % bound) against FP32."""
    m = _SPEC.fullmatch(spec.strip().lower())
    if not m:
        raise EdgekdError(f"--int8-gate {spec!r}: expected METRIC@FAR=MAX_DROP_PT, e.g. tar@1e-4=0.3")
    if m["metric"] not in METRICS:
        raise EdgekdError(f"--int8-gate {spec!r}: unknown metric {m['metric']!r} (known: {', '.join(METRICS)})")
    try:
        far, drop = float(m["far"]), float(m["drop"])
    except ValueError:
        raise EdgekdError(f"--int8-gate {spec!r}: FAR {m['far']!r} and drop {m['drop']!r} must be numbers") from None
    if not 0 < far < 1:
        raise EdgekdError(f"--int8-gate {spec!r}: FAR must lie in (0, 1)")
    if not drop <= 100:
        raise EdgekdError(f"--int8-gate {spec!r}: the drop is in TAR points, 0..100")
    return GateSpec(m["metric"], far, drop)


class Judge:
    """Scores candidates against the FP32 reference on the gate data (the FP32 pass is done once)."""

    def __init__(self, fp32_emb: np.ndarray, data: GateData, spec: GateSpec, bootstrap: int = 1000):
        self.data, self.spec, self.bootstrap = data, spec, bootstrap
        self.ref = scores(fp32_emb, data)
        self.guard_threshold = threshold_at_far(self.ref, FAR_GUARD[0])
        if self.guard_threshold is None or threshold_at_far(self.ref, spec.far) is None:
            raise EdgekdError(f"gate data: {self.ref.num_impostor} impostor pairs cannot measure FAR "
                              f"{min(spec.far, FAR_GUARD[0]):g}; give more gate images")

    def __call__(self, emb: np.ndarray) -> dict:
        ps = scores(emb, self.data, [self.guard_threshold])
        drop = paired_tar_drop(self.ref, ps, self.spec.far, self.bootstrap)
        far = far_at_threshold(ps, self.guard_threshold)
        upper = drop["drop_pt_upper95"] if drop["drop_pt_upper95"] is not None else float("inf")
        return {"drop_pt": drop["drop_pt"], "drop_pt_ci95": drop["drop_pt_ci95"], "drop_pt_upper95": upper,
                "far_at_fp32_threshold": far, "passed": bool(upper <= self.spec.max_drop_pt and far <= FAR_GUARD[1]),
                "scores": ps}


def sensitivity(q: Int8Quantizer, qdq_path: Path, faces: int = SENSITIVITY_FACES) -> list[dict]:
    """Quantized layers, most sensitive first, by the noise each adds itself (its input and weight quantization).

    SQNR (float vs quantized model on the same faces) is measured at the tensor a layer reads and at the one it
    writes; the relative noise powers subtract (noise arriving from upstream passes through, roughly in proportion),
    leaving the layer's own as an SQNR in dB: lowest = noisiest. Both tensors keep their names in the Q/DQ file
    (only weighted-op inputs get Q/DQ), so they are matched by name; onnxruntime's create_activation_matching pairs
    only Q/DQ'd tensors, which misses every conv output under this placement."""
    import tempfile

    from onnxruntime.quantization.qdq_loss_debug import (collect_activations,
                                                         compute_signal_to_quantization_noice_ratio,
                                                         modify_model_output_intermediate_tensors)

    from edgekd.export.int8 import CalibReader

    with tempfile.TemporaryDirectory(prefix="edgekd-sens-") as tmp:
        aug_f, aug_q = Path(tmp) / "f.onnx", Path(tmp) / "q.onnx"
        modify_model_output_intermediate_tensors(q.fp32, aug_f)
        modify_model_output_intermediate_tensors(qdq_path, aug_q)
        acts_f = collect_activations(str(aug_f), CalibReader(q.calib, q.input_name, limit=faces))
        acts_q = collect_activations(str(aug_q), CalibReader(q.calib, q.input_name, limit=faces))

    quantizable = set(q.quantizable_nodes()) - set(q.default_float)
    nodes = [n for n in q.model.graph.node if n.name in quantizable]
    # one SQNR per tensor: a layer's output is usually the next layer's input
    sqnr = {t: float(compute_signal_to_quantization_noice_ratio(acts_f[t], acts_q[t]))
            for t in {t for n in nodes for t in (n.input[0], n.output[0])} if t in acts_f and t in acts_q}
    ranked = []
    for n in nodes:
        if (s_out := sqnr.get(n.output[0])) is None:
            continue
        s_in = sqnr.get(n.input[0])
        noise_in = 0.0 if s_in is None else 10 ** (-s_in / 10)
        own = max(10 ** (-s_out / 10) - noise_in, 1e-12)
        ranked.append({"node": n.name, "op": n.op_type, "sqnr_in_db": s_in, "sqnr_out_db": s_out,
                       "added_noise_sqnr_db": float(-10 * np.log10(own))})
    return sorted(ranked, key=lambda r: r["added_noise_sqnr_db"])


def _summary(v: dict) -> dict:
    return {k: v[k] for k in ("drop_pt", "drop_pt_ci95", "drop_pt_upper95", "far_at_fp32_threshold", "passed")}


def max_float_layers(q: Int8Quantizer) -> int:
    """The most layers a search may keep in float beyond the defaults (MAX_FLOAT_FRACTION of the weighted layers)."""
    return int(MAX_FLOAT_FRACTION * len(q.quantizable_nodes()))


def _rank_key(v: dict):
    return not v["passed"], v["drop_pt_upper95"], v["far_at_fp32_threshold"]


def fewest_float_layers(attempt, names: list[str], best: dict) -> dict:
    """Keep the first k of `names` (most sensitive first) in float, k = 1, 2, 4, ... until `attempt(layers)` passes,
    then bisect to the fewest that pass. Returns that trial, else the best of `best` and those tried."""
    lo, hi, k, passing = 0, None, 1, None
    while k <= len(names):
        v = attempt(names[:k])
        best = min(best, v, key=_rank_key)
        if v["passed"]:
            hi, passing = k, v
            break
        lo, k = k, (k * 2 if k * 2 <= len(names) or k == len(names) else len(names))
        if lo == len(names):
            break
    while passing is not None and hi - lo > 1:
        mid = (lo + hi) // 2
        v = attempt(names[:mid])
        if v["passed"]:
            hi, passing = mid, v
        else:
            lo = mid
    return passing if passing is not None else best


def check_calib_size(calib, limit=None) -> None:
    n = min(limit or calib.count, calib.count)
    if n < MIN_CALIB:
        raise EdgekdError(f"{calib.root}: {n} calibration faces is too few for the INT8 gate "
                          f"(needs at least {MIN_CALIB}; make a larger set with `edgekd calib make --n 512`)")


def run_gate(q: Int8Quantizer, fp32_emb: np.ndarray, data: GateData, spec: GateSpec, dst: Path,
             methods=METHODS, log=print, threads: int | None = None) -> tuple[dict, np.ndarray]:
    """Search for the INT8 model passing the gate; write it to `dst`. Returns (report, its gate embeddings)."""
    check_calib_size(q.calib, q.limit)
    judge = Judge(fp32_emb, data, spec)
    trials = []
    tmp = q.tmp / "candidate.onnx"

    def attempt(method: str, float_layers: list[str]) -> dict:
        q.write(tmp, method, float_layers)
        emb = embed(tmp, data, threads)
        v = judge(emb)
        v.update(method=method, float_layers=list(float_layers), emb=emb)
        trials.append({"method": method, "num_float_layers": len(float_layers), **_summary(v)})
        log(f"gate {spec}: {method}, {len(float_layers)} extra float layers: TAR drop {v['drop_pt']:+.3f} pt "
            f"(95% CI {v['drop_pt_ci95'][0]:+.3f} .. {v['drop_pt_ci95'][1]:+.3f}, one-sided upper 95% "
            f"{v['drop_pt_upper95']:+.3f}), FAR at FP32 1e-4 threshold "
            f"{v['far_at_fp32_threshold']:.2e} -> {'PASS' if v['passed'] else 'fail'}")
        return v

    by_method = [attempt(m, []) for m in methods]
    best = min(by_method, key=_rank_key)
    ranking = []
    if not best["passed"]:
        method = best["method"]
        q.write(tmp, method, [])
        ranking = sensitivity(q, tmp)
        names = [r["node"] for r in ranking][: max_float_layers(q)]
        log(f"gate: layer sensitivity ({method}), most sensitive first: "
            + ", ".join(f"{r['node']} ({r['added_noise_sqnr_db']:.1f} dB)" for r in ranking[:5]) + " ...")
        best = fewest_float_layers(lambda layers: attempt(method, layers), names, best)
    report = {"spec": str(spec), "far_guard": {"fp32_threshold_far": FAR_GUARD[0], "max_far": FAR_GUARD[1],
                                               "fp32_threshold": judge.guard_threshold},
              "data": data.describe(), "trials": trials, "sensitivity": ranking[:20],
              "method": best["method"], "float_layers": best["float_layers"], "passed": best["passed"],
              "before": next(t for t in trials if t["method"] == best["method"] and t["num_float_layers"] == 0),
              "after": _summary(best)}
    if not best["passed"]:
        raise GateNotMet(spec, report, best)
    q.write(dst, best["method"], best["float_layers"], extra_meta={"int8_gate": str(spec)})
    return report, best["emb"]


def prepare(int8_gate: str | None, gate_data, gate_folds, calib_set, preprocess, gate_limit: int | None,
            calib_limit: int | None = None):
    """Validate the gate options and load the gate images before any artifact is written (bad input fails first)."""
    from edgekd.export.thresholds import load_gate_data

    spec = parse_spec(int8_gate) if int8_gate else None
    if spec is not None and gate_data is None:
        raise EdgekdError("--int8-gate needs --gate-data (images of identities you do not report on)")
    if spec is not None and calib_set is None:
        raise EdgekdError("--int8-gate needs --calib calib/NAME (make one with `edgekd calib make`)")
    if spec is not None:
        check_calib_size(calib_set, calib_limit)
    data = load_gate_data(gate_data, preprocess, gate_folds, limit=gate_limit) if gate_data else None
    return spec, data


def int8_stage(out: Path, artifacts: dict, q: Int8Quantizer | None, spec: GateSpec | None, data: GateData | None,
               log=print) -> dict | None:
    """After the plain FP16/INT8 files: the gated Q/DQ file (with --int8-gate), the ONNX Runtime CPU file (with
    --calib), and every artifact's own thresholds (with --gate-data). Adds to `artifacts`; returns the gate report."""
    from edgekd.export.thresholds import ship_thresholds

    fp32_emb = embed(out, data) if data is not None else None
    report, embs, float_layers, method = None, {"fp32": fp32_emb}, [], DEFAULT_METHOD
    if q is not None:
        if spec is not None:
            gated = Variant("int8", GATED)
            dst = onnx_path(out, gated)
            report, embs[gated.tag] = run_gate(q, fp32_emb, data, spec, dst, log=log)
            artifacts[gated.tag] = {**q.write_record(dst), "gate": {k: report[k] for k in
                                                                       ("spec", "method", "float_layers",
                                                                        "before", "after")}}
            float_layers, method = report["float_layers"], report["method"]
            log(f"{dst}: gate {spec} passed with {method}, {len(float_layers)} extra float layers")
        cpu = Variant("int8", CPU)
        dst = onnx_path(out, cpu)
        judge = Judge(fp32_emb, data, spec or GateSpec("tar", 1e-4, 0.3)) if data is not None else None
        form, cpu_layers, choice, embs[cpu.tag] = choose_cpu_form(q, out, method, float_layers, judge, log)
        artifacts[cpu.tag] = {**q.write(dst, method, cpu_layers, form,
                                           extra_meta={"target": "onnxruntime-cpu-x86"}), "form_choice": choice}
        log(f"{dst}: ONNX Runtime CPU INT8 ({form}, {method}, {len(cpu_layers)} extra float layers)")
    if data is not None:
        shipped = ship_thresholds({k: Path(a["path"]) for k, a in artifacts.items()}, data, embs, log)
        for k, t in shipped.items():
            artifacts[k]["thresholds"] = t
    return report


def cpu_latency_ratios(paths: dict[str, Path], ref: Path, input_shape, threads: int = 2, rounds: int = 3,
                       batch: int = 32) -> dict[str, float]:
    """Median latency of each file / the reference's, ONNX Runtime CPU, interleaved rounds (load hits all alike)."""
    import statistics
    import time

    from edgekd.runtime.onnx_session import session_from_onnx

    def session(p):
        s = session_from_onnx(p, threads=threads)
        return lambda x: s.run(None, {s.get_inputs()[0].name: x})

    runs = {"ref": session(ref), **{k: session(p) for k, p in paths.items()}}
    x = np.random.default_rng(0).normal(size=(batch, *input_shape)).astype(np.float32)
    times = {k: [] for k in runs}
    for f in runs.values():
        f(x)
    for r in range(rounds):
        for k in (list(runs) if r % 2 == 0 else list(reversed(runs))):
            t = time.perf_counter()
            runs[k](x)
            times[k].append(time.perf_counter() - t)
    base = statistics.median(times["ref"])
    return {k: statistics.median(v) / base for k, v in times.items() if k != "ref"}


def choose_cpu_form(q: Int8Quantizer, fp32: Path, method: str, float_layers, judge: Judge | None,
                    log=print) -> tuple[str, list[str], dict, np.ndarray | None]:
    """The fastest of int8.CPU_FORMS on this CPU that passes the gate judged as it runs (fused ORT kernels); without
    gate data: int8.CPU_FORM (no accuracy check possible). Returns (form, float layers, record, its gate embeddings).

    The CPU forms quantize every activation between ops (what ORT's integer kernels need), so a method that passed
    as the TensorRT Q/DQ file (weighted-op inputs only) can fail here: then the fastest form keeps its own noisiest
    layers in float (ranked on the Q/DQ U8S8 file, which keeps tensor names) until it passes. One form only: each
    trial embeds the whole gate set, and a slower form with more float layers gains little over FP32."""
    from edgekd.export import graph
    from edgekd.export.int8 import CPU_FORM, CPU_FORMS

    float_layers = list(float_layers)
    if judge is None:
        return CPU_FORM, float_layers, {"rule": "no gate data: default form, accuracy not checked",
                                        "candidates": {}}, None
    _, dims = graph.input_spec(graph.load(fp32))

    def attempt(form: str, layers: list[str]) -> dict:
        path = q.tmp / f"cpu-{form}-{len(layers)}.onnx"
        q.write(path, method, layers, form)
        emb = embed(path, judge.data)
        v = judge(emb)
        v.update(form=form, float_layers=layers, path=path, emb=emb)
        return v

    cands = {form: attempt(form, float_layers) for form in CPU_FORMS}
    ratios = cpu_latency_ratios({f: v["path"] for f, v in cands.items()}, fp32, dims[1:])
    for form, v in cands.items():
        log(f"CPU form {form}: {1 / ratios[form]:.2f}x FP32 speed at batch 32, TAR drop {v['drop_pt']:+.3f} pt "
            f"(upper 95% {v['drop_pt_upper95']:+.3f}) -> {'PASS' if v['passed'] else 'fail'}")
    record = {"candidates": {f: {"latency_ratio_to_fp32_b32": ratios[f], **_summary(v)} for f, v in cands.items()}}
    passing = [f for f in cands if cands[f]["passed"]]
    if passing:
        chosen = cands[min(passing, key=lambda f: ratios[f])]
        record["rule"] = "fastest form passing the gate (fused ORT kernels, this CPU)"
    else:
        q.write(q.tmp / "cpu-ranked.onnx", method, float_layers, "qdq-u8s8")
        ranking = [r["node"] for r in sensitivity(q, q.tmp / "cpu-ranked.onnx") if r["node"] not in float_layers]
        names = ranking[: max(0, max_float_layers(q) - len(float_layers))]
        form, trials = min(cands, key=lambda f: ratios[f]), []

        def trial(extra):
            v = attempt(form, [*float_layers, *extra])
            log(f"CPU form {form}, {len(extra)} more float layers: TAR drop {v['drop_pt']:+.3f} pt (upper 95% "
                f"{v['drop_pt_upper95']:+.3f}) -> {'PASS' if v['passed'] else 'fail'}")
            trials.append({"num_float_layers": len(v["float_layers"]), **_summary(v)})
            return v

        chosen = fewest_float_layers(trial, names, cands[form])
        record["search"] = {"form": form, "trials": trials}
        if chosen["passed"]:
            ratio = cpu_latency_ratios({form: chosen["path"]}, fp32, dims[1:])[form]
            record.update(rule="no form passed with the gated float layers: the fastest form, with the fewest of its "
                               "own noisiest layers in float that pass", latency_ratio_to_fp32_b32=ratio)
            log(f"CPU form {form} passes with {len(chosen['float_layers']) - len(float_layers)} more float layers: "
                f"{1 / ratio:.2f}x FP32 speed at batch 32")
        else:
            chosen = min([*cands.values(), chosen], key=_rank_key)
            record["rule"] = "no form passed the gate: the most accurate one"
            log(f"WARNING: no CPU INT8 form passed {judge.spec}; writing the most accurate ({chosen['form']})")
    record["chosen"] = {"form": chosen["form"], "float_layers": chosen["float_layers"], **_summary(chosen)}
    return chosen["form"], chosen["float_layers"], record, chosen["emb"]
