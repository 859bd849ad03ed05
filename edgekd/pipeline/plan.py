"""The stage plan of `edgekd pipeline`: which stages run, on which inputs, in which order.

data -> teacher (shared pretrained MobileFaceNet, else trained briefly) -> per student: calibration set, then per
method (vanilla, soft KD, adversarial KD) training and export (ONNX FP32/FP16/INT8) -> TensorRT engines where
tensorrt imports -> eval of every deployed artifact -> bench -> report.

Each stage body is one call of the public function a user's script would make (edgekd.data.plan.prepare_data,
run_training / run_distillation, make_calib, export_model, build_from_onnx, run_eval over open_artifact,
run_bench, build_report); artifact names come from edgekd.artifacts, eval JSON is written by run_eval only. The
plan itself decides inputs and result paths; stages refer to each other as objects, never by parsing names.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from pathlib import Path

from edgekd.artifacts import Variant, engine_path, onnx_path
from edgekd.data.plan import data_plan, load_val, prepare_data
from edgekd.errors import EdgekdError
from edgekd.export import DEFAULT_METHOD
from edgekd.paths import shared_path
from edgekd.pipeline.settings import PipelineConfig
from edgekd.pipeline.stages import Stage
from edgekd.runtime.tensorrt import tensorrt_installed

PRETRAINED_TEACHER = ("weights", "mobilefacenet_ms1m_foamliu", "mobilefacenet.pt")
INT8 = Variant("int8", DEFAULT_METHOD)  # the INT8 artifact the pipeline deploys and evaluates


def resolve_threads(threads: int | str) -> int:
    """auto: every available core, but 1 when the machine is already busy (load >= cores), because OpenMP threads
    spin-waiting against other jobs made a 2-thread training step ~3x slower than 1 thread on the shared CPU."""
    import os

    if threads != "auto":
        return int(threads)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 1 if os.getloadavg()[0] >= cores else cores


def method_stem(method: str) -> str:
    """"soft:1,adv:0.1" -> "soft1+adv0.1": a method spec as a file-name part."""
    return method.replace(":", "").replace(",", "+")


# ---- stage bodies: one public call each ------------------------------------------------------------------------
def training_config(cfg: PipelineConfig, model: str, model_kwargs: dict, data: str, out: Path, steps: int,
                    resume: bool):
    """cfg.train (TrainConfig overrides) for one run of the plan."""
    return dataclasses.replace(cfg.train, model=model, model_kwargs=dict(model_kwargs), data=data, out=str(out),
                               steps=steps, device=cfg.device, val=[], resume=resume, log_every=max(1, steps // 10),
                               progress=True)


def train_stage(cfg: PipelineConfig, student: dict, method: str, data: str, teacher: dict, stage: Stage,
                cache_dir: Path) -> dict:
    tcfg = training_config(cfg, student["model"], student.get("model_kwargs", {}), data, stage.work_dir,
                           cfg.train.steps, stage.resume)
    if method == "vanilla":
        from edgekd.train import run_training

        summary = run_training(tcfg, meta={"method": "vanilla"})
    else:
        from edgekd.distill import run_distillation

        # Teacher embeddings / fitted head are content-keyed: one cache serves every student and method.
        summary = run_distillation(tcfg, teacher=teacher["weights"], methods=method,
                                   options=list(cfg.method_options.get(method, [])), cache_dir=str(cache_dir))
    ckpt = Path(summary["checkpoint"])
    return {"outputs": [ckpt, stage.work_dir / "summary.json"], "checkpoint": str(ckpt),
            "summary": str(stage.work_dir / "summary.json"), "img_per_s": summary.get("img_per_s"),
            "converged": summary.get("converged"),
            "note": f"{summary.get('steps')} steps, {summary.get('img_per_s') or 0:.1f} img/s"
                    + ("" if summary.get("converged", True) else f"; {summary.get('convergence_note')}")}


def teacher_weights(cfg: PipelineConfig) -> Path | None:
    """The teacher's weights file, or None when the plan trains one."""
    w = cfg.teacher.weights
    if w == "auto":
        return shared_path(*PRETRAINED_TEACHER)
    if w:
        if not Path(w).is_file():
            raise EdgekdError(f"teacher.weights {w}: no such file")
        return Path(w)
    return None


def teacher_stage(cfg: PipelineConfig, stage: Stage, data: dict) -> dict:
    t = cfg.teacher
    weights = teacher_weights(cfg)
    if weights is not None:
        if t.weights == "auto":
            name = PRETRAINED_TEACHER[1]
        else:
            from edgekd.models import load_model

            name = load_model(weights)[1].name
        return {"outputs": [weights], "weights": str(weights), "model": name, "trained": False,
                "note": f"pretrained {name} ({weights})"}
    from edgekd.train import run_training

    tcfg = training_config(cfg, t.model, t.model_kwargs, data["train"], stage.work_dir, t.train_steps, stage.resume)
    summary = run_training(tcfg, meta={"method": "teacher"})
    return {"outputs": [Path(summary["checkpoint"])], "weights": summary["checkpoint"], "model": t.model,
            "trained": True, "note": f"no pretrained teacher: trained {t.model} for {t.train_steps} steps"}


def calib_stage(cfg: PipelineConfig, student: dict, data: dict, stage: Stage) -> dict:
    from edgekd.export.calib import make_calib
    from edgekd.models.registry import model_preprocess

    root = stage.work_dir / "set"
    manifest = make_calib(data["train"], root, n=cfg.export.calib_images, seed=cfg.train.seed,
                          preprocess=model_preprocess(student["model"], **student.get("model_kwargs", {})),
                          model=student["model"], overwrite=True, progress=True)
    return {"outputs": [root / "manifest.json"] + [root / s["file"] for s in manifest["shards"]],
            "calib": str(root), "note": f"{manifest['count']} images, {manifest['identities']} identities"}


def export_stage(cfg: PipelineConfig, checkpoint: str, onnx: Path, method: str, calib: str) -> dict:
    from edgekd.export.run import export_model

    precisions = cfg.export.precisions
    report = export_model(weights=checkpoint, out=onnx, opset=cfg.export.opset, fp16="fp16" in precisions,
                          calib=calib if "int8" in precisions else None, calib_methods=(INT8.form,),
                          method=method, log=lambda *a: None)
    artifacts = {p: str(onnx_path(onnx, INT8 if p == "int8" else p)) for p in precisions}
    parity = report["parity"]
    note = f"fp32 parity min cos {min(parity['min_cosine'], parity['batch1']['min_cosine']):.6f}"
    if report["calib"]:
        note += f"; int8 calibrated on {report['artifacts'][INT8.tag]['calib_count']} images"
    return {"outputs": [Path(a) for a in artifacts.values()] + [Path(report["report_path"])],
            "artifacts": artifacts, "note": note}


def tensorrt_stage(artifacts: dict[str, str], calib: str, engines_dir: Path) -> dict:
    """One engine per exported precision: FP32 from the FP32 graph, FP16 / INT8 from their typed ONNX (INT8 from
    its Q/DQ file), whichever API the installed TensorRT has."""
    from edgekd.export.run import build_from_onnx

    engines = {}
    for p, onnx in artifacts.items():
        build_from_onnx(artifacts["fp32"], p, typed_onnx=onnx if p != "fp32" else None,
                        calib=calib if p == "int8" else None, engines_dir=engines_dir, log=lambda *a: None)
        engines[p] = str(engine_path(artifacts["fp32"], p, engines_dir))
    return {"outputs": [Path(e) for e in engines.values()], "engines": engines,
            "note": f"{len(engines)} engines ({', '.join(engines)})"}


def eval_stage(cfg: PipelineConfig, artifact: str, label: dict, val: dict, out_json: Path,
               reference: str | None = None, extra: dict | None = None) -> dict:
    """Verification of one artifact on the held-out pairs: open_artifact + run_eval (which writes the JSON)."""
    from edgekd.eval.run import run_eval
    from edgekd.runtime import artifact_kind, open_artifact

    threads = resolve_threads(cfg.threads)
    device = cfg.device if artifact_kind(artifact) == "checkpoint" else cfg.runtime_device
    vset = load_val(val)
    with contextlib.ExitStack() as stack:
        rt = stack.enter_context(open_artifact(artifact, device=device, threads=threads))
        ref = stack.enter_context(open_artifact(reference, device=cfg.runtime_device, threads=threads)) \
            if reference else None
        res = run_eval(rt, vset, reference=ref, out_json=out_json, flip=cfg.eval.flip,
                       batch_size=cfg.eval.batch_size, label=label, extra={"dataset": val["kind"], **(extra or {})})
    note = f"acc {100 * res['accuracy_mean']:.2f} ± {100 * res['accuracy_std']:.2f} % on {res['num_pairs']} pairs"
    if res.get("reference"):
        note += f", cos vs fp32 min {res['reference']['cosine_min']:.4f}"
    return {"outputs": [out_json], "accuracy_mean": res["accuracy_mean"], "note": note}


def bench_stage(cfg: PipelineConfig, artifact: str, label: dict, out_json: Path) -> dict:
    """run_bench in a fresh process: the peak RSS and the timings are the deployed runtime's, not the pipeline's."""
    from edgekd.bench import run_bench_isolated
    from edgekd.io import write_json_atomic
    from edgekd.runtime import artifact_kind

    b = cfg.bench
    engine = artifact_kind(artifact) == "engine"
    where = {"engine": artifact} if engine else {"onnx": artifact, "device": cfg.runtime_device}
    r = run_bench_isolated(dict(**where, batch_sizes=list(b.batch_sizes), warmup=b.warmup, iterations=b.iterations,
                                min_time_s=b.min_time_s, max_time_s=b.max_time_s, progress=True,
                                runtime_kw={"threads": resolve_threads(cfg.threads)}
                                if cfg.runtime_device == "cpu" and not engine else None))
    r["label"] = {**r["label"], **{k: v for k, v in label.items() if v is not None}}
    write_json_atomic(out_json, r)
    first = r["results"][0]
    return {"outputs": [out_json], "note": f"batch {first['batch']}: {first['latency_ms']['mean']:.2f} ± "
                                           f"{first['latency_ms']['std']:.2f} ms"}


def report_stage(cfg: PipelineConfig, results: Path, out: Path) -> dict:
    from edgekd.report import build_report

    summary = build_report(results, out, title=f"edgekd pipeline: {cfg.name}")
    c = summary["counts"]
    return {"outputs": [Path(p) for p in summary["files"].values()], "files": summary["files"],
            "note": f"{c['accuracy_entries']} accuracy figures, {c['bench_rows']} latency rows, Fig 1 "
                    f"{c['fig1_points']} points"}


# ---- the plan ---------------------------------------------------------------------------------------------------
def _estimate_train(cfg: PipelineConfig, steps: int, method: str) -> float:
    factor = {"vanilla": 1.0, "soft": 1.4, "adv": 1.8}.get(method.split(",")[0].split(":")[0], 1.6)
    return steps * cfg.train.batch_size / 30.0 * factor


@dataclasses.dataclass(frozen=True)
class Deployed:
    """One artifact the plan evaluates and benchmarks: `source` produced it (an export or a TensorRT stage, whose
    result maps precision -> file under "artifacts" or "engines"); `calib` is its student's calibration stage."""

    name: str  # student_method: the stem of its result files
    model: str
    method: str
    precision: str
    source: Stage
    calib: Stage
    runtime: str = "onnxruntime"  # or "tensorrt"

    @property
    def label(self) -> str:
        """The variant as stage and result-file names spell it: "fp16", or "fp16-tensorrt" for an engine."""
        return self.precision if self.runtime == "onnxruntime" else f"{self.precision}-{self.runtime}"

    def path(self, precision: str | None = None) -> str:
        key = "artifacts" if self.runtime == "onnxruntime" else "engines"
        return self.source.result[key][precision or self.precision]


def _data_stage(cfg: PipelineConfig, plan: dict, out: Path) -> Stage:
    return Stage("data", {"plan": {k: v for k, v in plan.items() if k != "input_files"},
                          "data": dataclasses.asdict(cfg.data)},
                 lambda s: prepare_data(cfg.data, plan, out), input_files=plan["input_files"], estimate_s=5)


def _teacher_stages(cfg: PipelineConfig, data: Stage, res: Path) -> list[Stage]:
    weights = teacher_weights(cfg)
    key = {"teacher": dataclasses.asdict(cfg.teacher), "weights": str(weights) if weights else None}
    if weights is None:
        key.update(train=dataclasses.asdict(cfg.train), device=cfg.device)
    teacher = Stage("teacher", key, lambda s: teacher_stage(cfg, s, data.result), after=[data.name],
                    input_files=[weights] if weights else [],
                    estimate_s=1 if weights else _estimate_train(cfg, cfg.teacher.train_steps, "vanilla"),
                    work_dir=None if weights else res / "teacher")

    def evaluate(s: Stage) -> dict:
        t = teacher.result
        return eval_stage(cfg, t["weights"], {"model": t["model"], "method": "teacher", "precision": "fp32",
                                              "artifact": t["weights"]},
                          data.result["val"], res / "eval" / "teacher.json", extra={"teacher_trained": t["trained"]})

    return [teacher, Stage("eval/teacher", {"eval": dataclasses.asdict(cfg.eval), "device": cfg.device}, evaluate,
                           after=[data.name, teacher.name], estimate_s=40)]


def _student_stages(cfg: PipelineConfig, student: dict, data: Stage, teacher: Stage, res: Path,
                    art: Path) -> tuple[list[Stage], list[Deployed]]:
    """Calibration set, then per method: training and export; the exported files are what the plan deploys."""
    sname = student.get("name") or student["model"]
    calib = Stage(f"calib/{sname}", {"student": student, "n": cfg.export.calib_images, "seed": cfg.train.seed},
                  lambda s: calib_stage(cfg, student, data.result, s), after=[data.name], estimate_s=5,
                  work_dir=art / "calib" / sname)
    stages, deployed = [calib], []
    for method in cfg.methods:
        mname = method_stem(method)
        stem = f"{sname}_{mname}"
        train = Stage(f"train/{sname}/{mname}",
                      {"student": student, "method": method, "options": cfg.method_options.get(method),
                       "train": dataclasses.asdict(cfg.train), "device": cfg.device},
                      functools.partial(_train, cfg, student, method, data, teacher, art / "teacher_cache"),
                      after=[data.name] if method == "vanilla" else [data.name, teacher.name],
                      estimate_s=_estimate_train(cfg, cfg.train.steps, method), work_dir=res / "train" / stem)
        export = Stage(f"export/{sname}/{mname}", {"export": dataclasses.asdict(cfg.export), "method": mname},
                       functools.partial(_export, cfg, train, calib, onnx_path(art / stem), mname),
                       after=[train.name, calib.name], estimate_s=25)
        stages += [train, export]
        deployed += [Deployed(stem, student["model"], mname, p, export, calib) for p in cfg.export.precisions]
    return stages, deployed


def _train(cfg, student, method, data: Stage, teacher: Stage, cache_dir: Path, stage: Stage) -> dict:
    return train_stage(cfg, student, method, data.result["train"], teacher.result, stage, cache_dir)


def _export(cfg, train: Stage, calib: Stage, onnx: Path, method: str, stage: Stage) -> dict:
    return export_stage(cfg, train.result["checkpoint"], onnx, method, calib.result["calib"])


def _tensorrt_stages(cfg: PipelineConfig, deployed: list[Deployed], art: Path) -> tuple[list[Stage], list[Deployed]]:
    """One engine-building stage per exported model where tensorrt imports; else one stage saying why not."""
    if not (cfg.export.tensorrt == "auto" and tensorrt_installed()):
        why = ("export.tensorrt is off" if cfg.export.tensorrt == "off" else
               "the tensorrt Python package does not import here (no GPU / TensorRT on this machine)")
        return [Stage("tensorrt", {"skipped": why}, lambda s: {"outputs": [], "note": f"not built: {why}"},
                      estimate_s=0)], []
    builds: dict[str, Stage] = {}
    engines = []
    for d in deployed:
        if d.name not in builds:
            builds[d.name] = Stage(f"tensorrt/{d.name}", {"precisions": cfg.export.precisions},
                                   functools.partial(_build, d.source, d.calib, art),
                                   after=[d.source.name, d.calib.name], estimate_s=120)
        engines.append(dataclasses.replace(d, source=builds[d.name], runtime="tensorrt"))
    return list(builds.values()), engines


def _build(export: Stage, calib: Stage, engines_dir: Path, stage: Stage) -> dict:
    return tensorrt_stage(export.result["artifacts"], calib.result["calib"], engines_dir)


def _eval_stage(cfg: PipelineConfig, d: Deployed, data: Stage, res: Path) -> Stage:
    onnx = d.runtime == "onnxruntime"
    use_ref = onnx and d.precision in cfg.eval.reference

    def evaluate(s: Stage) -> dict:
        return eval_stage(cfg, d.path(), {"model": d.model, "method": d.method, "precision": d.precision,
                                          "artifact": d.path()}, data.result["val"],
                          res / "eval" / f"{d.name}.{d.label}.json", reference=d.path("fp32") if use_ref else None)

    key = {"eval": dataclasses.asdict(cfg.eval), "device": cfg.runtime_device, "reference": use_ref} if onnx \
        else {"eval": dataclasses.asdict(cfg.eval)}
    return Stage(f"eval/{d.name}/{d.label}", key, evaluate, after=[data.name, d.source.name],
                 estimate_s=(60 if use_ref else 35) if onnx else 15)


def _bench_stage(cfg: PipelineConfig, d: Deployed, res: Path) -> Stage:
    onnx = d.runtime == "onnxruntime"

    def bench(s: Stage) -> dict:
        return bench_stage(cfg, d.path(), {"model": d.model, "method": d.method, "precision": d.precision},
                           res / "bench" / f"{d.name}.{d.label}.json")

    key = {"bench": dataclasses.asdict(cfg.bench), "device": cfg.runtime_device} if onnx \
        else {"bench": dataclasses.asdict(cfg.bench)}
    return Stage(f"bench/{d.name}/{d.label}", key, bench, after=[d.source.name],
                 estimate_s=(4 + 3 * len(cfg.bench.batch_sizes)) if onnx else 10)


def build_stages(cfg: PipelineConfig, out: Path) -> list[Stage]:
    """data -> teacher -> per student: calibration, training, export -> engines -> eval and bench of every deployed
    artifact -> report."""
    res, art = out / "results", out / "artifacts"
    data = _data_stage(cfg, data_plan(cfg.data), out)
    stages = [data, *_teacher_stages(cfg, data, res)]
    teacher = stages[1]
    deployed: list[Deployed] = []
    for student in cfg.students:
        more, exported = _student_stages(cfg, student, data, teacher, res, art)
        stages += more
        deployed += exported
    builds, engines = _tensorrt_stages(cfg, deployed, art)
    stages += builds
    deployed += engines
    measured = [stages[2]] + [_eval_stage(cfg, d, data, res) for d in deployed] + \
        [_bench_stage(cfg, d, res) for d in deployed]
    stages += measured[1:]
    report = Stage("report", {"title": f"edgekd pipeline: {cfg.name}"},
                   lambda s: report_stage(cfg, res, out / "report"),
                   after=[m.name for m in measured] + [data.name], estimate_s=5)
    return stages + [report]
