"""Teacher-guided quantization-aware training: `edgekd qat --weights W --data D --out M.onnx`.

The student trains under fake quantization that matches the Q/DQ file `edgekd export` writes for TensorRT:
BatchNorm folded into the convs (as the exporter and ONNX Runtime's pre-processing fold it), symmetric per-channel
INT8 weights (scale max|w|/127, as onnxruntime.quantization computes it), symmetric per-tensor INT8 activations at
every quantized conv's input (TensorRT's placement; ranges: the calibration method's, computed by the same
`Int8Quantizer` on the FP32 model), and the same float layers (first conv, embedding tail, plus the float layers of
a gated file). The loss is the cosine distance between the student's embedding and the teacher's (the FP32 model
itself, or any `--teacher`), so no labels are needed.
The trained float weights are then quantized by the very same onnxruntime.quantization path as the PTQ files
(`Int8Quantizer`), giving a Q/DQ ONNX with zero zero-points.

Why not a QAT library: torch 2.14 no longer ships torch.ao's pt2e QAT (it moved to torchao, not a dependency
here), and NVIDIA ModelOpt would add a heavy dependency whose ONNX export path is its own; torch's built-in
straight-through fake-quant ops (torch.fake_quantize_per_channel_affine / per_tensor_affine) plus ORT's quantizer
keep the training numerics and the shipped file on one definition of the quantization.
"""

from __future__ import annotations

import copy
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.export import DEFAULT_METHOD, DEFAULT_OPSET
from edgekd.export.thresholds import GATE_IMAGES

CALIB_FACES = 256  # activation ranges come from the first 256 training faces (ORT's histogram calibrators hold
# every activation of every face in memory: ~20 MB per face for a MobileFaceNet)
QMAX = 127  # symmetric INT8: [-127, 127], zero point 0 (ORT's symmetric range for weights and activations)


def _fold_bn(model):
    """fx-traced copy with every Conv2d -> BatchNorm2d pair folded; returns (graph module, {conv: bn})."""
    import torch.fx
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    gm = torch.fx.symbolic_trace(copy.deepcopy(model).eval())
    modules = dict(gm.named_modules())
    pairs = {}
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        src = node.args[0]
        if getattr(src, "op", None) == "call_module" and isinstance(modules.get(src.target), nn.Conv2d) \
                and len(src.users) == 1:
            fused = fuse_conv_bn_eval(modules[src.target], modules[node.target])
            parent, _, attr = src.target.rpartition(".")
            setattr(gm.get_submodule(parent) if parent else gm, attr, fused)
            node.replace_all_uses_with(src)
            gm.graph.erase_node(node)
            pairs[src.target] = node.target
    gm.graph.lint()
    gm.recompile()
    gm.delete_all_unused_submodules()  # the folded BatchNorms: their parameters must not be trained or copied back
    return gm, pairs


def _weighted_modules(gm) -> list[str]:
    """Conv/Linear module names in execution order (the order of the ONNX graph's Conv/Gemm nodes)."""
    from torch import nn

    mods = dict(gm.named_modules())
    return [n.target for n in gm.graph.nodes if n.op == "call_module" and isinstance(mods[n.target], (nn.Conv2d,
                                                                                                     nn.Linear))]


def _onnx_to_modules(quantizer, gm) -> dict[str, str]:
    """ONNX weighted node name -> module name, matched in order and checked by weight shape."""
    from onnx import numpy_helper

    inits = {i.name: i for i in quantizer.model.graph.initializer}
    nodes = [n for n in quantizer.model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    names = _weighted_modules(gm)
    if len(nodes) != len(names):
        raise EdgekdError(f"QAT: the ONNX graph has {len(nodes)} weighted nodes, the model {len(names)} "
                          "conv/linear layers; cannot match the exported float layers")
    out = {}
    for n, name in zip(nodes, names):
        w = inits.get(n.input[1])
        shape = tuple(numpy_helper.to_array(w).shape) if w is not None else None
        mshape = tuple(gm.get_submodule(name).weight.shape)
        if shape is not None and sorted(shape) != sorted(mshape):
            raise EdgekdError(f"QAT: ONNX node {n.name} weight {shape} does not match layer {name} {mshape}")
        out[n.name] = name
    return out


class _WeightFQ:
    """Parametrization: per-output-channel symmetric INT8 fake quantization of a weight (straight-through)."""

    @staticmethod
    def module():
        import torch
        from torch import nn

        class WeightFQ(nn.Module):
            def forward(self, w):
                amax = w.detach().abs().flatten(1).amax(1).clamp_min(1e-12)
                scale = (amax / QMAX).float()
                return torch.fake_quantize_per_channel_affine(w, scale, torch.zeros_like(scale, dtype=torch.int32),
                                                              0, -QMAX, QMAX)

        return WeightFQ()


def _act_fq(x, amax: float):
    import torch

    return torch.fake_quantize_per_tensor_affine(x, max(amax, 1e-12) / QMAX, 0, -QMAX, QMAX)


def _attach_fake_quant(gm, amax_in: dict[str, float]) -> None:
    """Fake-quantize each named layer's weight (per channel) and input (per tensor, its calibrated range)."""
    from torch.nn.utils import parametrize

    for n, amax in amax_in.items():
        m = gm.get_submodule(n)
        parametrize.register_parametrization(m, "weight", _WeightFQ.module())
        m.register_forward_pre_hook(lambda mod, inp, amax=amax: (_act_fq(inp[0], amax),))


def _write_back(model, gm, pairs: dict) -> None:
    """Trained (folded) weights into the original model; its BatchNorms after folded convs become identities, so
    the exporter produces the same graph (and node names) as for the PTQ files."""
    import torch
    from torch import nn
    from torch.nn.utils import parametrize

    for name, m in gm.named_modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
    with torch.no_grad():
        for conv_name, bn_name in pairs.items():
            src, dst, bn = gm.get_submodule(conv_name), model.get_submodule(conv_name), model.get_submodule(bn_name)
            dst.weight.copy_(src.weight)
            dst.bias = nn.Parameter(src.bias.detach().clone())
            bn.weight.fill_(1.0)
            bn.bias.zero_()
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
        folded = {f"{c}.{p}" for c in pairs for p in ("weight", "bias")}
        for name, p in gm.named_parameters():
            if name not in folded:
                model.get_parameter(name).copy_(p)


def open_training_faces(data, preprocess, folds, n: int, seed: int, tmp: Path):
    """A CalibSet of preprocessed faces from any source edgekd reads (a calib/ folder as is; else drawn with
    `make_calib`: identity folder, label.txt, RecordIO, pairs.txt, insightface .bin, synthetic:AxB)."""
    from edgekd.export.calib import make_calib, open_calib

    if (Path(str(data)) / "manifest.json").is_file():
        return open_calib(data, preprocess)
    try:
        make_calib(str(data), tmp / "faces", n=n, seed=seed, preprocess=preprocess, folds=folds, progress=False)
    except EdgekdError as e:  # name the user's --data, not the temporary set drawn from it
        raise EdgekdError(str(e).replace(str(tmp / "faces"), f"--data {data}")) from None
    return open_calib(tmp / "faces", preprocess)


def fake_quantized(student, faces, meta: dict, float_layers=(), method: str = DEFAULT_METHOD):
    """BN-folded copy of `student` under the fake quantization of the Q/DQ file `Int8Quantizer` would write for it:
    returns (graph module, conv->BN pairs folded, float module names, fake-quantized module names)."""
    from edgekd.export.int8 import Int8Quantizer
    from edgekd.export.onnx_export import export_onnx

    with tempfile.TemporaryDirectory(prefix="edgekd-qat-") as tmpdir:
        fp32 = Path(tmpdir) / "fp32.onnx"
        export_onnx(student, fp32, meta, student.preprocess.input_size, DEFAULT_OPSET, True)
        gm, pairs = _fold_bn(student)
        with Int8Quantizer(fp32, faces, limit=CALIB_FACES) as q:
            node_to_module = _onnx_to_modules(q, gm)
            floating = {node_to_module[n] for n in [*q.default_float, *float_layers] if n in node_to_module}
            amax = q.input_amax(method)
    names = [m for m in _weighted_modules(gm) if m not in floating]
    _attach_fake_quant(gm, {node_to_module[n]: a for n, a in amax.items() if node_to_module[n] in names})
    return gm, pairs, floating, names


def train_qat(student, teacher, faces, out, meta: dict, steps: int = 60, seed: int = 0, batch_size: int = 32,
              lr: float = 2e-5, float_layers=(), method: str = DEFAULT_METHOD, progress: bool = True) -> dict:
    """QAT of `student` (nn.Module with .preprocess) against `teacher` on a CalibSet; writes the Q/DQ ONNX `out`."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from edgekd.export.int8 import Int8Quantizer
    from edgekd.export.onnx_export import export_onnx

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    pre = student.preprocess
    teacher.eval().requires_grad_(False)
    x_all = np.concatenate(list(faces.batches(256)))
    with tempfile.TemporaryDirectory(prefix="edgekd-qat-") as tmpdir:
        fp32 = Path(tmpdir) / "fp32.onnx"
        gm, pairs, floating, names = fake_quantized(student, faces, meta, float_layers, method)
        gm.eval()  # frozen BN statistics (folded anyway) — gradients still flow
        opt = torch.optim.Adam([p for p in gm.parameters() if p.requires_grad], lr=lr)
        warm = max(1, steps // 4)  # Adam's first updates are full-size whatever the gradient: ramp up, then decay
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / warm) * 0.5 * (
            1 + np.cos(np.pi * max(0, i - warm) / max(1, steps - warm))))
        losses = []
        for _ in tqdm(range(steps), desc="qat", unit="step", disable=not progress):
            idx = rng.choice(len(x_all), min(batch_size, len(x_all)), replace=False)
            x = torch.from_numpy(x_all[idx])
            flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            with torch.no_grad():
                t = F.normalize(teacher(x), dim=1)
            loss = (1 - (F.normalize(gm(x), dim=1) * t).sum(1)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            if not np.isfinite(losses[-1]):
                raise EdgekdError(f"QAT loss became {losses[-1]} at step {len(losses)}; lower --lr")
        _write_back(student, gm, pairs)
        student.eval()
        export_onnx(student, fp32, meta, pre.input_size, DEFAULT_OPSET, True)
        with Int8Quantizer(fp32, faces, limit=CALIB_FACES) as q:
            rec = q.write(out, method, list(float_layers), "qdq-s8s8",
                          extra_meta={"qat": json.dumps({"steps": steps, "seed": seed, "lr": lr})})
    k = max(1, min(5, steps // 4))
    return {"steps": steps, "seed": seed, "lr": lr, "batch_size": batch_size, "calib_method": method,
            "float_layers": list(float_layers), "float_modules": sorted(floating), "fake_quantized_layers": len(names),
            "loss_first": float(np.mean(losses[:k])), "loss_last": float(np.mean(losses[-k:])), "loss_curve": losses,
            "int8": rec}


def run_qat(weights=None, data=None, out=None, model: str | None = None, steps: int = 60, seed: int = 0,
            teacher=None, batch_size: int = 32, lr: float = 2e-5, n: int = 512, folds=None, float_layers_from=None,
            method: str | None = None, gate_data=None, gate_folds=None, gate_limit: int | None = GATE_IMAGES,
            log=print, progress: bool = True) -> dict:
    """`edgekd qat`: load the model (and teacher), draw the faces, train, write the Q/DQ ONNX `out` (+ thresholds
    with `gate_data`) and `<stem>.qat.json`; returns the report."""
    from edgekd import __version__
    from edgekd.export import graph
    from edgekd.export.int8 import zero_points_zero
    from edgekd.io import check_writable_dir, write_json_atomic
    from edgekd.models import load_model

    if data is None or out is None:
        raise EdgekdError("qat needs --data and --out")
    if steps < 1:
        raise EdgekdError(f"--steps must be >= 1, got {steps}")
    out = Path(out)
    check_writable_dir(out.parent)  # before training; creates nothing (the writes are atomic and make the folder)
    student, info = load_model(weights, model)
    pre = student.preprocess
    if teacher is not None:
        teach, tinfo = load_model(teacher)
        if teach.preprocess != pre:
            raise EdgekdError(f"{teacher}: teacher preprocessing {teach.preprocess} differs from the student's {pre}")
        teacher_desc = str(tinfo.weights)
    else:
        teach, teacher_desc = copy.deepcopy(student), "the FP32 model itself"
    float_layers, gated_method = [], None
    if float_layers_from is not None:
        gmeta = graph.read_metadata(graph.load(float_layers_from))
        float_layers = json.loads(gmeta.get("float_layers", "[]"))
        gated_method = gmeta.get("calib_method")
    gate = None
    if gate_data is not None:  # loaded before training, so a bad path fails first
        from edgekd.export.thresholds import load_gate_data

        gate = load_gate_data(gate_data, pre, gate_folds, limit=gate_limit)
    meta = {"model": info.name, "method": info.meta.get("method", "pretrained"), "precision": "fp32",
            "embedding_size": info.embedding_size, "preprocess": pre.to_dict(),
            "source_sha256": info.weights_sha256, "version": __version__}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgekd-qat-data-") as tmp:
        faces = open_training_faces(data, pre, folds, n, seed, Path(tmp))
        trained = train_qat(student, teach, faces, out, meta, steps, seed, batch_size, lr, float_layers,
                            method or gated_method or DEFAULT_METHOD, progress)
    report = {"kind": "qat", "path": str(out), "model": info.name, "weights": str(info.weights),
              "weights_sha256": info.weights_sha256, "teacher": teacher_desc, "data": str(data),
              "faces": {"count": faces.count, "sha256": faces.sha256}, **trained,
              "zero_points_zero": zero_points_zero(graph.load(out)), "seconds": round(time.perf_counter() - start, 1),
              "edgekd_version": __version__}
    if gate is not None:
        from edgekd.export.thresholds import ship_thresholds

        report["thresholds"] = ship_thresholds({"qat": out}, gate, log=log)["qat"]
    write_json_atomic(Path(f"{out.with_suffix('')}.qat.json"), report)
    log(f"{out}: QAT {steps} steps, loss {report['loss_first']:.5f} -> {report['loss_last']:.5f}, "
        f"zero points all 0: {report['zero_points_zero']}")
    return report
