"""Knowledge distillation: a frozen teacher guides a student through TRAIN's loop via a DistillObjective.

`run_distillation` validates everything that can be wrong (teacher file vs --teacher-model, method names, weights
and options, teacher head vs data, feature-map shapes) before the first step, then calls `run_training`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from edgekd.distill.methods import METHODS, parse_methods, parse_options
from edgekd.distill.objective import DistillObjective
from edgekd.distill.teacher import Teacher, embed_dataset, fit_teacher_head, load_teacher_head
from edgekd.errors import EdgekdError
from edgekd.io import check_writable_dir
from edgekd.train import TrainConfig, run_training

__all__ = ["METHODS", "DistillObjective", "Teacher", "run_distillation", "method_label"]


def method_label(spec: list[tuple[str, float]]) -> str:
    """"soft:1,adv:0.1" -> "soft+adv+arcface" (the name results and reports group by)."""
    return "+".join(name for name, _ in spec) + "+arcface"


def _device(cfg: TrainConfig) -> torch.device:
    from edgekd.devices import resolve_device

    return torch.device(resolve_device(cfg.device, "torch"))


@torch.no_grad()
def _fmap_shape(model: torch.nn.Module, x: torch.Tensor) -> tuple[int, int, int]:
    was = model.training
    model.eval()  # a dry forward in train mode would move BatchNorm running statistics
    try:
        return tuple(model.forward_features(x).shape[1:])
    finally:
        model.train(was)


def run_distillation(cfg: TrainConfig, teacher: str, teacher_model: str | None = None, methods: str = "soft",
                     options: list[str] | tuple[str, ...] = (), teacher_head: str | None = None,
                     teacher_fp16: bool = False, cache_dir: str | None = None, head_epochs: int = 20) -> dict:
    """Distil `teacher` (weights file; architecture detected or `teacher_model`) into `cfg.model`; returns the
    summary.json dict (kind "distill"). `cache_dir` holds teacher embeddings and fitted heads (default
    <out>/teacher_cache); share it between runs on the same data to embed the training set once."""
    from edgekd.models import load_model

    spec = parse_methods(methods)
    opts = parse_options(list(options), [n for n, _ in spec])
    if head_epochs < 0:
        raise EdgekdError(f"--head-epochs must be >= 0, got {head_epochs}")
    if teacher_fp16 and _device(cfg).type != "cuda":
        raise EdgekdError("--teacher-fp16 needs a CUDA device")
    cfg.margins()  # unknown margin head name, before anything slow
    t_model, info = load_model(teacher, teacher_model)
    given_head = load_teacher_head(Path(teacher_head), info.embedding_size) if teacher_head else None
    cache = Path(cache_dir) if cache_dir else Path(cfg.out) / "teacher_cache"
    check_writable_dir(cache, "teacher cache folder")  # before embedding the training set, not after
    label = method_label(spec)

    needs_logits = any(METHODS[n].needs_logits for n, _ in spec)
    needs_fmap = any(opts[n].get("disc") == "conv" for n, _ in spec)

    def build(student: torch.nn.Module, num_classes: int) -> DistillObjective:
        """Called by the trainer once the student and the data exist, before the first step."""
        from edgekd.data import open_dataset

        if given_head is not None and given_head.shape[0] != num_classes:
            raise EdgekdError(f"{teacher_head}: teacher head has {given_head.shape[0]} classes but {cfg.data} has "
                              f"{num_classes} identities")
        t = Teacher(t_model, info, student.preprocess, teacher_fp16).to(_device(cfg))
        x = torch.zeros(1, 3, *student.preprocess.input_size, device=t.device)
        t.teacher_input(x)  # incompatible teacher/student image sizes -> one-line error now
        s_fmap = _fmap_shape(student, x.cpu()) if needs_fmap else None
        t_fmap = tuple(t.features(x)[0].shape[1:]) if needs_fmap else None
        centres = given_head if needs_logits else None
        data = open_dataset(cfg.data, resize=cfg.resize)
        emb = embed_dataset(t, data, cache, compute=needs_logits and centres is None, flip=cfg.flip)
        if needs_logits and centres is None:
            centres = fit_teacher_head(t, data, emb, cache, s=cfg.scale, m=cfg.margins()[1], epochs=head_epochs,
                                       seed=cfg.seed)
        m1, m2, m3 = cfg.margins()
        return DistillObjective(t, spec, opts, num_classes, student.embedding_size, s_fmap, t_fmap, centres,
                                s=cfg.scale, m1=m1, m2=m2, m3=m3, sample_rate=cfg.sample_rate,
                                easy_margin=cfg.easy_margin, seed=cfg.seed)

    meta = {"kind": "distill", "method": label, "teacher": f"{info.name} {info.weights}",
            "teacher_sha256": info.weights_sha256, "teacher_embedding_size": info.embedding_size,
            "distill": {"methods": [{"name": n, "weight": w, "options": opts[n]} for n, w in spec],
                        "teacher_head": teacher_head or ("fitted" if needs_logits else None),
                        "teacher_fp16": teacher_fp16}}
    return run_training(cfg, build, meta)
