"""The training loop shared by `edgekd train` and `edgekd distill`: data order, AMP, clipping, schedule,
periodic verification, atomic checkpoints, exact resume, NaN stop and a convergence verdict.

Determinism: the data order of epoch e is a permutation seeded by (seed, e) cut into global batches, each rank
taking its slice; flips are drawn per (seed, epoch, image index) by TorchFaceDataset, not from worker RNG;
checkpoints carry all RNG states and the step, so a resumed run reproduces the uninterrupted one on CPU.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from edgekd.errors import EdgekdError
from edgekd.io import check_writable_dir, write_json_atomic, write_text_atomic
from edgekd.train import distributed
from edgekd.train.checkpoint import git_commit, load_checkpoint, rng_state, set_rng_state
from edgekd.train.config import TrainConfig
from edgekd.train.convergence import assess
from edgekd.train.objective import MarginObjective, Objective
from edgekd.train.schedule import lr_at

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # every config.AMP_MODES entry but "off"
ObjectiveArg = Objective | Callable[[nn.Module, int], Objective] | None


def epoch_batches(n: int, batch: int, world: int, rank: int, seed: int, epoch: int, start: int = 0) -> list[list[int]]:
    """This rank's index batches for steps start.. of `epoch`: global batch i of a permutation seeded by (seed, epoch)
    is split into `world` consecutive slices (the incomplete last global batch is dropped)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return [perm[(i * world + rank) * batch : (i * world + rank + 1) * batch].tolist()
            for i in range(start, n // (batch * world))]


class NonFiniteLoss(Exception):
    """Raised inside a step; the loop turns it into a one-line EdgekdError after keeping the last good checkpoint."""


def check_config(cfg: TrainConfig) -> None:
    """Option errors that need no data or model, reported before anything is loaded."""
    from edgekd.models.registry import resolve

    if not cfg.out:
        raise EdgekdError("no output folder given (--out runs/NAME)")
    check_writable_dir(cfg.out, "output run folder")
    if cfg.resume and not (Path(cfg.out) / "checkpoint.pt").is_file():
        raise EdgekdError(f"{Path(cfg.out) / 'checkpoint.pt'}: no checkpoint to resume from")
    if not cfg.data:
        raise EdgekdError("no training data given (--data DIR|train.rec|synthetic:IDSxPER)")
    resolve(cfg.model)  # unknown model: one line listing the known ones
    if cfg.steps is not None and cfg.epochs is not None:
        raise EdgekdError("give --steps or --epochs, not both")
    for name in ("steps", "epochs", "batch_size"):
        v = getattr(cfg, name)
        if v is not None and v <= 0:
            raise EdgekdError(f"--{name.replace('_', '-')} must be positive, got {v}")
    cfg.check_choices()
    if not 0.0 < cfg.sample_rate <= 1.0:
        raise EdgekdError(f"--sample-rate {cfg.sample_rate} (Partial FC) is outside (0, 1]")
    if cfg.lr <= 0 or cfg.warmup < 0 or cfg.grad_clip < 0 or cfg.log_every <= 0:
        raise EdgekdError("--lr and --log-every must be positive, --warmup and --grad-clip non-negative")


class Trainer:
    """Builds everything (all input checks happen here, before the first step), then `fit()` runs the loop."""

    def __init__(self, cfg: TrainConfig, objective: ObjectiveArg = None, meta: dict | None = None):
        from edgekd.data import open_dataset
        from edgekd.models import create_model

        check_config(cfg)
        self.cfg, self.out = cfg, Path(cfg.out)
        self.meta = {"kind": "train", "method": "vanilla", "teacher": None, **(meta or {})}
        self.ctx = distributed.setup(cfg.device)
        self.device = self.ctx.device
        if cfg.amp == "fp16" and self.device.type != "cuda":
            raise EdgekdError("--amp fp16 needs a CUDA device (use --amp bf16 or off on CPU)")
        self.ckpt_path, self.model_path = self.out / "checkpoint.pt", self.out / "model.pt"
        self.log_path, self.summary_path = self.out / "log.jsonl", self.out / "summary.json"
        self.created_out = not self.out.exists()  # a run that fails before its first checkpoint removes it again
        resumed = self._check_resume()
        self._remove_stale_temps()

        self.data = open_dataset(cfg.data, resize=cfg.resize)
        self.num_classes = self._check_data()
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        try:
            self.model = create_model(cfg.model, **cfg.model_kwargs)
        except EdgekdError as e:  # say where the options came from
            raise EdgekdError(f"model_kwargs {cfg.model_kwargs} (--model-opt, config file or resumed run): {e}") from None
        if cfg.init_weights and resumed is None:
            self._load_init()
        self.objective = self._build_objective(objective)
        self.model.to(self.device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.objective.to(self.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad] + self.objective.main_parameters()
        groups = [{"params": [p for p in self.model.parameters() if p.requires_grad]},
                  {"params": self.objective.main_parameters()}]
        if cfg.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        else:
            self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.amp == "fp16")
        self.amp_dtype = AMP_DTYPES.get(cfg.amp)

        world, batch = self.ctx.world_size, cfg.batch_size
        self.steps_per_epoch = len(self.data) // (batch * world)
        if self.steps_per_epoch == 0:
            raise EdgekdError(f"{cfg.data}: {len(self.data)} images are fewer than one global batch "
                              f"({batch} x {world} processes); lower --batch-size")
        self.total = cfg.steps or (cfg.epochs or 1) * self.steps_per_epoch
        self.val_sets = self._load_val_sets()

        self.step, self.wall_s, self.train_s, self.images = 0, 0.0, 0.0, 0
        self.pending: dict[str, float] = {}  # log sums since the last log line
        self.history: dict[str, list] = {"loss": [], "val": []}
        self.last_good: int | None = None
        torch.manual_seed(cfg.seed * 1000 + self.ctx.rank + 1)  # dropout differs per rank, reproducibly
        distributed.broadcast_module(self.model)
        distributed.broadcast_module(self.objective)
        if resumed is not None:
            self._restore(resumed)

    # ---- setup checks -------------------------------------------------------------------------------------
    def _check_resume(self) -> dict | None:
        """--resume needs this run's checkpoint of the same model; without it, never overwrite a run."""
        cfg = self.cfg
        if not cfg.resume:
            if self.ckpt_path.exists() or self.summary_path.exists():
                raise EdgekdError(f"{self.out}: already holds a run; pass --resume to continue it or choose another --out")
            return None
        if not self.ckpt_path.exists():
            raise EdgekdError(f"{self.ckpt_path}: no checkpoint to resume from")
        ckpt = load_checkpoint(self.ckpt_path)
        from edgekd.models.registry import resolve

        saved = ckpt["config"]
        if resolve(saved["model"]).name != resolve(cfg.model).name or saved["model_kwargs"] != cfg.model_kwargs:
            raise EdgekdError(f"{self.ckpt_path}: the run trains {saved['model']} {saved['model_kwargs'] or ''}, "
                              f"not {cfg.model} {cfg.model_kwargs or ''}; resume with the same model")
        return ckpt

    def _remove_stale_temps(self) -> None:
        """Atomic writes of a run killed mid-write (kill -9) leave `.checkpoint.pt.*.tmp`; the next start removes them."""
        if self.ctx.is_main and self.out.is_dir():
            for out in (self.ckpt_path, self.model_path, self.log_path, self.summary_path):
                for tmp in self.out.glob(f".{out.name}.*.tmp"):
                    tmp.unlink(missing_ok=True)

    def discard_unsaved_run(self) -> None:
        """After a failure before the first checkpoint nothing can be resumed: remove this run's log and the run
        folder it created, so no empty or half-made run folder stays behind."""
        if not self.ctx.is_main or self.last_good is not None or self.ckpt_path.exists():
            return
        self.log_path.unlink(missing_ok=True)
        if self.created_out and self.out.is_dir() and not any(self.out.iterdir()):
            self.out.rmdir()

    def _check_data(self) -> int:
        cfg, n = self.cfg, len(self.data)
        if n == 0:
            raise EdgekdError(f"{cfg.data}: the dataset holds no images")
        counts = np.bincount(np.asarray(self.data.labels, dtype=np.int64), minlength=self.data.num_classes)
        if len(counts) != self.data.num_classes:
            raise EdgekdError(f"{cfg.data}: labels go up to {len(counts) - 1} but the dataset declares "
                              f"{self.data.num_classes} classes")
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            raise EdgekdError(f"{cfg.data}: {empty.size} identities have no images (e.g. label {int(empty[0])})")
        if cfg.num_classes is not None and cfg.num_classes != self.data.num_classes:
            raise EdgekdError(f"{cfg.data}: the dataset has {self.data.num_classes} identities but "
                              f"--num-classes is {cfg.num_classes}")
        return int(self.data.num_classes)

    def _load_init(self) -> None:
        """Start from a checkpoint's weights; a file of another architecture is a one-line error."""
        from edgekd.models import load_model, read_weights
        from edgekd.models.loading import detect_architecture
        from edgekd.models.registry import resolve

        path = self.cfg.init_weights
        sd, meta = read_weights(path)
        try:
            found = meta.get("model") or detect_architecture(sd, path)[0]
        except EdgekdError:
            found = None
        if found and resolve(found).name != resolve(self.cfg.model).name:
            raise EdgekdError(f"{path}: --init weights are a {found}, not a {self.cfg.model}")
        init, _ = load_model(path, name=self.cfg.model, **self.cfg.model_kwargs)
        self.model.load_state_dict(init.state_dict())

    def _build_objective(self, objective: ObjectiveArg) -> Objective:
        cfg = self.cfg
        if objective is None:
            m1, m2, m3 = cfg.margins()
            objective = MarginObjective(self.num_classes, self.model.embedding_size, cfg.scale, m1, m2, m3,
                                        cfg.sample_rate, cfg.easy_margin, cfg.seed)
        elif not isinstance(objective, Objective):
            objective = objective(self.model, self.num_classes)
        n = getattr(objective, "num_classes", None)
        if n is not None and n != self.num_classes:
            raise EdgekdError(f"{cfg.data}: the dataset has {self.num_classes} identities but the head has {n} classes")
        return objective

    def _load_val_sets(self) -> list:
        if not self.ctx.is_main or not self.cfg.val:
            return []
        from edgekd.data import load_verification, synthetic_verification_set

        sets = [synthetic_verification_set() if p == "synthetic" else load_verification(p, resize=self.cfg.resize)
                for p in self.cfg.val]
        for p, v in zip(self.cfg.val, sets):  # found now, not at the first verification hours later
            if v.issame.all() or not v.issame.any():
                raise EdgekdError(f"{p}: verification needs both same- and different-identity pairs")
        return sets

    def _restore(self, ckpt: dict) -> None:
        own = self.objective.state_dict()
        for k, v in ckpt["objective"].items():
            if k in own and own[k].shape != v.shape:
                raise EdgekdError(f"{self.ckpt_path}: saved {k} has shape {tuple(v.shape)}, this run needs "
                                  f"{tuple(own[k].shape)} (the dataset has {self.num_classes} identities)")
        self.model.load_state_dict(ckpt["state_dict"])
        self.objective.load_state_dict(ckpt["objective"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.objective.load_extra_state(ckpt["extra_state"])
        t = ckpt["train"]
        self.step, self.wall_s, self.train_s, self.images = t["step"], t["wall_s"], t["train_s"], t["images"]
        self.pending, self.history, self.last_good = t["pending"], t["history"], t["step"]
        rng = ckpt["rng"][self.ctx.rank] if self.ctx.rank < len(ckpt["rng"]) else None
        if rng is not None:
            set_rng_state(rng)
        if self.ctx.is_main and self.log_path.exists():  # drop lines the killed run logged after its checkpoint
            lines = [ln for ln in self.log_path.read_text().splitlines() if ln.strip()]
            kept = [ln for ln in lines if _line_step(ln) is not None and _line_step(ln) <= self.step]
            write_text_atomic(self.log_path, "".join(ln + "\n" for ln in kept))

    # ---- the loop -----------------------------------------------------------------------------------------
    def loader(self, epoch: int, start: int):
        """Flips are drawn per (seed, epoch, index) inside TorchFaceDataset: independent of workers and resume."""
        from edgekd.data.torch_dataset import TorchFaceDataset

        ds = TorchFaceDataset(self.data, self.model.preprocess, flip=self.cfg.flip, seed=self.cfg.seed)
        ds.set_epoch(epoch)
        return torch.utils.data.DataLoader(
            ds, batch_sampler=epoch_batches(len(self.data), self.cfg.batch_size, self.ctx.world_size, self.ctx.rank,
                                                self.cfg.seed, epoch, start), num_workers=self.cfg.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(self.cfg.seed),  # keeps the global torch RNG untouched
        )

    def device_batch(self, x: torch.Tensor) -> torch.Tensor:
        """An input batch on the training device, in the memory format the model trains in."""
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else x

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """One optimisation step on a device batch; raises NonFiniteLoss before touching the weights."""
        lr = lr_at(self.step, self.total, self.cfg.lr, self.cfg.warmup, self.cfg.schedule)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            loss, logs = self.objective(self.model, x, y)
        self.scaler.scale(loss).backward()
        mean_loss = float(distributed.all_reduce_grads(self.params, loss.detach()))
        if not math.isfinite(mean_loss):
            raise NonFiniteLoss(f"loss is {mean_loss}")
        if self.cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
            if not torch.isfinite(norm) and not self.scaler.is_enabled():
                raise NonFiniteLoss(f"gradient norm is {float(norm)}")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        logs = {**logs, "loss": mean_loss, "lr": lr}
        logs.update(self.objective.after_step(self.model, x, y))
        return logs

    def fit(self) -> dict:
        cfg, start_wall = self.cfg, time.perf_counter()
        if self.ctx.is_main and self.step == 0:  # a run killed before its first checkpoint starts over
            self.log_path.unlink(missing_ok=True)
        self.model.train()
        self.objective.train()
        bar = tqdm(total=self.total, initial=self.step, unit="step", dynamic_ncols=True,
                   disable=not (self.ctx.is_main and cfg.progress), desc=f"train {cfg.model}")
        it = None
        try:
            while self.step < self.total:
                epoch, i = divmod(self.step, self.steps_per_epoch)
                if it is None or i == 0:
                    it = iter(self.loader(epoch, i))
                t0 = time.perf_counter()
                x, y = next(it)
                x, y = self.device_batch(x), y.to(self.device, non_blocking=True)
                try:
                    logs = self.train_step(x, y)
                except NonFiniteLoss as e:
                    raise EdgekdError(f"{self.out}: step {self.step + 1}: {e}; training stopped, {self._kept()}") from None
                self.step += 1
                dt = time.perf_counter() - t0
                self.train_s += dt
                self.images += x.shape[0] * self.ctx.world_size
                for k, v in logs.items():
                    self.pending[k] = self.pending.get(k, 0.0) + v
                self.pending["_n"] = self.pending.get("_n", 0) + 1
                self.pending["_img"] = self.pending.get("_img", 0) + x.shape[0] * self.ctx.world_size
                self.pending["_s"] = self.pending.get("_s", 0.0) + dt
                bar.update(1)
                if self.step % cfg.log_every == 0 or self.step == self.total:
                    line = self._log_train(epoch)
                    bar.set_postfix(loss=f"{line['loss']:.3f}", lr=f"{line['lr']:.3g}", img_s=f"{line['img_per_s']:.0f}")
                if cfg.val_every and self.step % cfg.val_every == 0 and self.step < self.total:
                    self.validate(bar)
                end_of_epoch = self.step % self.steps_per_epoch == 0
                if (cfg.ckpt_every and self.step % cfg.ckpt_every == 0) or end_of_epoch or self.step == self.total:
                    self.save(start_wall)
            if cfg.bn_recal:
                self.recalibrate_bn()
            final = self.validate(bar) if self.val_sets else {}
        finally:
            bar.close()
        self.wall_s += time.perf_counter() - start_wall
        return self._finish(final)

    # ---- logging, validation, checkpoints -----------------------------------------------------------------
    def _log_train(self, epoch: int) -> dict:
        """Means over the steps since the last line; img/s counts data loading + steps, not verification/saving."""
        n, img, secs = self.pending.pop("_n"), self.pending.pop("_img"), self.pending.pop("_s")
        line = {"step": self.step, "epoch": epoch, **{k: v / n for k, v in self.pending.items()},
                "img_per_s": img / secs if secs > 0 else 0.0}
        self.pending = {}
        self.history["loss"].append(line["loss"])
        # the margin (cross-entropy) part alone, compared with a uniform guess; distillation adds KD terms to "loss"
        self.history.setdefault("margin_loss", []).append(line.get("arcface", line["loss"]))
        self._write_log(line)
        return line

    def _write_log(self, line: dict) -> None:
        if self.ctx.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "a") as f:  # append-only; resume truncates to the checkpoint's step
                f.write(json.dumps(line) + "\n")

    def embed(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad(), torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                             enabled=self.amp_dtype is not None):
            t = torch.from_numpy(x).to(self.device)
            if self.cfg.channels_last:
                t = t.contiguous(memory_format=torch.channels_last)
            return self.model(t).float().cpu().numpy()

    def validate(self, bar=None) -> dict:
        """Verification on every --val set (rank 0); logged and kept for the convergence verdict."""
        from edgekd.eval import evaluate

        if not self.val_sets:
            return {}
        self.model.eval()
        fast = None
        if self.device.type == "cpu" and self.amp_dtype is None:  # ONNX Runtime: several times PyTorch eager on CPU
            from edgekd.runtime.torch_checkpoint import cpu_embed_fn

            fast = cpu_embed_fn(self.model)
        try:
            results = {v.name: evaluate(fast or self.embed, v, self.model.preprocess,
                                        batch_size=self.cfg.val_batch_size, progress=False) for v in self.val_sets}
        finally:
            if fast is not None:
                fast.close()
            self.model.train()
        accs = {name: r["accuracy_mean"] for name, r in results.items()}
        aucs = {name: r["auc"] for name, r in results.items()}
        self.history["val"].append([self.step, accs])
        self.history.setdefault("val_auc", []).append([self.step, aucs])
        self._write_log({"step": self.step, "val": accs, "val_auc": aucs})
        if bar is not None:
            bar.write(f"step {self.step}: " + ", ".join(f"{n} {a:.4f}" for n, a in accs.items()))
        return results

    def recalibrate_bn(self) -> None:
        """BatchNorm statistics as a plain average over `bn_recal` batches under the final weights: the running
        averages of a short or high-lr run describe earlier weights, and can make every eval-mode embedding point the
        same way. Runs after the last checkpoint, so resuming stays exact; model.pt gets the re-estimated statistics."""
        from torch.optim.swa_utils import update_bn

        batches = self.loader(epoch=-1, start=0)  # its own seeded order, not the training order
        n = min(self.cfg.bn_recal, len(batches))
        update_bn((self.device_batch(x) for x, _ in itertools.islice(batches, n)), self.model)  # restores train()
        self._write_log({"step": self.step, "bn_recal_batches": n})

    def _kept(self) -> str:
        if self.last_good is None:
            return "no checkpoint had been written (nothing to resume)"
        return f"last good checkpoint {self.ckpt_path} (step {self.last_good}) kept"

    def config_record(self) -> dict:
        """The settings as saved in checkpoints and summary.json, with the device the run actually used (not 'auto')."""
        return {**self.cfg.to_dict(), "device": str(self.device)}

    def save(self, start_wall: float) -> None:
        """Atomic checkpoint of the full training state; refuses to replace a good one with non-finite weights."""
        from edgekd.models import save_checkpoint

        rngs = [rng_state()]
        if self.ctx.world_size > 1:
            rngs = [None] * self.ctx.world_size
            torch.distributed.all_gather_object(rngs, rng_state())
        if not self.ctx.is_main:
            return
        for name, t in list(self.model.state_dict().items()) + list(self.objective.state_dict().items()):
            if t.is_floating_point() and not torch.isfinite(t).all():
                raise EdgekdError(f"{self.out}: step {self.step}: {name} is not finite; training stopped, {self._kept()}")
        extra = {
            "meta": {**self.meta, "step": self.step},
            "objective": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "extra_state": self.objective.extra_state(),
            "rng": rngs,
            "train": {"step": self.step, "wall_s": self.wall_s + time.perf_counter() - start_wall,
                      "train_s": self.train_s, "images": self.images, "pending": dict(self.pending),
                      "history": self.history},
            "config": self.config_record(),
            "git_commit": git_commit(),
        }
        save_checkpoint(self.ckpt_path, self.model, self.cfg.model, self.cfg.model_kwargs, extra)
        self.last_good = self.step

    def _finish(self, final: dict) -> dict:
        from edgekd.models import save_checkpoint

        cfg = self.cfg
        accs = [a[next(iter(a))] for _, a in self.history["val"]]
        aucs = [a[next(iter(a))] for _, a in self.history.get("val_auc", [])]
        classes = max(2, round(cfg.sample_rate * self.num_classes))  # Partial FC: the classes each step scores
        verdict = assess(self.history["loss"], accs, classes, aucs, self.history.get("margin_loss"))
        converged, note = verdict.converged, verdict.note
        first = final[next(iter(final))] if final else None
        summary = {
            "kind": self.meta["kind"],
            "label": {"model": cfg.model, "method": self.meta["method"], "precision": "fp32",
                      "artifact": str(self.model_path)},
            "model": cfg.model,
            "model_kwargs": cfg.model_kwargs,
            "method": self.meta["method"],
            "teacher": self.meta["teacher"],
            "margin": cfg.margin if isinstance(self.objective, MarginObjective) else None,
            "data": cfg.data,
            "num_classes": self.num_classes,
            "num_images": len(self.data),
            "val_data": list(cfg.val),
            "steps": self.step,
            "epochs": self.step / self.steps_per_epoch,
            "global_batch": cfg.batch_size * self.ctx.world_size,
            "world_size": self.ctx.world_size,
            "wall_time_s": self.wall_s,
            "img_per_s": self.images / self.train_s if self.train_s > 0 else None,
            "device": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
            "final_loss": self.history["loss"][-1] if self.history["loss"] else None,
            "converged": converged,
            "convergence": verdict.verdict,
            "convergence_note": note,
            "checkpoint": str(self.model_path),
            "verification": first,
            "val": final,
            "accuracy_mean": first["accuracy_mean"] if first else None,
            "accuracy_std": first["accuracy_std"] if first else None,
            "tar_at_far": first["tar_at_far"] if first else None,
            "git_commit": git_commit(),
            "config": self.config_record(),
            **{k: v for k, v in self.meta.items() if k not in ("kind", "method", "teacher")},
        }
        if self.ctx.is_main:
            save_checkpoint(self.model_path, self.model, cfg.model, cfg.model_kwargs,
                            {"meta": {**self.meta, "step": self.step, "converged": converged}})
            write_json_atomic(self.summary_path, summary)
            print(f"{self.summary_path}: {note}")
        distributed.barrier()
        return summary


def _line_step(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


def run_training(cfg: TrainConfig, objective: ObjectiveArg = None, meta: dict | None = None) -> dict:
    """Train `cfg.model` with `objective` (default: the margin head from cfg) and return the summary.json dict."""
    try:
        trainer = Trainer(cfg, objective, meta)
        try:
            return trainer.fit()
        except BaseException:
            trainer.discard_unsaved_run()
            raise
    finally:
        distributed.cleanup()
