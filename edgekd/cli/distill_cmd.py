"""`edgekd` commands: distill (every `edgekd train` option, plus the teacher and the KD methods)."""

from __future__ import annotations

import click

from edgekd.cli import params
from edgekd.cli.app import cli
from edgekd.cli.train_cmd import config_from_options, train_options



@cli.command()
@click.option("--teacher", required=True, type=params.Path(dir_okay=False), help="Teacher weights (frozen).")
@click.option("--teacher-model", help="Teacher architecture (default: detected from the file).")
@click.option("--student", help="Student architecture (same as --model).")
@click.option("--method", default="soft", show_default=True,
              help="KD methods with weights added to ArcFace, e.g. soft:1.0,adv:0.1 (soft, adv, cosine, sp, rkd).")
@click.option("--kd-opt", "kd_opt", multiple=True, metavar="METHOD.KEY=VALUE",
              help="Method option, repeatable: soft.temperature=4, soft.alpha=0.5, soft.teacher_centres=true, "
                   "adv.disc=mlp|conv, adv.lr=2e-4, adv.smooth=0.9, rkd.distance=1, rkd.angle=2.")
@click.option("--teacher-head", type=params.Path(dir_okay=False),
              help="Teacher class centres .npy (classes x teacher dim); default: fitted on the training data.")
@click.option("--head-epochs", default=20, show_default=True, help="Epochs to fit the teacher head (cached embeddings).")
@click.option("--teacher-fp16", is_flag=True, help="Run the teacher in FP16 (CUDA only).")
@click.option("--teacher-cache", type=params.Path(file_okay=False),
              help="Folder for teacher embeddings/heads (default OUT/teacher_cache); share it across runs.")
@train_options
@click.pass_context
def distill(ctx: click.Context, teacher, teacher_model, student, method, kd_opt, teacher_head, head_epochs,
            teacher_fp16, teacher_cache, **options) -> None:
    """Distil a frozen teacher into a student: ArcFace + weighted KD methods, on `edgekd train`'s loop
    (checkpoints, --resume, --init, AMP, torchrun)."""
    import os

    from edgekd.distill import run_distillation

    cfg = config_from_options(ctx, options)
    if student:
        cfg.model = student
    s = run_distillation(cfg, teacher, teacher_model, method, kd_opt, teacher_head, teacher_fp16, teacher_cache,
                         head_epochs)
    if os.environ.get("RANK", "0") == "0":
        acc = f", verification {s['accuracy_mean']:.4f}" if s["accuracy_mean"] is not None else ""
        click.echo(f"{s['checkpoint']}: {s['method']}, {s['steps']} steps, loss {s['final_loss']:.4f}{acc}")
        click.echo(f"{s['convergence_note']}" if s["converged"] else f"WARNING: {s['convergence_note']}")
