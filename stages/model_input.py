"""What the model wants as input, read from the model itself."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import openvino as ov

from vidprof.profiling.errors import RunError, runtime_detail

_NP_TYPES = {ov.Type.f32: np.float32, ov.Type.f16: np.float16, ov.Type.u8: np.uint8}


@dataclass(frozen=True)
class InputSpec:
    name: str
    layout: str  # "NCHW" or "NHWC"
    dtype: np.dtype
    ov_type: ov.Type
    height: int
    width: int
    channels: int

    @property
    def shape(self) -> tuple[int, ...]:
        if self.layout == "NCHW":
            return (1, self.channels, self.height, self.width)
        return (1, self.height, self.width, self.channels)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize


def _layout_of(param: ov.Node, dims: list[int | None]) -> str:
    declared = param.get_layout()
    if not declared.empty:
        text = declared.to_string().strip("[]").replace(",", "").replace(" ", "").upper()
        if text in ("NCHW", "NHWC"):
            return text
    # No declared layout: channels are the small axis (1 or 3) next to the batch or at the end.
    if dims[1] in (1, 3) and dims[3] not in (1, 3):
        return "NCHW"
    if dims[3] in (1, 3) and dims[1] not in (1, 3):
        return "NHWC"
    if dims[1] in (1, 3):
        return "NCHW"
    raise RunError(f"model input shape {dims}: cannot tell NCHW from NHWC (no layout in the model and no 1/3-channel "
                   "axis); expected an image input with 1 or 3 channels")


def read_input_spec(model: ov.Model, frame_size: tuple[int, int]) -> InputSpec:
    """Validate the model's single image input; set a dynamic batch to 1 and dynamic H/W to the frame size.

    ``frame_size`` is (width, height) of the source's frames. The model is reshaped in place.
    """
    if len(model.inputs) != 1:
        names = [i.get_any_name() if i.get_names() else str(n) for n, i in enumerate(model.inputs)]
        raise RunError(f"model has {len(model.inputs)} inputs {names}; expected exactly one image input; "
                       "export the model with a single image input")
    port = model.inputs[0]
    param = model.get_parameters()[0]
    pshape = port.get_partial_shape()
    if pshape.rank.is_dynamic or pshape.rank.get_length() != 4:
        raise RunError(f"model input {pshape}: expected a 4-D image tensor (NCHW or NHWC); "
                       "this model cannot be fed video frames directly")
    dims: list[int | None] = [d.get_length() if d.is_static else None for d in pshape]
    layout = _layout_of(param, dims)
    h_ax, w_ax, c_ax = (2, 3, 1) if layout == "NCHW" else (1, 2, 3)
    if dims[c_ax] not in (1, 3):
        raise RunError(f"model input {pshape} ({layout}) has {dims[c_ax]} channels; expected 1 or 3")
    new = list(dims)
    new[0] = 1
    if new[h_ax] is None:
        new[h_ax] = frame_size[1]
    if new[w_ax] is None:
        new[w_ax] = frame_size[0]
    if new != dims:
        try:
            model.reshape({port: ov.PartialShape(new)})
        except RuntimeError as e:  # e.g. a detector whose sides must be multiples of 32
            raise RunError(f"model input {pshape}: cannot take {new[w_ax]}x{new[h_ax]} frames "
                           f"({runtime_detail(e)}); resize the source, or use a model with a fixed input size "
                           "(vidprof then resizes each frame to it)") from e
    et = port.get_element_type()
    if et not in _NP_TYPES:
        raise RunError(f"model input element type {et}: expected f32, f16 or u8")
    name = port.get_any_name() if port.get_names() else "input"
    return InputSpec(name, layout, np.dtype(_NP_TYPES[et]), et, int(new[h_ax]), int(new[w_ax]), int(new[c_ax]))
