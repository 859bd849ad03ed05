"""The two binding-API generations of an execution context, chosen by probing features, not versions.

"v3": named tensors (TensorRT >= 8.5, the only API in 10.x): set_input_shape / set_tensor_address /
execute_async_v3. "v2": binding indices (8.x): set_binding_shape / execute_async_v2(bindings). Every call that
returns a boolean has it checked: TensorRT reports a shape outside the profile, or a failed launch, only that way.
"""

from __future__ import annotations

import numpy as np

from edgekd.errors import EdgekdError


def select_api(engine, context) -> str:
    """'v3' when the engine has named tensors and the context execute_async_v3, else 'v2'."""
    return "v3" if hasattr(engine, "num_io_tensors") and hasattr(context, "execute_async_v3") else "v2"


def io_tensors(trt, engine, api: str) -> list[dict]:
    """[{name, index, input, dtype, shape, min_batch, max_batch}] for every I/O tensor, in binding order.

    min/max batch come from optimization profile 0 for a dynamic input, else the fixed batch."""
    out = []
    count = engine.num_io_tensors if api == "v3" else engine.num_bindings
    for i in range(count):
        if api == "v3":
            name = engine.get_tensor_name(i)
            is_in = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            shape = tuple(engine.get_tensor_shape(name))
            dtype = engine.get_tensor_dtype(name)
            profile = (lambda: engine.get_tensor_profile_shape(name, 0))
        else:
            name = engine.get_binding_name(i)
            is_in = engine.binding_is_input(i)
            shape = tuple(engine.get_binding_shape(i))
            dtype = engine.get_binding_dtype(i)
            profile = (lambda: engine.get_profile_shape(0, i))
        lo = hi = shape[0]
        if is_in and shape[0] == -1:
            shapes = profile()
            lo, hi = int(shapes[0][0]), int(shapes[2][0])
        out.append(dict(name=name, index=i, input=is_in, dtype=np.dtype(trt.nptype(dtype)), shape=shape,
                        min_batch=lo, max_batch=hi))
    return out


class Bindings:
    """Shape setting and launching on one context through either API, with TensorRT's booleans checked."""

    def __init__(self, context, api: str, tensors: list[dict], addresses: dict[str, int], where):
        self.context, self.api, self.where = context, api, where
        self.input = next(t for t in tensors if t["input"])
        if api == "v3":
            for t in tensors:
                if not context.set_tensor_address(t["name"], addresses[t["name"]]):
                    raise EdgekdError(f"{where}: set_tensor_address({t['name']!r}) was refused")
        self.bindings = [addresses[t["name"]] for t in tensors]

    def set_batch(self, shape: tuple) -> None:
        if self.api == "v3":
            ok, call = self.context.set_input_shape(self.input["name"], shape), "set_input_shape"
        else:
            ok, call = self.context.set_binding_shape(self.input["index"], shape), "set_binding_shape"
        if not ok:
            raise EdgekdError(f"{self.where}: {call}({shape}) was refused: batch {shape[0]} is outside the "
                              f"engine's profile ({self.input['min_batch']}..{self.input['max_batch']})")

    def execute(self, stream_handle: int) -> None:
        if self.api == "v3":
            ok, call = self.context.execute_async_v3(stream_handle), "execute_async_v3"
        else:
            ok, call = self.context.execute_async_v2(bindings=self.bindings, stream_handle=stream_handle), "execute_async_v2"
        if not ok:
            raise EdgekdError(f"{self.where}: {call} failed (see TensorRT's messages above); no embeddings returned")
