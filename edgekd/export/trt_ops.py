"""Will TensorRT's ONNX parser take this graph? Answered from the file alone, before any engine build is tried.

Data transcribed from onnx/onnx-tensorrt `docs/operators.md` at commit 96e7811 (2024-06-17; "TensorRT 10.0
supports operators in the inclusive range of opset 9 to opset 20"), read 2026-11-26 via the project's code search.
Only the op names marked "Y" are kept, plus the one restriction that bites exported Q/DQ models:
QuantizeLinear/DequantizeLinear zero points must be 0 (symmetric INT8).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

SOURCE = "onnx/onnx-tensorrt docs/operators.md @96e7811 (2024-06-17, TensorRT 10.0)"
OPSET_RANGE = (9, 20)
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


def check_trt_ops(model: onnx.ModelProto) -> dict:
    """{opset, unsupported: {op: count}, problems: [str], ok} for the default-domain graph."""
    problems = []
    opset = _opset(model)
    if not OPSET_RANGE[0] <= opset <= OPSET_RANGE[1]:
        problems.append(f"opset {opset} outside TensorRT's parser range {OPSET_RANGE[0]}-{OPSET_RANGE[1]}")
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
    return {"source": SOURCE, "opset": opset, "unsupported": unsupported, "problems": problems, "ok": not problems}
