"""DistillObjective: the student's ArcFace loss plus weighted KD methods, behind TRAIN's Objective interface
(so distillation reuses the trainer's loop, checkpoints, resume, AMP and convergence checks)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgekd.distill.methods import Adversarial, MethodShapes, Features, build_methods
from edgekd.distill.teacher import Teacher
from edgekd.errors import EdgekdError
from edgekd.train.objective import MarginObjective


class DistillObjective(MarginObjective):
    """loss = w_hard * ArcFace(student) + sum_i w_i * method_i. A Linear projection maps the student embedding to
    the teacher's size when they differ (trained with the student); the teacher's class centres are a frozen buffer;
    the teacher itself stays outside the module tree (never checkpointed, never put in train mode)."""

    def __init__(self, teacher: Teacher, methods: list[tuple[str, float]], options: dict, num_classes: int,
                 embedding_size: int, student_fmap: tuple[int, int, int] | None = None,
                 teacher_fmap: tuple[int, int, int] | None = None, teacher_centres: np.ndarray | None = None,
                 **margin_kw):
        super().__init__(num_classes, embedding_size, **margin_kw)
        object.__setattr__(self, "teacher", teacher)
        t_dim = teacher.embedding_size
        self.project = nn.Linear(embedding_size, t_dim, bias=False) if embedding_size != t_dim else nn.Identity()
        ctx = MethodShapes(embedding_size, t_dim, num_classes, student_fmap, teacher_fmap)
        self.methods = nn.ModuleList(build_methods(methods, options, ctx))
        self.weights = [w for _, w in methods]
        self.needs_logits = any(m.needs_logits for m in self.methods)
        self.needs_fmap = any(m.needs_fmap for m in self.methods)
        if self.needs_logits:
            if teacher_centres is None:
                raise EdgekdError("logit-level KD needs teacher class centres (fit or give a teacher head)")
            if teacher_centres.shape != (num_classes, t_dim):
                raise EdgekdError(f"teacher head has shape {tuple(teacher_centres.shape)}, expected ({num_classes}, "
                                  f"{t_dim}) for {num_classes} training classes")
            self.register_buffer("teacher_centres", F.normalize(torch.as_tensor(teacher_centres).float(), dim=1))
        alphas = [m.alpha for m in self.methods if getattr(m, "alpha", None) is not None]
        self.hard_weight = 1.0 - alphas[0] if alphas else 1.0
        for m in self.methods:
            if isinstance(m, Adversarial):
                self.own_optimizers[f"{m.name}.discriminator"] = m.opt

    def forward(self, model, images, labels):
        if self.teacher.device != images.device:
            self.teacher.to(images.device)
        s_fmap = t_fmap = None
        if self.needs_fmap:
            s_fmap = model.forward_features(images)
            s_emb = model.forward_head(s_fmap)
            t_fmap, t_emb = self.teacher.features(images)
        else:
            s_emb = model(images)
            t_emb = self.teacher.embed(images)
        hard = self.head(s_emb, labels)
        s_emb = s_emb.float()
        f = Features(labels, s_emb, self.project(s_emb), t_emb, s_fmap=s_fmap, t_fmap=t_fmap)
        if self.needs_logits:
            f.t_logits = self.head.margin_loss.s * F.normalize(t_emb, dim=1) @ self.teacher_centres.t()
        total = self.hard_weight * hard
        logs = {"arcface": hard.item()}
        for m, w in zip(self.methods, self.weights):
            if m.needs_logits:
                emb, centres = ((f.s_proj, self.teacher_centres) if m.uses_teacher_centres
                                else (f.s_emb, F.normalize(self.head.weight.float(), dim=1)))
                f.s_logits = self.head.margin_loss.s * F.normalize(emb, dim=1) @ centres.t()
            loss, mlogs = m(f)
            total = total + w * loss
            logs.update(mlogs)
        logs["loss"] = total.item()
        return total, logs

    def after_step(self, model, images, labels):
        logs: dict[str, float] = {}
        for m in self.methods:
            logs.update(m.after_step())
        return logs
