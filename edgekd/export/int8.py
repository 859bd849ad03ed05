"""FP32 ONNX -> INT8 ONNX by static quantization over a calib/ set (onnxruntime.quantization).

Two targets, two forms:
- TensorRT ("S8S8" Q/DQ): symmetric signed INT8 for weights (per channel) and activations, because TensorRT's
  parser accepts only zero zero-points; the same file runs in onnxruntime and feeds a strongly typed TensorRT build.
- ONNX Runtime on x86 (`CPU_FORMS`): unsigned asymmetric activations with signed weights (U8S8), the form ORT's
  x86 kernels are fast for (the S8S8 Q/DQ file runs slower than FP32 there); export picks the fastest form that
  passes the gate on the machine it runs on (gate.choose_cpu_form); see benchmarks/int8_fidelity.py.
The first conv (raw pixels) and the embedding tail may stay in float: depthwise-heavy MobileFaceNets are known
to lose accuracy under naive INT8, and those are the usual culprits. More float layers come from the accuracy gate.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.export import METHODS, graph
from edgekd.export.calib import CalibSet

# onnxruntime's Entropy default (128 bins, 128 quantized bins) leaves one candidate threshold, i.e. min-max; these
# give a real KL search (512 bins over [-max|x|, max|x|], 128 quantized bins; 2048 bins as in TensorRT took 356 s
# for mobilefacenet in ORT's Python search on the shared CPU). quantize_static cannot pass bin counts, so ranges are
# computed here and handed over as a calibration cache.
CALIB_OPTIONS = {
    "minmax": {"symmetric": True},
    "entropy": {"symmetric": True, "num_bins": 512, "num_quantized_bins": 128},
    "percentile": {"symmetric": True, "num_bins": 2048, "percentile": 99.999},
}
WEIGHTED_OPS = ("Conv", "Gemm", "MatMul", "ConvTranspose")
# form -> (quant_format, activation type, symmetric activations, reduce_range, weighted-op inputs only)
# TensorRT's Q/DQ placement recommendation (and NVIDIA ModelOpt's default) is to quantize the inputs of weighted ops
# and not their outputs. onnxruntime's default also quantizes every Conv output and, with symmetric activations, keeps
# a Q/DQ pair before each ReLU6 over the pre-activation range; on the foamliu MobileFaceNet that placement gave min
# cosine 0.953 vs 0.986 (minmax, benchmarks/results/int8_fidelity.md). ORT's CPU forms need quantized outputs to chain
# integer kernels.
FORMS = {
    "qdq-s8s8": ("QDQ", "QInt8", True, False, True),  # TensorRT
    "qdq-u8s8": ("QDQ", "QUInt8", False, False, False),
    "qop-u8s8": ("QOperator", "QUInt8", False, False, False),
    "qop-u8s8-rr": ("QOperator", "QUInt8", False, True, False),
}
CPU_FORMS = ("qop-u8s8", "qdq-u8s8", "qop-u8s8-rr")
# Without gate data to choose by: reduce_range (7-bit weights) keeps U8S8 kernels on x86 CPUs without VNNI from
# saturating their 16-bit intermediates, at the cost of one bit of weight precision.
CPU_FORM = "qop-u8s8-rr"


class CalibReader:
    """onnxruntime CalibrationDataReader over a CalibSet (the one calib/ reader, shared with TensorRT)."""

    def __init__(self, calib: CalibSet, input_name: str, batch_size: int = 32, limit: int | None = None):
        self._it = ({input_name: b} for b in calib.batches(batch_size, limit))

    def get_next(self):
        return next(self._it, None)

    def __iter__(self):  # qdq_loss_debug.collect_activations iterates the reader
        return self._it


class Int8Quantizer:
    """One FP32 model prepared once (ORT pre-processing) and calibrated once per method, then quantized as often as
    needed with different float layers or forms: the accuracy gate tries many variants of one model.

    Use as a context manager (it owns a temporary folder)."""

    def __init__(self, src: str | os.PathLike, calib: CalibSet, limit: int | None = None, preprocess_graph: bool = True,
                 keep_first_conv: bool = True, keep_tail: bool = True):
        self.src, self.calib, self.limit, self.preprocess_graph = Path(src), calib, limit, preprocess_graph
        self._tmp = tempfile.TemporaryDirectory(prefix="edgekd-int8-")
        self.tmp = Path(self._tmp.name)
        model = graph.ensure_node_names(graph.load(src))
        self.meta = graph.read_metadata(model)
        self.input_name, _ = graph.input_spec(model)
        self.fp32 = self.tmp / "fp32.onnx"
        graph.save(model, self.fp32)
        if preprocess_graph:  # shape inference + ORT graph optimisation (fuses what quantization would split)
            from onnxruntime.quantization.shape_inference import quant_pre_process

            quant_pre_process(str(self.fp32), str(self.fp32), skip_symbolic_shape=True)
            model = graph.ensure_node_names(graph.load(self.fp32))
            graph.save(model, self.fp32)
        self.model = model
        self.default_float = [n for n in ([graph.first_conv(model)] if keep_first_conv else [])
                              + (graph.tail_nodes(model) if keep_tail else []) if n]
        self._ranges: dict[tuple[str, bool], Path] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._tmp.cleanup()

    @property
    def count(self) -> int:
        return min(self.limit or self.calib.count, self.calib.count)

    def quantizable_nodes(self) -> list[str]:
        """Nodes the quantizer would turn into INT8 (weighted ops), in graph order."""
        return [n.name for n in self.model.graph.node if n.op_type in WEIGHTED_OPS]

    def ranges(self, method: str, symmetric: bool = True) -> Path:
        """Activation ranges of `method` as an ORT calibration cache (computed once per method and symmetry)."""
        from onnxruntime.quantization import CalibrationMethod, create_calibrator
        from onnxruntime.quantization.calibrate import save_tensors_data
        from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

        if method not in METHODS:
            raise EdgekdError(f"unknown calibration method {method!r} (choose from {', '.join(METHODS)})")
        key = (method, symmetric)
        if key not in self._ranges:
            calib_method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                            "percentile": CalibrationMethod.Percentile}[method]
            aug = self.tmp / f"augmented-{method}-{int(symmetric)}.onnx"
            calibrator = create_calibrator(self.fp32, sorted(set(QLinearOpsRegistry) | set(QDQRegistry)),
                                           augmented_model_path=str(aug), calibrate_method=calib_method,
                                           extra_options={**CALIB_OPTIONS[method], "symmetric": symmetric})
            calibrator.collect_data(CalibReader(self.calib, self.input_name, limit=self.limit))
            path = self.tmp / f"ranges-{method}-{int(symmetric)}.json"
            save_tensors_data(calibrator.compute_data(), path)
            self._ranges[key] = path
        return self._ranges[key]

    def input_amax(self, method: str) -> dict[str, float]:
        """Weighted node name -> max |input| its activation Q/DQ covers (symmetric ranges of `method`): what
        fake quantization must use to match the written file."""
        from onnxruntime.quantization.calibrate import load_tensors_data

        ranges = load_tensors_data(self.ranges(method, True))
        out = {}
        for n in self.model.graph.node:
            if n.op_type in WEIGHTED_OPS and n.input[0] in ranges:
                r = ranges[n.input[0]].range_value
                out[n.name] = float(np.max(np.abs(np.asarray(r, dtype=np.float64))))
        return out

    def write(self, dst: str | os.PathLike, method: str = "minmax", float_layers=(), form: str = "qdq-s8s8",
              per_channel: bool = True, extra_meta: dict | None = None) -> dict:
        """Quantize with `method`'s ranges, keeping the default float nodes plus `float_layers`; write `dst`
        atomically; returns the settings for the report."""
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        fmt, act, sym, reduce_range, inputs_only = FORMS[form]
        unknown = set(float_layers) - {n.name for n in self.model.graph.node}
        if unknown:
            raise EdgekdError(f"{self.src}: float layers not in the graph: {', '.join(sorted(unknown))}")
        exclude = list(dict.fromkeys([*self.default_float, *float_layers]))
        out = self.tmp / "int8.onnx"
        quantize_static(
            str(self.fp32), str(out), quant_format=getattr(QuantFormat, fmt),
            calibration_cache_path=self.ranges(method, sym), per_channel=per_channel,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                              "percentile": CalibrationMethod.Percentile}[method],
            activation_type=getattr(QuantType, act), weight_type=QuantType.QInt8, nodes_to_exclude=exclude,
            reduce_range=reduce_range, op_types_to_quantize=list(WEIGHTED_OPS) if inputs_only else None,
            extra_options={"ActivationSymmetric": sym, "WeightSymmetric": True,
                           **({"OpTypesToExcludeOutputQuantization": list(WEIGHTED_OPS)} if inputs_only else {})},
        )
        q = graph.load(out)
        self._last = {"method": method, "form": form, "per_channel": per_channel, "exclude": exclude,
                      "float_layers": list(float_layers)}
        meta = {**self.meta, "precision": "int8", "calib": self.calib.sha256, "calib_method": method,
                "int8_form": form, "float_layers": list(float_layers), **(extra_meta or {})}
        graph.set_metadata(q, meta)
        graph.save(q, dst)
        return self.write_record(dst)

    def write_record(self, dst) -> dict:
        """The report entry of the file last written (by `write`) to `dst`."""
        last = self._last
        _, _, sym, reduce_range, inputs_only = FORMS[last["form"]]
        return {"path": str(dst), "precision": "int8", "calib_method": last["method"], "calib": str(self.calib.root),
                "calib_sha256": self.calib.sha256, "calib_count": self.count, "form": last["form"],
                "per_channel": last["per_channel"], "symmetric": sym, "reduce_range": reduce_range,
                "placement": "weighted-op inputs" if inputs_only else "onnxruntime default (inputs and outputs)",
                "pre_processed": self.preprocess_graph, "excluded_nodes": last["exclude"],
                "float_layers": last["float_layers"], "ops": graph.op_counts(graph.load(dst))}


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike, calib: CalibSet, method: str = "minmax",
                  keep_first_conv: bool = True, keep_tail: bool = True, per_channel: bool = True,
                  limit: int | None = None, preprocess_graph: bool = True, float_layers=(),
                  form: str = "qdq-s8s8") -> dict:
    """Write the INT8 model to `dst` atomically; returns the settings and excluded nodes for the report."""
    if method not in METHODS:
        raise EdgekdError(f"unknown calibration method {method!r} (choose from {', '.join(METHODS)})")
    with Int8Quantizer(src, calib, limit, preprocess_graph, keep_first_conv, keep_tail) as q:
        return q.write(dst, method, float_layers, form, per_channel)


def zero_points_zero(model) -> bool:
    """True when every QuantizeLinear / DequantizeLinear zero point is 0 (what TensorRT's parser requires)."""
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2:
            zp = inits.get(n.input[2])
            if zp is None or zp.any():
                return False
    return True
