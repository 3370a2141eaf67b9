"""Models bundled with gputrack (`synthetic_det.onnx`, made by `scripts/train_detector.py`)
and the held-out evaluation that its training script and `tests/test_bundled_model.py` share."""

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent
SYNTHETIC_DET = MODELS_DIR / "synthetic_det.onnx"
SYNTHETIC_DET_INFO = MODELS_DIR / "synthetic_det.json"
