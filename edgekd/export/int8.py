"""FP32 ONNX -> INT8 Q/DQ ONNX by static quantization over a calib/ set (onnxruntime.quantization).

Symmetric signed INT8 for weights (per channel) and activations, because TensorRT's parser accepts only zero
zero-points; the same file then runs in onnxruntime here and feeds a strongly typed TensorRT INT8 build.
The first conv (raw pixels) and the embedding tail may stay in float: depthwise-heavy MobileFaceNets are known
to lose accuracy under naive INT8, and those are the usual culprits.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from edgekd.export.calib import CalibSet
from edgekd.errors import EdgekdError
from edgekd.export import graph

METHODS = ("minmax", "entropy", "percentile")
# onnxruntime's Entropy default (128 bins, 128 quantized bins) leaves one candidate threshold, i.e. min-max; these
# give a real KL search (512 bins over [-max|x|, max|x|], 128 quantized bins; 2048 bins as in TensorRT took 356 s
# for mobilefacenet in ORT's Python search on the shared CPU). quantize_static cannot pass bin counts, so ranges are
# computed here and handed over as a calibration cache.
CALIB_OPTIONS = {
    "minmax": {"symmetric": True},
    "entropy": {"symmetric": True, "num_bins": 512, "num_quantized_bins": 128},
    "percentile": {"symmetric": True, "num_bins": 2048, "percentile": 99.999},
}


class CalibReader:
    """onnxruntime CalibrationDataReader over a CalibSet (the one calib/ reader, shared with TensorRT)."""

    def __init__(self, calib: CalibSet, input_name: str, batch_size: int = 32, limit: int | None = None):
        self._it = ({input_name: b} for b in calib.batches(batch_size, limit))

    def get_next(self):
        return next(self._it, None)


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike, calib: CalibSet, method: str = "minmax",
                  keep_first_conv: bool = True, keep_tail: bool = True, per_channel: bool = True,
                  limit: int | None = None, preprocess_graph: bool = True) -> dict:
    """Write the Q/DQ model to `dst` atomically; returns the settings and excluded nodes for the report."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, create_calibrator, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry
    from onnxruntime.quantization.shape_inference import quant_pre_process

    CALIB = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
             "percentile": CalibrationMethod.Percentile}
    if method not in METHODS:
        raise EdgekdError(f"unknown calibration method {method!r} (choose from {', '.join(METHODS)})")
    model = graph.ensure_node_names(graph.load(src))
    meta = graph.read_metadata(model)
    name, _ = graph.input_spec(model)
    with tempfile.TemporaryDirectory(prefix="edgekd-int8-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        graph.save(model, fp32)
        if preprocess_graph:  # shape inference + ORT graph optimisation (fuses what quantization would split)
            quant_pre_process(str(fp32), str(fp32), skip_symbolic_shape=True)
            model = graph.ensure_node_names(graph.load(fp32))
            graph.save(model, fp32)
        exclude = [graph.first_conv(model)] if keep_first_conv else []
        exclude = [n for n in exclude + (graph.tail_nodes(model) if keep_tail else []) if n]
        cache = Path(tmp) / "ranges.json"
        calibrator = create_calibrator(fp32, sorted(set(QLinearOpsRegistry) | set(QDQRegistry)), augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=CALIB[method], extra_options=CALIB_OPTIONS[method])
        calibrator.collect_data(CalibReader(calib, name, limit=limit))
        save_tensors_data(calibrator.compute_data(), cache)
        out = Path(tmp) / "int8.onnx"
        quantize_static(
            str(fp32), str(out), quant_format=QuantFormat.QDQ, calibration_cache_path=cache,
            calibrate_method=CALIB[method], per_channel=per_channel, activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8, nodes_to_exclude=exclude,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
        )
        q = graph.load(out)
    graph.set_metadata(q, {**meta, "precision": "int8", "calib": calib.sha256, "calib_method": method})
    graph.save(q, dst)
    return {"path": str(dst), "precision": "int8", "calib_method": method, "calib": str(calib.root),
            "calib_sha256": calib.sha256, "calib_count": min(limit or calib.count, calib.count),
            "per_channel": per_channel, "symmetric": True, "pre_processed": preprocess_graph,
            "excluded_nodes": exclude, "ops": graph.op_counts(q)}
