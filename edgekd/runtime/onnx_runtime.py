"""ONNX Runtime backend (numpy + onnxruntime only; never torch): the deployed ONNX file, measured as shipped.

Preprocessing and identity come from the file's `edgekd.*` metadata_props, written by `edgekd export`.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from edgekd.errors import EdgekdError
from edgekd.preprocess import ARCFACE, Preprocess
from edgekd.runtime.base import Runtime
from edgekd.runtime.onnx_session import choose_providers, session_from_onnx


def read_metadata(session) -> dict:
    """The `edgekd.*` metadata_props of a session's model, prefix stripped, JSON values decoded."""
    props = session.get_modelmeta().custom_metadata_map
    meta = {}
    for key, value in props.items():
        if key.startswith("edgekd."):
            k = key[len("edgekd."):]
            meta[k] = json.loads(value) if k == "preprocess" else value
    return meta


FLOAT_TENSORS = ("tensor(float)", "tensor(float16)", "tensor(double)")  # what a face model may take and give


def check_device(device: str, source: str = "onnxruntime") -> list[str]:
    """The providers `device` will use, or the one-line error `OnnxRuntime` would give: call it before long work
    (a pipeline whose ONNX evaluation runs on CUDA must not find a CPU-only onnxruntime after training)."""
    import onnxruntime as ort

    return choose_providers(device, ort.get_available_providers(), source)


class OnnxRuntime(Runtime):
    name = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        device: str = "cpu",
        providers: list[str] | None = None,
        intra_op_threads: int | None = None,
        inter_op_threads: int | None = None,
        preprocess: Preprocess | None = None,
        spin_between_runs: bool = True,
    ):
        """`preprocess` overrides the file's metadata (needed for ONNX files not exported by edgekd);
        spin_between_runs: see session_from_onnx."""
        path = Path(path)
        self.session = session_from_onnx(path, providers=providers, device=device, threads=intra_op_threads,
                                         inter_op_threads=inter_op_threads,
                                         spin_between_runs=spin_between_runs)
        meta = read_metadata(self.session)
        if preprocess is None:
            if "preprocess" in meta:
                preprocess = Preprocess.from_dict(meta["preprocess"])
            else:
                warnings.warn(f"{path}: no edgekd preprocess metadata; assuming ArcFace (x-127.5)/127.5 at 112x112 "
                              "(pass --model NAME to take it from the model registry)")
                preprocess = ARCFACE
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        h, w = preprocess.input_size
        shape = list(inputs[0].shape) if inputs else []
        spatial_ok = len(shape) == 4 and all(d == want or not isinstance(d, int) for d, want in zip(shape[2:], (h, w)))
        if len(inputs) != 1 or not spatial_ok or shape[1] != 3 or len(outputs[0].shape) != 2:
            got = ", ".join(f"{i.name} {i.shape}" for i in inputs)
            raise EdgekdError(f"{path}: not a face model (inputs {got}; expected one N x 3 x {h} x {w} input "
                              "and an N x D embedding output)")
        kinds = (inputs[0].type, outputs[0].type)
        if kinds[0] not in FLOAT_TENSORS[:2] or kinds[1] not in FLOAT_TENSORS:  # int8 in or int64 out: no face model
            raise EdgekdError(f"{path}: not a face model (input {inputs[0].name} is {kinds[0]}, output "
                              f"{outputs[0].name} is {kinds[1]}; expected a float32/float16 input and a float output)")
        self._input = inputs[0].name
        self._input_dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
        self._fixed_batch = shape[0] if isinstance(shape[0], int) else None
        precision = meta.get("precision") or ("fp16" if self._input_dtype == np.float16 else "fp32")
        device_used = "cuda" if self.session.get_providers()[0] != "CPUExecutionProvider" else "cpu"
        meta["providers"] = self.session.get_providers()
        out_d = outputs[0].shape[1]
        if isinstance(out_d, int):
            embedding_size = out_d
        elif "embedding_size" in meta:
            embedding_size = int(meta["embedding_size"])
        else:
            embedding_size = self._run(np.zeros((self._fixed_batch or 1, 3, h, w), np.float32)).shape[1]
        super().__init__(preprocess, embedding_size, precision, device_used, meta, path)

    def _run(self, x: np.ndarray) -> np.ndarray:
        y = self.session.run(None, {self._input: x.astype(self._input_dtype, copy=False)})[0]
        return np.asarray(y, dtype=np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = self._check_input(x)
        b = self._fixed_batch
        if b is None or x.shape[0] == b:
            return self._run(x)
        out = []
        for i in range(0, x.shape[0], b):  # fixed-batch file: run in chunks, zero-padding the last one
            chunk = x[i : i + b]
            pad = b - chunk.shape[0]
            if pad:
                chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), np.float32)])
            out.append(self._run(chunk)[: b - pad])
        return np.concatenate(out)

    def close(self) -> None:
        self.session = None
