"""The stage plan of `edgekd pipeline`: which stages run, on which inputs, in which order.

data -> teacher (shared pretrained MobileFaceNet, else trained briefly) -> per student: calibration set, then per
method (vanilla, soft KD, adversarial KD) training and export (ONNX FP32/FP16/INT8) -> TensorRT engines where
tensorrt imports -> eval of every deployed artifact -> bench -> report.

Each stage body is one call of the public function a user's script would make (edgekd.data.plan.prepare_data,
run_training / run_distillation, make_calib, export_model, build_from_onnx, run_eval over open_artifact,
run_bench, build_report); artifact names are export_model's (`stem.onnx`, `stem.fp16.onnx`,
`stem.int8-minmax.onnx`), eval JSON is written by run_eval only. The plan itself decides inputs and result paths.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

from edgekd.data.plan import data_plan, load_val, prepare_data
from edgekd.errors import EdgekdError
from edgekd.paths import shared_path
from edgekd.pipeline.settings import PipelineConfig
from edgekd.pipeline.stages import Stage
from edgekd.runtime.tensorrt import tensorrt_installed

PRETRAINED_TEACHER = ("weights", "mobilefacenet_ms1m_foamliu", "mobilefacenet.pt")
CALIB_METHOD = "minmax"  # the INT8 artifact the pipeline evaluates (export_model names it stem.int8-minmax.onnx)


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
    from edgekd.export.run import artifact_path, export_model

    precisions = cfg.export.precisions
    report = export_model(checkpoint, out=onnx, opset=cfg.export.opset, fp16="fp16" in precisions,
                          calib=calib if "int8" in precisions else None, calib_methods=(CALIB_METHOD,),
                          method=method, log=lambda *a: None)
    artifacts = {p: str(artifact_path(onnx, p, CALIB_METHOD)) for p in precisions}
    parity = report["parity"]
    note = f"fp32 parity min cos {min(parity['min_cosine'], parity['batch1']['min_cosine']):.6f}"
    if report["calib"]:
        note += f"; int8 calibrated on {report['artifacts'][f'int8-{CALIB_METHOD}']['calib_count']} images"
    return {"outputs": [Path(a) for a in artifacts.values()] + [Path(report["report_path"])],
            "artifacts": artifacts, "note": note}


def tensorrt_stage(artifacts: dict[str, str], calib: str, engines_dir: Path) -> dict:
    """One engine per exported precision: FP32 from the FP32 graph, FP16 / INT8 from their typed ONNX (strongly
    typed build) or the FP32 graph + calib set (builder flags), whichever the installed TensorRT supports."""
    from edgekd.export.run import build_from_onnx, engine_path

    engines = {}
    for p, onnx in artifacts.items():
        build_from_onnx(artifacts["fp32"], p, typed_onnx=onnx if p != "fp32" else None,
                        calib=calib if p == "int8" else None, engines_dir=engines_dir, log=lambda *a: None)
        engines[p] = str(engine_path(engines_dir / Path(artifacts["fp32"]).name, p))
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
    """One artifact the plan evaluates and benchmarks: `source_stage` produced it under `key` of its result."""

    name: str  # student_method, the result files' stem
    model: str
    method: str
    precision: str
    source_stage: str
    key: str  # "artifacts" (ONNX) or "engines" (TensorRT)
    suffix: str  # "" or "-tensorrt" (stage names), "" or ".tensorrt" (result files)


def build_stages(cfg: PipelineConfig, out: Path) -> list[Stage]:
    plan = data_plan(cfg.data)
    res, art = out / "results", out / "artifacts"
    by: dict[str, Stage] = {}

    def add(stage: Stage) -> None:
        by[stage.name] = stage

    def result(name: str) -> dict:  # a stage's result exists once it ran or was skipped
        return by[name].result

    add(Stage("data", {"plan": {k: v for k, v in plan.items() if k != "input_files"},
                       "data": dataclasses.asdict(cfg.data)},
              lambda s: prepare_data(cfg.data, plan, out), input_files=plan["input_files"], estimate_s=5))
    weights = teacher_weights(cfg)
    teacher_key = {"teacher": dataclasses.asdict(cfg.teacher), "weights": str(weights) if weights else None}
    if weights is None:
        teacher_key.update(train=dataclasses.asdict(cfg.train), device=cfg.device)
    add(Stage("teacher", teacher_key, lambda s: teacher_stage(cfg, s, result("data")), after=["data"],
              input_files=[weights] if weights else [],
              estimate_s=1 if weights else _estimate_train(cfg, cfg.teacher.train_steps, "vanilla"),
              work_dir=None if weights else res / "teacher"))
    add(Stage("eval/teacher", {"eval": dataclasses.asdict(cfg.eval), "device": cfg.device},
              lambda s: eval_stage(cfg, result("teacher")["weights"],
                                   {"model": result("teacher")["model"], "method": "teacher", "precision": "fp32",
                                    "artifact": result("teacher")["weights"]},
                                   result("data")["val"], res / "eval" / "teacher.json",
                                   extra={"teacher_trained": result("teacher")["trained"]}),
              after=["data", "teacher"], estimate_s=40))

    deployed: list[Deployed] = []
    for student in cfg.students:
        sname = student.get("name") or student["model"]
        calib = f"calib/{sname}"
        add(Stage(calib, {"student": student, "n": cfg.export.calib_images, "seed": cfg.train.seed},
                  lambda s, st=student: calib_stage(cfg, st, result("data"), s), after=["data"], estimate_s=5,
                  work_dir=art / "calib" / sname))
        for method in cfg.methods:
            mname = method_stem(method)
            train_stage_name, export_stage_name = f"train/{sname}/{mname}", f"export/{sname}/{mname}"
            add(Stage(train_stage_name, {"student": student, "method": method,
                                         "options": cfg.method_options.get(method),
                                         "train": dataclasses.asdict(cfg.train), "device": cfg.device},
                      lambda s, st=student, m=method: train_stage(cfg, st, m, result("data")["train"],
                                                                  result("teacher"), s, art / "teacher_cache"),
                      after=["data"] if method == "vanilla" else ["data", "teacher"],
                      estimate_s=_estimate_train(cfg, cfg.train.steps, method),
                      work_dir=res / "train" / f"{sname}_{mname}"))
            add(Stage(export_stage_name, {"export": dataclasses.asdict(cfg.export), "method": mname},
                      lambda s, t=train_stage_name, c=calib, stem=f"{sname}_{mname}", m=mname: export_stage(
                          cfg, result(t)["checkpoint"], art / f"{stem}.onnx", m, result(c)["calib"]),
                      after=[train_stage_name, calib], estimate_s=25))
            deployed += [Deployed(f"{sname}_{mname}", student["model"], mname, p, export_stage_name, "artifacts", "")
                         for p in cfg.export.precisions]

    if cfg.export.tensorrt == "auto" and tensorrt_installed():
        for d in [d for d in deployed if d.key == "artifacts"]:
            engine_stage_name = f"tensorrt/{d.name}"
            if engine_stage_name not in by:
                calib = f"calib/{d.source_stage.split('/')[1]}"
                add(Stage(engine_stage_name, {"precisions": cfg.export.precisions},
                          lambda s, e=d.source_stage, c=calib: tensorrt_stage(result(e)["artifacts"],
                                                                              result(c)["calib"], art),
                          after=[d.source_stage, calib], estimate_s=120))
            deployed.append(dataclasses.replace(d, source_stage=engine_stage_name, key="engines", suffix="-tensorrt"))
    else:
        why = ("export.tensorrt is off" if cfg.export.tensorrt == "off" else
               "the tensorrt Python package does not import here (no GPU / TensorRT on this machine)")
        add(Stage("tensorrt", {"skipped": why}, lambda s, why=why: {"outputs": [], "note": f"not built: {why}"},
                  estimate_s=0))

    def artifact(d: Deployed, precision: str | None = None) -> str:
        return result(d.source_stage)[d.key][precision or d.precision]

    for d in deployed:
        onnx = d.key == "artifacts"
        use_ref = onnx and d.precision in cfg.eval.reference
        add(Stage(f"eval/{d.name}/{d.precision}{d.suffix}",
                  {"eval": dataclasses.asdict(cfg.eval), "device": cfg.runtime_device, "reference": use_ref}
                  if onnx else {"eval": dataclasses.asdict(cfg.eval)},
                  lambda s, d=d, use_ref=use_ref: eval_stage(
                      cfg, artifact(d), {"model": d.model, "method": d.method, "precision": d.precision,
                                         "artifact": artifact(d)}, result("data")["val"],
                      res / "eval" / f"{d.name}.{d.precision}{d.suffix.replace('-', '.')}.json",
                      reference=artifact(d, "fp32") if use_ref else None),
                  after=["data", d.source_stage], estimate_s=(60 if use_ref else 35) if onnx else 15))
    for d in deployed:
        onnx = d.key == "artifacts"
        add(Stage(f"bench/{d.name}/{d.precision}{d.suffix}",
                  {"bench": dataclasses.asdict(cfg.bench), "device": cfg.runtime_device}
                  if onnx else {"bench": dataclasses.asdict(cfg.bench)},
                  lambda s, d=d: bench_stage(cfg, artifact(d), {"model": d.model, "method": d.method,
                                                                "precision": d.precision},
                                             res / "bench" / f"{d.name}.{d.precision}{d.suffix.replace('-', '.')}.json"),
                  after=[d.source_stage], estimate_s=(4 + 3 * len(cfg.bench.batch_sizes)) if onnx else 10))
    results = [n for n in by if n.startswith(("eval/", "bench/"))] + ["data"]
    add(Stage("report", {"title": f"edgekd pipeline: {cfg.name}"},
              lambda s: report_stage(cfg, res, out / "report"), after=results, estimate_s=5))
    return list(by.values())
