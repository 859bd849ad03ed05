"""`edgekd qat`: teacher-guided quantization-aware training -> Q/DQ INT8 ONNX (thin wrapper over edgekd.export.qat)."""

import click

from edgekd.artifacts import GATED, Variant, onnx_path
from edgekd.cli import params
from edgekd.cli.app import cli


@cli.command("qat")
@click.option("--weights", type=params.Path(exists=True, dir_okay=False), help="Student checkpoint (default: the model's shared pretrained file).")
@click.option("--model", help="Registry name (optional when the checkpoint says which model it is).")
@click.option("--data", required=True, help="Training faces, no labels needed: calib/ folder, identity folder, label.txt, "
                                            "RecordIO, LFW pairs.txt, insightface .bin or synthetic:AxB.")
@click.option("--folds", type=params.Folds(), help="pairs.txt/.bin: draw only from these folds, e.g. 1-5.")
@click.option("--n", default=512, show_default=True, type=params.COUNT, help="Faces to draw from --data (unless it is a calib/ folder).")
@click.option("--out", required=True, type=params.Path(dir_okay=False), help="Q/DQ INT8 ONNX to write.")
@click.option("--steps", default=60, show_default=True, type=params.COUNT, help="Training steps (CPU: keep it small).")
@click.option("--seed", default=0, show_default=True)
@click.option("--teacher", type=params.Path(exists=True, dir_okay=False), help="Teacher checkpoint (default: the FP32 model itself).")
@click.option("--batch-size", default=32, show_default=True, type=params.BATCH)
@click.option("--lr", default=2e-5, show_default=True, type=float)
@click.option("--float-layers-from", type=params.Path(exists=True, dir_okay=False),
              help="Keep the float layers (and calibration method) of this gated file, e.g. "
                   f"{onnx_path('NAME', Variant('int8', GATED))}.")
@click.option("--gate-data", type=params.Path(exists=True), help="Measure and store thresholds on these identities (as export).")
@click.option("--gate-folds", type=params.Folds("--gate-folds"), help="LFW folds whose identities form the gate data, e.g. 1-5.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def qat_command(weights, model, data, folds, n, out, steps, seed, teacher, batch_size, lr, float_layers_from, gate_data,
                gate_folds, quiet):
    """Quantization-aware training against a teacher's embeddings; writes a Q/DQ ONNX with zero zero-points."""
    from edgekd.data.folds import parse_folds
    from edgekd.export.qat import run_qat

    run_qat(weights=weights, data=data, out=out, model=model, steps=steps, seed=seed, teacher=teacher,
            batch_size=batch_size, lr=lr, n=n, folds=parse_folds(folds), float_layers_from=float_layers_from,
            gate_data=gate_data, gate_folds=parse_folds(gate_folds, "--gate-folds"), log=click.echo, progress=not quiet)
