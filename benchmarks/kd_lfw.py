"""Real-data KD experiment: students on LFW identities, vanilla ArcFace vs distillation methods.

Students (--student mbf or r18, 512-d, from scratch) train on the LFW identities of view-2 folds 1-5 (images aligned from raw_150,
identities with >= 2 images, at most --max-per-id each) for the same number of steps; all are verified on the
3,000 pairs of folds 6-10 (identity-disjoint), as is the teacher (pretrained MS1M MobileFaceNet, foamliu, 128-d).

    python benchmarks/kd_lfw.py [--steps N] [--student r18] [--methods vanilla,cosine]

Every stage is cached under --work (alignment, teacher embeddings/head, each run, and each evaluation keyed by the
sha256 of the evaluated checkpoint), so a rerun continues where it stopped and never reuses the evaluation of a
different checkpoint; results go to benchmarks/results/kd_lfw[_STUDENT].{json,md} after every method, with the
load average at start and end. `--markdown-only` rewrites the markdown from the results JSON.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from _common import ROOT, Record, machine_line

# method name -> (spec, options); weights chosen a priori (untuned, see the markdown notes)
METHODS = {
    "vanilla": (None, []),
    "soft": ("soft:1.0", ["soft.temperature=4"]),
    "adv": ("adv:0.1", ["adv.disc=mlp"]),
    "cosine": ("cosine:10", []),
    "sp": ("sp:100", []),
    "rkd": ("rkd:10", []),
}


def training_list(aligned: Path, pairs: Path, work: Path, max_per_id: int) -> Path:
    """label.txt of fold 1-5 identities with >= 2 aligned images, at most `max_per_id` each (sorted, deterministic):
    edgekd.data.plan.lfw_training_list, the list the pipeline trains on."""
    from edgekd.data.plan import lfw_training_list

    out = work / f"train_folds1-5_min2_max{max_per_id}.txt"
    lfw_training_list(pairs, Path(aligned).resolve(), out, folds=range(1, 6), min_images=2, max_images=max_per_id)
    return out


def aligned_dir(work_cache: Path) -> Path:
    """DATA's alignment of raw_150 (recreated if missing); else the shared aligned_112x112 images."""
    from edgekd.paths import shared_path

    out = work_cache / "lfw_raw150_aligned"
    if (out / "manifest.json").is_file():
        return out
    raw, marks = shared_path("lfw", "raw_150"), shared_path("lfw", "lfw_landmark.txt")
    if raw and marks:
        from edgekd.data import align_folder

        align_folder(raw, out, marks, scale=0.6, overwrite=True)
        return out
    print("raw_150 or landmarks missing: training on shared aligned_112x112 (fold 1-5 identities)")
    return shared_path("lfw", "aligned_112x112")


def reestimate_bn(model, preprocess, data, batches: int, batch_size: int) -> None:
    """BatchNorm statistics as a plain average over `batches` seeded training batches (torch's update_bn, the same
    step as `edgekd train --bn-recal`): after fast-moving steps the running averages no longer fit the weights."""
    import numpy as np
    import torch
    from torch.optim.swa_utils import update_bn

    idx = np.random.default_rng(0).permutation(len(data))[: batches * batch_size]
    update_bn((torch.from_numpy(preprocess(np.stack([data[int(i)][0] for i in b])))
               .contiguous(memory_format=torch.channels_last) for b in np.array_split(idx, batches)), model)
    model.eval()


def evaluate_weights(weights: Path, vset, flip: bool, batch: int, recal=None) -> dict:
    """evaluate() of a checkpoint; `recal` = (training data, batches) re-estimates BatchNorm statistics first."""
    import torch

    from edgekd.eval import evaluate
    from edgekd.models import load_model

    model, info = load_model(weights)
    model.to(memory_format=torch.channels_last)  # faster on CPU for the depthwise-heavy MobileFaceNets
    if recal:
        reestimate_bn(model, info.preprocess, recal[0], recal[1], 32)

    def embed(x):
        with torch.no_grad():
            return model(torch.from_numpy(x).contiguous(memory_format=torch.channels_last)).numpy()

    return evaluate(embed, vset, info.preprocess, batch_size=batch, flip=flip, progress=True)


def eval_path(ev: Path, weights: Path, flip: bool, bn_recal: int = 0) -> tuple[Path, str]:
    """Where the evaluation of this checkpoint file is cached: keyed by its sha256 (and the eval settings), so a
    retrained or replaced model.pt is evaluated afresh; returns (path, sha256)."""
    from edgekd.io import sha256_file

    sha = sha256_file(weights)
    return ev / f"{sha[:16]}_f6-10_{'flip' if flip else 'noflip'}{f'_bn{bn_recal}' if bn_recal else ''}.json", sha


def cached(path: Path, fn):
    from edgekd.io import read_json, write_json_atomic

    if path.is_file():
        return read_json(path)
    value = fn()
    write_json_atomic(path, value)
    return value


def write_results(results: dict, out_dir: Path) -> None:
    from edgekd.io import write_json_atomic, write_text_atomic

    a = results["args"]
    stem = "kd_lfw" if a["student"] == "mbf" else f"kd_lfw_{a['student']}"
    write_json_atomic(out_dir / f"{stem}.json", results)
    far = ["1e-01", "1e-02", "1e-03"]
    rows = ["| model | method | steps | train wall s | trainer's verdict | LFW acc (folds 6-10) | Δ acc vs vanilla, pt "
            "| AUC | EER | " + " | ".join(f"TAR@FAR={f}" for f in far) + " | acc, BN re-est. | AUC, BN re-est. |",
            "|" + "---|" * 14]

    def fmt(v):
        return f"{100 * v:.2f}" if v is not None else "n/a"

    missing = [m for m in a["methods"].split(",") if m not in results["students"]]
    t = results["teacher"]
    if t["eval"] is not None:
        e = t["eval"]
        rows.append(f"| teacher {t['model']} (128-d, MS1M) | pretrained | - | - | - | {fmt(e['accuracy_mean'])} "
                    f"± {fmt(e['accuracy_std'])} | - | {e['auc']:.4f} | {fmt(e['eer'])} | "
                    + " | ".join(fmt(e['tar_at_far'][f]) for f in far) + " | - | - |")
    vanilla = results["students"].get("vanilla")
    bn_shift = []
    for name, r in results["students"].items():
        e = r["eval"]
        delta = f"{100 * (e['accuracy_mean'] - vanilla['eval']['accuracy_mean']):+.2f}" if vanilla else "n/a"
        if r.get("eval_bn_reestimated"):
            bn_shift.append(abs(r["eval_bn_reestimated"]["accuracy_mean"] - e["accuracy_mean"]))
        rows.append(f"| {a['student']} (512-d, scratch) | {r['method']} | {r['steps']} | {r['wall_time_s']:.0f} | "
                    f"{r.get('convergence_note') or r['converged']} | {fmt(e['accuracy_mean'])} ± {fmt(e['accuracy_std'])} | "
                    f"{delta} | "
                    f"{e['auc']:.4f} | {fmt(e['eer'])} | "
                    + " | ".join(fmt(e['tar_at_far'][f]) for f in far)
                    + (f" | {fmt(b['accuracy_mean'])} ± {fmt(b['accuracy_std'])} | {b['auc']:.4f} |"
                       if (b := r.get("eval_bn_reestimated")) else " | n/a | n/a |"))
    md = [
        f"# KD on LFW: {a['student']} students, foamliu MS1M MobileFaceNet teacher",
        "",
        f"Command: `python benchmarks/kd_lfw.py --student {a['student']} --steps {a['steps']}"
        f" --batch-size {a['batch_size']}"
        f" --max-per-id {a['max_per_id']}`  ",
        machine_line(results["run"]) if "run" in results else
        f"Machine: {results['env']['machine']}, torch {results['env']['torch']}, {a['threads']} torch thread(s); the "
        "load average was not recorded (these results predate load recording).",
        "",
        f"Summed training wall time: {sum(r['wall_time_s'] for r in results['students'].values()):.0f} s (runs may be "
        f"spread over several nice'd processes sharing --work). {eval_times(results)}",
        "",
        f"Training: {results['train']['num_images']} images of {results['train']['num_classes']} LFW identities "
        f"(view-2 folds 1-5, >= 2 images, <= {a['max_per_id']} per identity), aligned from raw_150 "
        f"({results['train']['aligned']}); no flip augmentation; SGD lr {a['lr']} poly, batch {a['batch_size']}, "
        f"{a['steps']} steps ({results['train']['epochs']:.2f} epochs). "
        f"Verification: the {results['val']['num_pairs']} pairs of folds 6-10 ({results['val']['num_images']} images, "
        f"identity-disjoint from training), {'with' if a['eval_flip'] else 'without'} flip; accuracy ± std over the 5 folds (%).",
        "",
        *rows,
        "",
        "Method weights (added to ArcFace, chosen a priori, not tuned): "
        + ", ".join(f"{k}: `{v[0]}` {' '.join(v[1])}" for k, v in METHODS.items() if k != "vanilla" and v[0]) + ".",
        "Teacher head for soft KD: fitted on the cached teacher embeddings of the training images (backbone frozen).",
        f"Each student sees {a['steps'] * a['batch_size']} images ({results['train']['epochs']:.2f} epochs) from a "
        "random init: absolute accuracies are those of a briefly trained network on a tiny training set; it is a",
        "like-for-like comparison at one budget and one seed, not a KD result at convergence (fold std is the",
        "spread over the 5 verification folds, not over training seeds).",
        "Training wall times reflect the machine's load at the time, not the methods' cost.",
        *([f"Not finished (rerun the command: every stage resumes): {', '.join(missing)}."] if missing else []),
        "The trainer's verdict is the `convergence_note` its summary.json held when the run finished; runs from before "
        "the verdict was reworked said `converged` whenever the loss fell by >= 5 %, which does not mean converged.",
        "Accuracy uses insightface's protocol (squared distance of normalised embeddings, thresholds on a 0.01 grid):",
        "a student whose embeddings all point almost the same way scores exactly 50.00 ± 0.00 even when it ranks",
        "pairs better than chance; AUC, EER and TAR@FAR are threshold-free. Very short runs do that in eval mode",
        "because BatchNorm running averages lag fast-moving weights, hence the last",
        f"two columns: the same checkpoints after re-estimating BatchNorm statistics over {a['bn_recal']} training",
        "batches of 32 (torch update_bn, as `edgekd train --bn-recal`; weights unchanged, teacher untouched)"
        + (f"; largest accuracy change from it here: {100 * max(bn_shift):.2f} pt." if bn_shift else "."),
        "",
    ]
    write_text_atomic(out_dir / f"{stem}.md", "\n".join(md))


def eval_times(results: dict) -> str:
    """The measured duration of the student evaluations (from their eval JSONs), not a remembered range."""
    secs = [e["embeddings_seconds"] for r in results["students"].values()
            for e in (r["eval"], r.get("eval_bn_reestimated")) if e and e.get("embeddings_seconds")]
    if not secs:
        return ""
    return (f"Embedding the {results['val']['num_images']} verification images took {min(secs):.0f}–{max(secs):.0f} s "
            f"per evaluation ({len(secs)} evaluations; `embeddings_seconds` of the eval JSONs).")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", default="mbf", choices=["mbf", "r18"])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--max-per-id", type=int, default=10)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--threads", type=int, default=1, help="1 is fastest on a busy 2-core machine")
    ap.add_argument("--eval-flip", action="store_true")
    ap.add_argument("--skip-teacher", action="store_true", help="leave the teacher's evaluation to another process")
    ap.add_argument("--bn-recal", type=int, default=20, metavar="BATCHES",
                    help="also evaluate students after re-estimating BatchNorm statistics on this many training "
                         "batches (0: off)")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "kd_lfw",
                    help="cache of every stage (the aligned faces go beside it)")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--markdown-only", action="store_true", help="rewrite the markdown from the results JSON, run nothing")
    args = ap.parse_args()
    if args.markdown_only:
        from edgekd.io import read_json

        stem = "kd_lfw" if args.student == "mbf" else f"kd_lfw_{args.student}"
        write_results(read_json(args.results / f"{stem}.json"), args.results)
        return
    unknown = set(args.methods.split(",")) - set(METHODS)
    if unknown:
        ap.error(f"unknown method(s) {sorted(unknown)}; known: {', '.join(METHODS)}")

    import torch

    torch.set_num_threads(args.threads)
    rec = Record("kd_lfw")
    from edgekd.data import load_verification, open_dataset
    from edgekd.distill import run_distillation
    from edgekd.paths import shared_path
    from edgekd.train import TrainConfig, run_training

    t_start = time.perf_counter()
    pairs = shared_path("lfw", "pairs.txt")
    teacher_w = shared_path("weights", "mobilefacenet_ms1m_foamliu", "mobilefacenet.pt")
    if pairs is None or teacher_w is None:
        sys.exit("shared LFW data / teacher weights not found (set EDGEKD_SHARED_DATA)")
    tag = ("" if args.student == "mbf" else f"{args.student}_") + f"s{args.steps}_b{args.batch_size}_lr{args.lr:g}_max{args.max_per_id}"
    work = args.work / tag
    work.mkdir(parents=True, exist_ok=True)
    aligned = aligned_dir(args.work.parent)
    train_txt = training_list(aligned, pairs, work, args.max_per_id)
    data = open_dataset(train_txt)
    vset = load_verification(pairs).subset(range(5, 10))
    ev = args.work / "evals"

    results = {
        "kind": "benchmark", "name": "kd_lfw", "args": {**vars(args), "work": str(args.work), "results": str(args.results)},
        "env": {"machine": f"{platform.machine()} {os.cpu_count()} CPUs", "torch": torch.__version__},
        "train": {"data": str(train_txt), "aligned": str(aligned), "num_images": len(data),
                  "num_classes": data.num_classes, "epochs": args.steps * args.batch_size / len(data)},
        "val": {"data": f"{pairs} folds 6-10", "num_pairs": len(vset), "num_images": vset.num_images},
        "students": {},
    }
    print(f"train {len(data)} images / {data.num_classes} ids; val {len(vset)} pairs / {vset.num_images} images")

    rec.add_input("teacher", teacher_w)
    rec.add_input("pairs.txt", pairs)
    teacher_json, _ = eval_path(ev, teacher_w, args.eval_flip)

    def publish():
        """Results from everything finished on disk (several processes may share the work)."""
        from edgekd.io import read_json

        results["teacher"] = {"model": "mobilefacenet_ms1m_foamliu", "weights": str(teacher_w),
                              "eval": read_json(teacher_json) if teacher_json.is_file() else None}
        for name in METHODS:
            sj, mp = work / name / "summary.json", work / name / "model.pt"
            if not (sj.is_file() and mp.is_file()):
                continue
            ej, sha = eval_path(ev, mp, args.eval_flip)
            if ej.is_file():
                s, e = read_json(sj), read_json(ej)
                results["students"][name] = {k: s[k] for k in ("method", "steps", "wall_time_s", "img_per_s",
                                                               "converged", "convergence_note", "final_loss")}
                results["students"][name].update(weights=str(mp), weights_sha256=sha, eval=e)
                bj, _ = eval_path(ev, mp, args.eval_flip, args.bn_recal)
                results["students"][name]["eval_bn_reestimated"] = read_json(bj) if bj.is_file() else None
        results["wall_time_s"] = time.perf_counter() - t_start
        results["run"] = rec.finish({"torch": args.threads})
        write_results(results, args.results)

    if not args.skip_teacher:
        t = cached(teacher_json, lambda: evaluate_weights(teacher_w, vset, args.eval_flip, 64))
        print(f"teacher: {t['accuracy_mean']:.4f} ± {t['accuracy_std']:.4f}")
        publish()

    for name in args.methods.split(","):
        spec, opts = METHODS[name]
        out = work / name
        lock = work / f"{name}.lock"
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            print(f"{name}: {lock} exists (another process runs it; delete the file if none does)")
            continue
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        try:
            if not (out / "summary.json").is_file():
                cfg = TrainConfig(model=args.student, data=str(train_txt), out=str(out), steps=args.steps,
                                  batch_size=args.batch_size, lr=args.lr, flip=False, channels_last=True,
                                  log_every=5, ckpt_every=10, seed=0, device="cpu",
                                  resume=(out / "checkpoint.pt").is_file())
                if out.exists() and not cfg.resume:
                    shutil.rmtree(out)
                if spec is None:
                    run_training(cfg)
                else:
                    run_distillation(cfg, str(teacher_w), methods=spec, options=opts,
                                     cache_dir=str(args.work / "teacher_cache"))
            mp = out / "model.pt"
            e = cached(eval_path(ev, mp, args.eval_flip)[0], lambda: evaluate_weights(mp, vset, args.eval_flip, 64))
            if args.bn_recal:
                cached(eval_path(ev, mp, args.eval_flip, args.bn_recal)[0],
                       lambda: evaluate_weights(mp, vset, args.eval_flip, 64, (data, args.bn_recal)))
        finally:
            lock.unlink()
        print(f"{name}: {e['accuracy_mean']:.4f} ± {e['accuracy_std']:.4f}")
        publish()
    publish()


if __name__ == "__main__":
    main()
