"""Knowledge-distillation methods: small modules in a registry, combined with weights ("soft:1.0,adv:0.1").

Each method turns one batch of student/teacher outputs (`Features`) into a loss. The DistillObjective adds them
to the student's ArcFace loss; only the adversarial method has a second player (its discriminator), which it
updates itself in `after_step` with its own optimizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from edgekd.distill.discriminators import ConvDiscriminator, MLPDiscriminator
from edgekd.errors import EdgekdError
from edgekd.train.distributed import all_reduce_grads


@dataclass
class Features:
    """One batch seen by both networks. `s_proj` is the student embedding mapped to the teacher's size (the
    identity when sizes agree); logits are s*cos(embedding, class centres) without margin; teacher tensors carry
    no gradient."""

    labels: torch.Tensor
    s_emb: torch.Tensor
    s_proj: torch.Tensor
    t_emb: torch.Tensor
    s_logits: torch.Tensor | None = None
    t_logits: torch.Tensor | None = None
    s_fmap: torch.Tensor | None = None
    t_fmap: torch.Tensor | None = None


@dataclass
class MethodShapes:
    """What a method may need to build itself; fmap shapes are (C, h, w) from one dry forward of each network."""

    student_dim: int
    teacher_dim: int
    num_classes: int
    student_fmap: tuple[int, int, int] | None = None
    teacher_fmap: tuple[int, int, int] | None = None


class Method(nn.Module):
    """Base: `OPTIONS` maps option name -> default (its type is the default's type; None defaults are floats).
    Trainable submodules (projections) are trained with the student; a second player's parameters belong to an
    optimizer the method owns (the objective registers it in `own_optimizers`)."""

    name: ClassVar[str]
    OPTIONS: ClassVar[dict[str, Any]] = {}
    needs_logits: bool = False
    needs_fmap: bool = False
    uses_teacher_centres: bool = False

    def forward(self, f: Features) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def after_step(self) -> dict[str, float]:
        """Second-player update after the student's step (adversarial only)."""
        return {}


METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    METHODS[cls.name] = cls
    return cls


@register
class SoftTarget(Method):
    """Hinton et al. 2015, "Distilling the knowledge in a neural network": KL(teacher || student) between
    temperature-softened class posteriors, times T^2 so gradients keep their scale as T changes. Logits are the
    ArcFace classifier's s*cos without margin. `teacher_centres`: the student is scored against the teacher's
    frozen class centres (through the projection) instead of its own head, pulling it into the teacher's space.
    `alpha` (if set): Hinton's mix, ArcFace x (1-alpha) + this term x alpha."""

    name = "soft"
    OPTIONS = {"temperature": 4.0, "alpha": None, "teacher_centres": False}
    needs_logits = True

    def __init__(self, ctx: MethodShapes, temperature: float, alpha: float | None, teacher_centres: bool):
        super().__init__()
        if temperature <= 0:
            raise EdgekdError(f"soft: temperature must be > 0, got {temperature}")
        if alpha is not None and not 0.0 < alpha < 1.0:
            raise EdgekdError(f"soft: alpha must be in (0, 1), got {alpha}")
        self.temperature, self.alpha, self.uses_teacher_centres = temperature, alpha, teacher_centres

    def forward(self, f: Features):
        t = self.temperature
        log_p_s = F.log_softmax(f.s_logits / t, dim=1)
        log_p_t = F.log_softmax(f.t_logits / t, dim=1)
        kl = F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean") * t * t
        agree = (f.s_logits.argmax(1) == f.t_logits.argmax(1)).float().mean()
        return kl * (self.alpha or 1.0), {"soft_kl": kl.item(), "soft_top1_agree": agree.item()}


@register
class EmbeddingCosine(Method):
    """Embedding-level KD on L2-normalised features, as in PocketNet (Boutros et al. 2022, IEEE Access, "PocketNet:
    extreme lightweight face recognition network using neural architecture search and multistep knowledge
    distillation"): their MSE between normalised embeddings equals 2(1 - cos). Needs no teacher classifier, so it
    works with any pretrained teacher and any identity set."""

    name = "cosine"

    def __init__(self, ctx: MethodShapes):
        super().__init__()

    def forward(self, f: Features):
        cos = F.cosine_similarity(f.s_proj, f.t_emb.float(), dim=1)
        return (1.0 - cos).mean(), {"cosine_st": cos.mean().item()}


def _gram(x: torch.Tensor) -> torch.Tensor:
    g = F.normalize(x.float(), dim=1)
    return F.normalize(g @ g.t(), dim=1)


@register
class SimilarityPreserving(Method):
    """Tung & Mori 2019, "Similarity-preserving knowledge distillation" (ICCV): match the row-normalised batch
    similarity matrices, so pairs the teacher finds alike stay alike; sizes of the two embeddings may differ
    (no projection needed). Applied to normalised embeddings, the quantity verification thresholds."""

    name = "sp"

    def __init__(self, ctx: MethodShapes):
        super().__init__()

    def forward(self, f: Features):
        b = f.s_emb.shape[0]
        loss = (_gram(f.s_emb) - _gram(f.t_emb)).pow(2).sum() / (b * b)
        return loss, {"sp": loss.item()}


def _pdist(e: torch.Tensor) -> torch.Tensor:
    d = (e.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * e @ e.t()).clamp_min(1e-12).sqrt()
    return d * (1 - torch.eye(len(e), device=e.device))


@register
class Relational(Method):
    """Park et al. 2019, "Relational knowledge distillation" (CVPR): distance-wise (pairwise distances divided
    by their mean, Huber) and angle-wise (cosines of angles in triplets, Huber) losses, weights 1 and 2 as in
    the paper; on normalised embeddings, independent of the embedding sizes."""

    name = "rkd"
    OPTIONS = {"distance": 1.0, "angle": 2.0}

    def __init__(self, ctx: MethodShapes, distance: float, angle: float):
        super().__init__()
        self.w_dist, self.w_angle = distance, angle

    @staticmethod
    def _angles(e: torch.Tensor) -> torch.Tensor:
        diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), dim=2)
        return torch.bmm(diff, diff.transpose(1, 2)).flatten()

    def forward(self, f: Features):
        s, t = F.normalize(f.s_emb.float(), dim=1), F.normalize(f.t_emb.float(), dim=1)
        ds, dt = _pdist(s), _pdist(t)
        off = ds > 0
        l_dist = F.smooth_l1_loss(ds / ds[off].mean(), dt / dt[off].mean())
        l_angle = F.smooth_l1_loss(self._angles(s), self._angles(t))
        loss = self.w_dist * l_dist + self.w_angle * l_angle
        return loss, {"rkd_dist": l_dist.item(), "rkd_angle": l_angle.item()}


@register
class Adversarial(Method):
    """Adversarial KD after Wang et al. 2018, "Adversarial learning of portable student networks" (AAAI): a
    discriminator learns teacher features = real, student features = fake; the student (generator) gets the
    non-saturating loss -log D(student) on top of ArcFace. A true min-max: D has its own Adam and is stepped in
    `after_step`, after the trainer's student step, on the same batch's detached features (alternating updates;
    D never appears in the student's optimizer). One-sided label smoothing (real target `smooth`, Salimans et
    al. 2016) keeps D from saturating; D accuracy is logged so a collapsed or overpowering D is visible.
    `disc=mlp` judges embeddings (projected to the teacher's size), `disc=conv` the last feature maps
    (`forward_features`; a learned 1x1 conv maps student channels to the teacher's, spatial sizes must agree)."""

    name = "adv"
    OPTIONS = {"disc": "mlp", "lr": 2e-4, "smooth": 0.9}

    def __init__(self, ctx: MethodShapes, disc: str, lr: float, smooth: float):
        super().__init__()
        if disc not in ("mlp", "conv"):
            raise EdgekdError(f"adv: disc must be 'mlp' or 'conv', got {disc!r}")
        if not 0.5 < smooth <= 1.0:
            raise EdgekdError(f"adv: smooth (real label) must be in (0.5, 1], got {smooth}")
        self.disc, self.smooth, self.needs_fmap = disc, smooth, disc == "conv"
        self.fmap_proj: nn.Module = nn.Identity()
        if disc == "conv":
            (cs, hs, ws), (ct, ht, wt) = ctx.student_fmap, ctx.teacher_fmap
            if (hs, ws) != (ht, wt):
                raise EdgekdError(
                    f"adv: disc=conv needs feature maps of equal spatial size, student {hs}x{ws} vs teacher "
                    f"{ht}x{wt} (use disc=mlp)")
            if cs != ct:
                self.fmap_proj = nn.Conv2d(cs, ct, 1, bias=False)
            self.d = ConvDiscriminator(ct)
        else:
            self.d = MLPDiscriminator(ctx.teacher_dim)
        self.opt = torch.optim.Adam(self.d.parameters(), lr=lr, betas=(0.5, 0.999))
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, f: Features):
        fake = self.fmap_proj(f.s_fmap) if self.disc == "conv" else f.s_proj
        real = f.t_fmap if self.disc == "conv" else f.t_emb
        self._batch = (real.detach().float(), fake.detach())
        logits = self.d(fake)
        g_loss = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        return g_loss, {"adv_g": g_loss.item()}

    def after_step(self):
        if self._batch is None:
            return {}
        real, fake = self._batch
        self._batch = None
        self.opt.zero_grad(set_to_none=True)  # also drops grads the generator loss left on D
        lr_, lf = self.d(real), self.d(fake)
        d_loss = F.binary_cross_entropy_with_logits(lr_, torch.full_like(lr_, self.smooth)) + \
            F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf))
        d_loss.backward()
        all_reduce_grads(list(self.d.parameters()))
        self.opt.step()
        acc = 0.5 * ((lr_ > 0).float().mean() + (lf < 0).float().mean())
        return {"adv_d_loss": d_loss.item(), "adv_d_acc": acc.item()}


def _convert(method: str, key: str, value: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError
            return value.lower() in ("1", "true", "yes")
        if isinstance(default, str):
            return value
        return float(value)
    except ValueError:
        raise EdgekdError(f"method option {method}.{key}={value!r}: expected {type(default or 0.0).__name__}") from None


def parse_methods(spec: str) -> list[tuple[str, float]]:
    """"soft:1.0,adv:0.1" -> [("soft", 1.0), ("adv", 0.1)]; a bare name has weight 1. One-line errors."""
    out: list[tuple[str, float]] = []
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        name, _, w = part.partition(":")
        name = name.strip().lower()
        if name not in METHODS:
            raise EdgekdError(f"unknown distillation method {name!r} in {spec!r} (known: {', '.join(sorted(METHODS))})")
        try:
            weight = float(w) if w else 1.0
        except ValueError:
            raise EdgekdError(f"method weight {w!r} for {name!r} in {spec!r} is not a number") from None
        if not weight > 0 or weight != weight or weight == float("inf"):
            raise EdgekdError(f"method weight for {name!r} in {spec!r} must be a positive finite number")
        if name in dict(out):
            raise EdgekdError(f"method {name!r} given twice in {spec!r}")
        out.append((name, weight))
    if not out:
        raise EdgekdError("no distillation method given (e.g. --method soft:1.0,adv:0.1)")
    return out


def parse_options(items: list[str] | tuple[str, ...], names: list[str]) -> dict[str, dict[str, Any]]:
    """["soft.temperature=4", "adv.disc=conv"] -> per-method kwargs, defaults filled, types checked."""
    opts = {n: dict(METHODS[n].OPTIONS) for n in names}
    for item in items:
        key, eq, value = item.partition("=")
        method, dot, opt = key.strip().partition(".")
        if not eq or not dot:
            raise EdgekdError(f"method option {item!r}: expected METHOD.KEY=VALUE (e.g. soft.temperature=4)")
        if method not in opts:
            raise EdgekdError(f"method option {item!r}: method {method!r} is not among --method {', '.join(names)}")
        if opt not in opts[method]:
            known = ", ".join(METHODS[method].OPTIONS) or "none"
            raise EdgekdError(f"method option {item!r}: {method} has no option {opt!r} (options: {known})")
        opts[method][opt] = _convert(method, opt, value.strip(), METHODS[method].OPTIONS[opt])
    return opts


def build_methods(spec: list[tuple[str, float]], options: dict[str, dict[str, Any]], ctx: MethodShapes) -> list[Method]:
    return [METHODS[name](ctx, **options.get(name, dict(METHODS[name].OPTIONS))) for name, _ in spec]
