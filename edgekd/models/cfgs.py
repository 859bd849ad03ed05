"""timm-style default cfgs of the registered architectures: input size, preprocessing, embedding size, aliases, and
the parameter / multiply-add counts of the default build.

Torch-free on purpose: the deployed path (an ONNX file with `--model NAME`) reads a model's preprocessing from
here without importing torch or the architectures, which take their class attributes from the same table.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgekd.preprocess import ARCFACE, Preprocess


@dataclass(frozen=True)
class ModelCfg:
    """`params` / `macs`: what edgekd.models.flops counts for the default build (builder defaults) at `preprocess`'s
    input size, recorded so that opening a checkpoint need not run the counter (it imports torch's compiler stack,
    seconds); tests/test_models_complexity.py checks every registered model's figures against the count."""

    preprocess: Preprocess = ARCFACE
    embedding_size: int = 512  # the builder's default
    aliases: tuple[str, ...] = ()
    params: int | None = None
    macs: int | None = None


IMAGENET = Preprocess(mean=(0.485 * 255, 0.456 * 255, 0.406 * 255), std=(0.229 * 255, 0.224 * 255, 0.225 * 255))

CFGS: dict[str, ModelCfg] = {
    "r18": ModelCfg(params=24_025_600, macs=2_609_954_816),
    "r34": ModelCfg(params=34_139_328, macs=4_459_642_880),
    "r50": ModelCfg(params=43_590_848, macs=6_309_330_944),
    "r100": ModelCfg(params=65_156_160, macs=12_089_606_144),
    "r200": ModelCfg(params=118_833_920, macs=23_418_945_536),
    "r101": ModelCfg(params=54_223_808, macs=8_390_230_016),
    "mobilefacenet": ModelCfg(aliases=("mbf",), params=2_059_520, macs=437_520_896),
    "mobilenetv2": ModelCfg(params=2_903_296, macs=81_579_648),
    "mobilefacenet_ms1m_foamliu": ModelCfg(IMAGENET, 128, params=999_936, macs=233_810_432),
    "mobilefacenet_casia_xiaoccer": ModelCfg(
        Preprocess(input_size=(112, 96), mean=(127.5,) * 3, std=(128.0,) * 3, crop=(0, 8, 112, 96)), 128,
        params=999_552, macs=189_408_256),
}
ALIASES = {a: name for name, cfg in CFGS.items() for a in cfg.aliases}
