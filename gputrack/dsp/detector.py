"""Image -> Detections: the network input made as the ISP makes it (TensorSpec letterbox and
normalisation), the network, the head decode + NMS - on one backend."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from gputrack.data import data_dir
from gputrack.device.base import Backend
from gputrack.dsp.decode import MAX_CELLS, Decoder, DetectParams, FrameMapping
from gputrack.dsp.plan import nhwc_hint
from gputrack.dsp.runner import Network
from gputrack.errors import GputrackError
from gputrack.isp.params import TensorSpec
from gputrack.isp.reference import make_tensor

DEFAULT_MODEL = "models/FastestDet.onnx"


def bundled_model() -> Path:
    """The detector bundled with gputrack, trained on the synthetic world (person, car, ball;
    `scripts/train_detector.py`): the default on the synthetic source."""
    from gputrack.models import SYNTHETIC_DET

    if not SYNTHETIC_DET.is_file():
        raise GputrackError(f"the bundled model {SYNTHETIC_DET} is missing (reinstall gputrack)")
    return SYNTHETIC_DET


def model_classes(model: str | Path) -> list[str] | None:
    """Class names from the JSON beside a model (`synthetic_det.json`), None when absent."""
    info = Path(model).with_suffix(".json")
    try:
        names = json.loads(info.read_text())["classes"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return [str(n) for n in names] if isinstance(names, list) else None


def default_model() -> Path:
    """FastestDet (COCO-80) from GPUTRACK_DATA, or a clear error: the default on real video."""
    path = data_dir() / DEFAULT_MODEL
    if not path.is_file():
        given = os.environ.get("GPUTRACK_DATA")
        hint = (f"GPUTRACK_DATA is {given}: point it at the shared data folder"
                if given else "set GPUTRACK_DATA")  # fmt: skip
        raise GputrackError(f"no default model: {path} is absent ({hint}, or pass --model)")
    return path


def check_head(model: str | Path, head: tuple[int, ...], input_hw: tuple[int, int]) -> None:
    """Before any frame: the first output looks like a FastestDet head, 1 x (5 + classes) x
    H x W over a grid of at most MAX_CELLS cells whose cells are stride x stride pixels of the
    input (a classifier's or a segmenter's output is refused, not decoded into nonsense)."""
    what = f"model {model}: the first output should be a FastestDet detection head"
    if len(head) != 4 or head[0] != 1 or head[1] < 6:
        raise GputrackError(f"{what}, 1 x (5 + classes) x H x W; it is {_dims(head)}")
    _, _, gh, gw = head
    if gh * gw > MAX_CELLS:
        raise GputrackError(f"{what} with at most {MAX_CELLS} cells; {gw}x{gh} has "
                            f"{gw * gh}")  # fmt: skip
    (h, w), stride = input_hw, input_hw[0] // gh
    if stride < 4 or (h, w) != (stride * gh, stride * gw):
        raise GputrackError(f"{what}, a grid of cells of 4 or more pixels square over the "
                            f"{w}x{h} input; its grid is {gw}x{gh}")  # fmt: skip


def check_rgb8(rgb8: object) -> None:
    """A clear error unless `rgb8` is a uint8[H, W, 3] host image: a float image in [0, 1]
    (or a uint16 one) would be normalised as 8-bit codes and find nothing, without a word."""
    if not isinstance(rgb8, np.ndarray):
        raise GputrackError(f"detector image must be a NumPy uint8 array (H, W, 3), got "
                            f"{type(rgb8).__name__}")  # fmt: skip
    if rgb8.ndim != 3 or rgb8.shape[2] != 3:
        raise GputrackError(f"detector image must be RGB (H, W, 3), got shape {rgb8.shape}")
    if rgb8.dtype != np.uint8:
        raise GputrackError(f"detector image must be uint8 (0-255), got {rgb8.dtype} (a float "
                            "image in [0, 1]: (255 * x).round().astype(np.uint8))")  # fmt: skip
    if rgb8.shape[0] < 1 or rgb8.shape[1] < 1:
        raise GputrackError(f"detector image {rgb8.shape[1]}x{rgb8.shape[0]} is empty")


def _dims(shape: tuple[int, ...]) -> str:
    return " x ".join(map(str, shape)) or "a scalar"


class Detector:
    def __init__(
        self, model: str | Path, backend: Backend, params: DetectParams | None = None
    ) -> None:
        self.backend = backend
        self.name = f"network {Path(model).stem}"
        self.network = Network(model, backend)
        self.notes = [f"model {model}: {n}" for n in self.network.notes]  # for the caller
        shape = tuple(self.network.input_shape)
        if len(shape) != 4 or shape[0] != 1 or shape[1] != 3:
            raise GputrackError(f"model {model}: the input must be one RGB image, 1 x 3 x H x W "
                                f"(NCHW); it is {_dims(shape)}{nhwc_hint(shape)}")  # fmt: skip
        _, _, h, w = shape
        self.spec = TensorSpec(width=w, height=h)
        head = self.network.graph.shapes.get(self.network.output_names[0], ())
        check_head(model, head, (h, w))
        self.decoder = Decoder(backend, params)

    def tensor(self, rgb8: np.ndarray) -> np.ndarray:
        check_rgb8(rgb8)
        return make_tensor(rgb8, self.spec, np.float32)

    def __call__(self, rgb8: np.ndarray, stream: Any = None) -> np.ndarray:
        """float32[N, 6] = x1, y1, x2, y2, score, class in `rgb8`'s pixels."""
        check_rgb8(rgb8)
        mapping = FrameMapping.of(self.spec, rgb8.shape[1], rgb8.shape[0])
        head_name = self.network.output_names[0]
        outs = self.network.run(self.tensor(rgb8), stream=stream, download=False)
        return self.decoder(outs[head_name], mapping, stream=stream)
