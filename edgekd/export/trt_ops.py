"""Will TensorRT's ONNX parser take this graph? Answered from the file alone, before any engine build is tried.

Data transcribed from onnx/onnx-tensorrt `docs/operators.md` at commit 96e7811 (2024-06-17; "TensorRT 10.0
supports operators in the inclusive range of opset 9 to opset 20"), read 2026-11-26 via the project's code search.
Only the op names marked "Y" are kept, plus the one restriction that bites exported Q/DQ models:
QuantizeLinear/DequantizeLinear zero points must be 0 (symmetric INT8).

The opset range depends on the parser's TensorRT version (OPSET_RANGES): 8.6 (JetPack 6.0) "supports operators up
to Opset 17" (NVIDIA/Deep-Learning-Accelerator-SW operators.md; no lower bound given, 9 assumed as for 10.0); 10.0
to 10.14 9..20 (the 10.0 statement; later 10.x parsers may take more, so this errs on the refusing side); 10.15
"9 to opset 24" (docs/operators.md at 10.15); 11.x 9..24 (no 11.x statement found; at least what 10.15 takes).
Without a version (export time, no TensorRT here) a graph must parse on every generation: the 8.6 range.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

SOURCE = "onnx/onnx-tensorrt docs/operators.md @96e7811 (2024-06-17, TensorRT 10.0)"
OPSET_RANGES = (((8, 6), (9, 17)), ((10, 0), (9, 20)), ((10, 15), (9, 24)), ((11, 0), (9, 24)))  # from version on


def opset_range(tensorrt_version: str | None = None) -> tuple[int, int]:
    """The opset range of TensorRT `tensorrt_version`'s ONNX parser; None: the range every generation parses."""
    if tensorrt_version is None:
        return OPSET_RANGES[0][1]
    parts = [int(p) if p.isdigit() else 0 for p in str(tensorrt_version).split(".")[:2]] + [0]
    key = (parts[0], parts[1])
    return next((r for since, r in reversed(OPSET_RANGES) if key >= since), OPSET_RANGES[0][1])
SUPPORTED = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast CastLike Ceil
Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace
DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements
GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample
GroupNormalization GRU HardSigmoid HardSwish Hardmax Identity If ImageScaler InstanceNormalization IsInf
IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool
MatMul Max MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot
Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean
ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round
ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax
Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu
Unsqueeze Upsample Where Xor
""".split())


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def check_trt_ops(model: onnx.ModelProto, tensorrt_version: str | None = None) -> dict:
    """{opset, unsupported: {op: count}, problems: [str], ok} for the default-domain graph, against the parser of
    `tensorrt_version` (None: every supported generation, 8.6 to 11.x)."""
    problems = []
    opset = _opset(model)
    lo, hi = opset_range(tensorrt_version)
    if not lo <= opset <= hi:
        which = f"TensorRT {tensorrt_version}'s" if tensorrt_version else "TensorRT 8.6's (the oldest supported)"
        problems.append(f"opset {opset} outside {which} ONNX parser range {lo}-{hi}")
    unsupported: dict[str, int] = {}
    for n in model.graph.node:
        key = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}"
        if key not in SUPPORTED:
            unsupported[key] = unsupported.get(key, 0) + 1
    if unsupported:
        problems.append("unsupported ops: " + ", ".join(f"{k} x{v}" for k, v in sorted(unsupported.items())))
    inits = {i.name: i for i in model.graph.initializer}
    nonzero = [n.name for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
               and len(n.input) > 2 and n.input[2] in inits and np.any(numpy_helper.to_array(inits[n.input[2]]))]
    if nonzero:
        problems.append(f"{len(nonzero)} Q/DQ nodes with non-zero zero point (TensorRT needs symmetric INT8), "
                        f"e.g. {nonzero[0]}")
    return {"source": SOURCE, "opset": opset, "opset_range": [lo, hi], "tensorrt_version": tensorrt_version, "unsupported": unsupported, "problems": problems, "ok": not problems}
