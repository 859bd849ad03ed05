"""Training-step throughput of edgekd's trainer versus a minimal plain-PyTorch loop (same model, margin loss, batch,
optimizer, clipping) on the same machine, as a ratio. Goal: >= 0.95x (the trainer adds no real overhead).

Measurements are interleaved in ABBA order (edgekd, plain, plain, edgekd, ...) and the ratio of medians is
reported, because the machine this runs on may be shared: load from other users hits both sides alike. On a
loaded CPU, one intra-op thread (the default here) keeps OpenMP barrier stalls from dominating the noise. Before
measuring, the script waits (at most --max-wait s) for the load average to drop below the core count, and records
the load at start and end.

    python benchmarks/train_throughput.py [--models mbf r18] [--batch 8] [--steps 1] [--repeats 10] [--threads 1]

Writes benchmarks/results/train_throughput.json and .md.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time

import torch

from _common import RESULTS, Record, machine_line, write_result
from edgekd.train import TrainConfig, Trainer


def plain_loop(model, head, lr: float, clip: float):
    """The reference: what anyone would write by hand for one ArcFace step."""
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=5e-4)

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = head(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        return loss.item()

    return step


def timed(step, x, y, n: int, device: torch.device) -> float:
    """Images per second over n steps."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        step(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n * x.shape[0] / (time.perf_counter() - t)


def measure(model_name: str, batch: int, steps: int, repeats: int, device: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(model=model_name, data=f"synthetic:{max(2, batch // 2)}x4", out=tmp, batch_size=batch,
                          steps=10**6, lr=0.01, device=device, progress=False)
        trainer = Trainer(cfg)
    trainer.model.train()
    trainer.objective.train()
    dev = trainer.device
    model, head = copy.deepcopy(trainer.model), copy.deepcopy(trainer.objective.head)
    plain = plain_loop(model, head, cfg.lr, cfg.grad_clip)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 112, 112, generator=g).to(dev)
    y = torch.randint(0, trainer.num_classes, (batch,), generator=g).to(dev)
    sides = {"edgekd": trainer.train_step, "plain": plain}
    for fn in sides.values():  # warm-up: allocator, oneDNN primitives
        timed(fn, x, y, 1, dev)
    runs = {k: [] for k in sides}
    for i in range(repeats):
        for k in ("edgekd", "plain") if i % 2 == 0 else ("plain", "edgekd"):
            runs[k].append(timed(sides[k], x, y, steps, dev))
    med = {k: statistics.median(v) for k, v in runs.items()}
    return {"model": model_name, "batch": batch, "steps_per_measurement": steps, "repeats": repeats,
            "img_per_s": runs, "median_img_per_s": med, "ratio": med["edgekd"] / med["plain"],
            "paired_ratios": [a / b for a, b in zip(runs["edgekd"], runs["plain"])]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["mbf", "r18"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=1, help="steps per measurement")
    ap.add_argument("--repeats", type=int, default=10, help="measurements per side")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-wait", type=float, default=600, help="seconds to wait for load < cores before measuring")
    ap.add_argument("--out", default=str(RESULTS))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rec = Record("train_throughput", max_wait_s=a.max_wait)
    rows = [measure(m, a.batch, a.steps, a.repeats, a.device) for m in a.models]
    device = a.device if a.device == "cpu" else torch.cuda.get_device_name()
    result = {"kind": "train_throughput", "device": device, "results": rows,
              "run": rec.finish({"torch": torch.get_num_threads()})}
    md = ["# Training-step throughput: edgekd Trainer vs a plain PyTorch loop", "",
          f"Command: `{result['run']['command']}`", "",
          f"Ratio = median edgekd img/s / median plain img/s over ABBA-interleaved measurements on {device} "
          "(1.0 = no overhead); paired ratios are those of each interleaved pair.", "",
          "| model | batch | ratio | paired ratios (min–max) | edgekd img/s (median) | plain img/s (median) |",
          "|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['model']} | {r['batch']} | {r['ratio']:.3f} | {min(r['paired_ratios']):.2f}–"
                  f"{max(r['paired_ratios']):.2f} | {r['median_img_per_s']['edgekd']:.2f} | "
                  f"{r['median_img_per_s']['plain']:.2f} |")
    md += ["", machine_line(result["run"])]
    write_result("train_throughput", result, "\n".join(md), a.out)
    print("\n".join(md))


if __name__ == "__main__":
    main()
