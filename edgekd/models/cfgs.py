"""timm-style default cfgs of the registered architectures: input size, preprocessing, embedding size, aliases.

Torch-free on purpose: the deployed path (an ONNX file with `--model NAME`) reads a model's preprocessing from
here without importing torch or the architectures, which take their class attributes from the same table.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekd.preprocess import ARCFACE, Preprocess


@dataclass(frozen=True)
class ModelCfg:
    preprocess: Preprocess = ARCFACE
    embedding_size: int = 512  # the builder's default
    aliases: tuple[str, ...] = ()


IMAGENET = Preprocess(mean=(0.485 * 255, 0.456 * 255, 0.406 * 255), std=(0.229 * 255, 0.224 * 255, 0.225 * 255))

CFGS: dict[str, ModelCfg] = {
    **{name: ModelCfg() for name in ("r18", "r34", "r50", "r100", "r200", "r101")},
    "mobilefacenet": ModelCfg(aliases=("mbf",)),
    "mobilenetv2": ModelCfg(),
    "mobilefacenet_ms1m_foamliu": ModelCfg(IMAGENET, 128),
    "mobilefacenet_casia_xiaoccer": ModelCfg(
        Preprocess(input_size=(112, 96), mean=(127.5,) * 3, std=(128.0,) * 3, crop=(0, 8, 112, 96)), 128),
}
ALIASES = {a: name for name, cfg in CFGS.items() for a in cfg.aliases}
