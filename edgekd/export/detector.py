"""`edgekd export --detector mtcnn --out DIR`: MTCNN's three networks as ONNX (FP32, FP16), parity-checked against
PyTorch on real photos, and optionally TensorRT engines with sidecars.

- P-Net: dynamic batch, height and width (one pyramid level per call); R-Net and O-Net: dynamic batch.
- PReLU slopes are stored at the rank of their input ((1, C, 1, 1) after a conv, (1, C) after a dense layer): ONNX's
  unidirectional broadcast accepts the exporter's (C, 1, 1) / (C,), but TensorRT's PReLU wants equal ranks.
- Metadata (`edgekd.kind` = detector, `edgekd.detector`, `edgekd.network`, `edgekd.outputs`) lets every opener refuse
  a file that is not this network (edgekd.detect.open).
- Parity: the whole numpy pipeline (edgekd.detect.mtcnn) over ONNX Runtime against the same pipeline over PyTorch on
  real photos (the shared LFW raw photos, or a folder given); FP32 must give the same faces within `PARITY_PX`.
  Without real photos the check is per network on random inputs, and the report says so.
- Engines: P-Net's profile covers the pyramid of the chosen frame size in either orientation (min 12x12, opt the
  first level, max a square of its long side); R-Net and O-Net get a batch profile. edgekd.detect.open splits larger
  batches at the engine's maximum.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from edgekd.artifacts import Variant, detector_stem, engine_path, export_report_path, onnx_path
from edgekd.detect import DETECTORS
from edgekd.detect.mtcnn import CROP, NETWORKS, Mtcnn, MtcnnSettings, level_size, pyramid
from edgekd.errors import EdgekdError
from edgekd.export import DEFAULT_OPSET, graph
from edgekd.io import write_json_atomic

PARITY_PX = 0.5      # FP32: boxes and landmarks of ONNX Runtime vs PyTorch, max abs difference in pixels
PARITY_PHOTOS = 24   # real photos in the parity check
SOURCE = "facenet-pytorch 2.6.0 (MIT licence), models/data/{pnet,rnet,onet}.pt"
INPUT = "input"


def _export_network(net, name: str, opset: int) -> onnx.ModelProto:
    import torch

    probe = (1, 3, 48, 64) if name == "pnet" else (2, 3, CROP[name], CROP[name])
    axes = {INPUT: {0: "batch", 2: "height", 3: "width"} if name == "pnet" else {0: "batch"}}
    axes.update({o: {0: "batch"} for o in net.outputs})
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice (see edgekd.export.onnx_export)
        torch.onnx.export(net.eval(), (torch.zeros(probe),), buf, dynamo=False, opset_version=opset,
                          do_constant_folding=True, input_names=[INPUT], output_names=list(net.outputs),
                          dynamic_axes=axes)
    return onnx.load_from_string(buf.getvalue())


def prelu_slopes_full_rank(model: onnx.ModelProto) -> int:
    """Reshape every PRelu slope initializer to its input's rank with C on axis 1; returns how many changed."""
    inferred = onnx.shape_inference.infer_shapes(model)
    ranks = {v.name: len(v.type.tensor_type.shape.dim)
             for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    inits = {i.name: i for i in model.graph.initializer}
    changed = 0
    for node in model.graph.node:
        if node.op_type != "PRelu" or node.input[1] not in inits:
            continue
        rank = ranks.get(node.input[0])
        if not rank:
            raise EdgekdError(f"PRelu {node.name or node.input[0]}: input rank unknown after shape inference")
        slope = numpy_helper.to_array(inits[node.input[1]])
        want = (1, slope.size) + (1,) * (rank - 2)
        if slope.shape != want:
            inits[node.input[1]].CopyFrom(numpy_helper.from_array(slope.reshape(want), node.input[1]))
            changed += 1
    return changed


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def parity_photos(folder: str | Path | None = None, n: int = PARITY_PHOTOS) -> tuple[list[np.ndarray], str]:
    """Up to `n` real photos (uint8 RGB) for the parity check and where they came from; ([], reason) if none."""
    from edgekd.data.datasets import IMAGE_EXTS
    from edgekd.data.image import decode_image
    from edgekd.paths import shared_path

    root = Path(folder) if folder is not None else shared_path("lfw", "raw_150")
    if root is None or not root.is_dir():
        return [], "no real photos (shared LFW raw_150 absent, no --parity-images)"
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS)
    step = max(1, len(files) // n)
    picked = files[::step][:n]
    if not picked:
        return [], f"no images in {root}"
    return [decode_image(p) for p in picked], f"{len(picked)} photos of {root}"


def _max_px(a, b) -> float:
    """Largest box / landmark difference between two detections of one photo (inf when the counts differ)."""
    if len(a) != len(b):
        return float("inf")
    if not a:
        return 0.0
    boxes = np.abs(np.array([f.box for f in a]) - np.array([f.box for f in b])).max()
    marks = np.abs(np.stack([f.landmarks for f in a]) - np.stack([f.landmarks for f in b])).max()
    return float(max(boxes, marks))


def compare_detections(want: list, got: list) -> dict:
    """Two detectors' faces on the same photos (a list of faces per photo): photos whose face counts differ, and
    the largest box / landmark difference over the others (None when no photo is comparable)."""
    diffs = [_max_px(a, b) for a, b in zip(want, got)]
    finite = [d for d in diffs if np.isfinite(d)]
    return {"count_mismatches": int(sum(not np.isfinite(d) for d in diffs)), "max_px": max(finite) if finite else None}


def _network_parity(torch_nets: dict, onnx_nets: dict, rng) -> dict:
    """Per network: max abs output difference on random normalised inputs (P-Net at two level sizes)."""
    shapes = {"pnet": [(1, 3, 12, 12), (1, 3, 97, 131)], "rnet": [(1, 3, 24, 24), (7, 3, 24, 24)],
              "onet": [(1, 3, 48, 48), (5, 3, 48, 48)]}
    out = {}
    for name in NETWORKS:
        worst = 0.0
        for shape in shapes[name]:
            x = rng.uniform(-1, 1, shape).astype(np.float32)
            for a, b in zip(torch_nets[name](x), onnx_nets[name](x)):
                worst = max(worst, float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max()))
        out[name] = worst
    return out


def check_detector_parity(folder: Path, variant: Variant, torch_nets: dict, photos: list, reference: list,
                          photos_from: str) -> dict:
    """Detections of the exported `variant` vs PyTorch (same numpy pipeline) on `photos`; `reference`: the PyTorch
    path's detections of those photos (computed once for every variant)."""
    from edgekd.detect.open import open_detector

    with open_detector(onnx_path(folder / detector_stem("mtcnn", "pnet"), variant), device="cpu") as deployed:
        nets = _network_parity(torch_nets, deployed.networks, np.random.default_rng(0))
        report = {"variant": variant.tag, "network_max_abs": nets, "photos": len(photos), "photos_from": photos_from}
        if photos:
            report.update(faces_reference=int(sum(len(want) for want in reference)),
                          **compare_detections(reference, [deployed(p) for p in photos]))
    return report


def engine_shapes(name: str, frame_hw: tuple[int, int], batch_profile: tuple[int, int, int],
                  settings: MtcnnSettings) -> dict:
    """The optimization profile of one network's engine (see the module docstring)."""
    if name == "pnet":
        h, w = frame_hw
        scales = pyramid(h, w, settings.min_face, settings.factor)
        if not scales:
            raise EdgekdError(f"frame size {h}x{w} is smaller than P-Net's 12 px window at min face "
                              f"{settings.min_face:g}")
        first = level_size(h, w, scales[0])
        side = max(first)
        return {INPUT: ((1, 3, 12, 12), (1, 3, *first), (1, 3, side, side))}
    lo, opt, hi = batch_profile
    c = CROP[name]
    return {INPUT: ((lo, 3, c, c), (opt, 3, c, c), (hi, 3, c, c))}


def export_detector(detector: str = "mtcnn", out: str | Path = "engines/mtcnn", *, weights: str | Path | None = None,
                    opset: int = DEFAULT_OPSET, fp16: bool = True, parity_images: str | Path | None = None,
                    trt_precision: str | None = None, frame_size: tuple[int, int] = (480, 640),
                    batch_profile: tuple[int, int, int] = (1, 64, 256), workspace_mib: int = 1024, api: str = "auto",
                    settings: MtcnnSettings | None = None) -> dict:
    """Write the three networks' FP32 ONNX files into `out` (+ their FP16 twins, + engines) and the export report
    (names: edgekd.artifacts)."""
    from edgekd.export.fp16 import SENSITIVE_OPS, convert_fp16
    from edgekd.models.mtcnn import load_networks, torch_callables, weights_file

    if detector not in DETECTORS:
        raise EdgekdError(f"unknown detector {detector!r} ({', '.join(DETECTORS)})")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise EdgekdError(f"{out}: a detector is written to a folder, and this is a file")
    out.mkdir(parents=True, exist_ok=True)
    settings = settings or MtcnnSettings()
    nets = load_networks(weights)
    report = {"detector": detector, "source": SOURCE, "opset": opset, "settings": settings.to_json(),
              "networks": {}, "parity": {}}
    for name, net in nets.items():
        proto = _export_network(net, name, opset)
        graph.ensure_node_names(proto)
        slopes = prelu_slopes_full_rank(proto)
        src = weights_file(name, weights)
        graph.set_metadata(proto, {"kind": "detector", "detector": detector, "network": name,
                                   "outputs": ",".join(net.outputs), "precision": "fp32",
                                   "weights_sha256": _sha256(src), "source": SOURCE,
                                   "settings": settings.to_json()})
        try:
            onnx.checker.check_model(proto)
        except onnx.checker.ValidationError as e:
            raise EdgekdError(f"{name}: exported graph fails onnx.checker ({str(e).splitlines()[0][:160]})") from e
        path = graph.save(proto, onnx_path(out / detector_stem(detector, name)))
        entry = {"fp32": str(path), "prelu_slopes_reshaped": slopes, "ops": graph.op_counts(proto)}
        if fp16:
            entry["fp16"] = convert_fp16(path, onnx_path(path, "fp16"), keep_tail=False,
                                         block_ops=SENSITIVE_OPS)["path"]
        report["networks"][name] = entry
    photos, photos_from = parity_photos(parity_images)
    ref = torch_callables(nets)
    detect_ref = Mtcnn(ref)
    reference = [detect_ref(p) for p in photos]  # once, for every variant
    for tag in ("fp32", "fp16") if fp16 else ("fp32",):
        report["parity"][tag] = check_detector_parity(out, Variant(tag), ref, photos, reference, photos_from)
    p = report["parity"]["fp32"]
    if photos and (p["count_mismatches"] or (p["max_px"] or 0) > PARITY_PX):
        raise EdgekdError(f"{out}: ONNX Runtime and PyTorch detections differ (face count differs on "
                          f"{p['count_mismatches']} photo(s), max {p['max_px']} px > {PARITY_PX} px); files kept "
                          "for inspection")
    if max(p["network_max_abs"].values()) > 1e-3:
        raise EdgekdError(f"{out}: ONNX network outputs differ from PyTorch by "
                          f"{max(p['network_max_abs'].values()):.2g} (> 1e-3)")
    if trt_precision:
        report["engines"] = build_detector_engines(out, trt_precision, detector=detector, frame_size=frame_size,
                                                   batch_profile=batch_profile, workspace_mib=workspace_mib,
                                                   api=api, settings=settings)
    write_json_atomic(export_report_path(out / detector), report)
    return report


def build_detector_engines(folder: str | Path, precision: str, *, detector: str = "mtcnn",
                           frame_size: tuple[int, int] = (480, 640), batch_profile: tuple[int, int, int] = (1, 64, 256),
                           workspace_mib: int = 1024, api: str = "auto", settings: MtcnnSettings | None = None,
                           trt=None) -> dict:
    """One engine + sidecar per network (edgekd.artifacts.engine_path) through the generic network build;
    strongly typed TensorRT builds from the graph of that precision, builder-flags ones from FP32."""
    from edgekd.export.tensorrt_build import build_network_engine, choose_api
    from edgekd.runtime.tensorrt import import_tensorrt

    trt = trt or import_tensorrt()
    path_api = choose_api(trt, api)
    if precision == "int8":
        raise EdgekdError("MTCNN engines are fp32 or fp16 (no INT8 Q/DQ detector graph is exported)")
    settings = settings or MtcnnSettings()
    folder = Path(folder)
    built = {}
    for name in NETWORKS:
        stem = folder / detector_stem(detector, name)
        src = onnx_path(stem, precision if path_api == "strongly-typed" else "fp32")
        if not src.is_file():
            raise EdgekdError(f"{src}: no such file (run edgekd export --detector {detector} --out {folder})")
        shapes = engine_shapes(name, frame_size, batch_profile, settings)
        side = build_network_engine(src, engine_path(stem, precision), shapes, precision=precision,
                                    workspace_mib=workspace_mib, timing_cache=folder / ".timing_cache", api=api,
                                    trt=trt)
        built[name] = {"engine": str(engine_path(stem, precision)), "profile": side["profile"],
                       "api_path": side["api_path"], "engine_bytes": side["engine_bytes"]}
    return built


def describe(report: dict) -> str:
    """The lines `edgekd export --detector` prints."""
    lines = []
    for name, e in report["networks"].items():
        lines.append(f"{name}: {e['fp32']}" + (f", {e['fp16']}" if e.get("fp16") else ""))
    for tag, p in report["parity"].items():
        nets = ", ".join(f"{n} {v:.1e}" for n, v in p["network_max_abs"].items())
        line = f"parity {tag} vs PyTorch: networks max |diff| {nets}"
        if p["photos"]:
            px = "n/a" if p["max_px"] is None else f"{p['max_px']:.3f} px"
            line += (f"; {p['photos_from']}: {p['faces_reference']} faces, boxes/landmarks max {px}, "
                     f"face count differs on {p['count_mismatches']}")
        else:
            line += f"; {p['photos_from']}: detection-level parity not checked"
        lines.append(line)
    for name, e in (report.get("engines") or {}).items():
        lines.append(f"engine {name}: {e['engine']} ({e['api_path']}, profile {json.dumps(e['profile'])})")
    return "\n".join(lines)
