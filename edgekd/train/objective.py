"""What a training step optimises besides the backbone. The trainer knows only this interface, so vanilla
margin training and every distillation method share one loop (checkpoints, resume, DDP, AMP, logging)."""

from __future__ import annotations

import torch
from torch import nn

from edgekd.losses import CombinedMarginLoss, PartialFC


class Objective(nn.Module):
    """Base class. Subclasses register their trainable parts (head, projections, discriminators) as submodules;
    parameters updated by their own optimizers go in `self.own_optimizers` (name -> optimizer) so the trainer's
    optimizer leaves them alone and their state is checkpointed through `extra_state`.
    """

    def __init__(self):
        super().__init__()
        self.own_optimizers: dict[str, torch.optim.Optimizer] = {}

    def forward(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss to back-propagate into the model and main_parameters(), plus scalars to log."""
        raise NotImplementedError

    def main_parameters(self) -> list[nn.Parameter]:
        """Trained by the trainer's optimizer together with the model: all trainable params not owned elsewhere."""
        own = {id(p) for opt in self.own_optimizers.values() for g in opt.param_groups for p in g["params"]}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in own]

    def after_step(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """Second-player updates (e.g. an adversarial discriminator) after the main optimizer step."""
        return {}

    def extra_state(self) -> dict:
        """State outside state_dict(): the own optimizers (tensors and primitives only, weights_only-loadable)."""
        return {name: opt.state_dict() for name, opt in self.own_optimizers.items()}

    def load_extra_state(self, state: dict) -> None:
        for name, opt in self.own_optimizers.items():
            if name in state:
                opt.load_state_dict(state[name])


class MarginObjective(Objective):
    """Vanilla ArcFace/CosFace/combined-margin training: a (Partial) FC margin head over the identities."""

    def __init__(self, num_classes: int, embedding_size: int, s: float = 64.0, m1: float = 1.0, m2: float = 0.5,
                 m3: float = 0.0, sample_rate: float = 1.0, easy_margin: bool = False, seed: int = 0):
        super().__init__()
        self.num_classes = num_classes
        self.head = PartialFC(CombinedMarginLoss(s, m1, m2, m3, easy_margin), embedding_size, num_classes,
                              sample_rate, seed)

    def forward(self, model, images, labels):
        loss = self.head(model(images), labels)
        return loss, {"loss": loss.item()}
