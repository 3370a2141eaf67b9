"""`cpu`: NumPy arrays, no CUDA kernels. Stages run their NumPy/OpenCV/onnxruntime reference.

It is the practical fallback on a machine without a GPU and the reference the kernels are
checked against.
"""

from __future__ import annotations

from gputrack.device.base import HostArrayBackend


class CpuBackend(HostArrayBackend):
    name = "cpu"
    runs_kernels = False

    def describe(self) -> str:
        return "cpu (NumPy/OpenCV/onnxruntime reference implementations)"


def probe() -> tuple[bool, str]:
    import cv2
    import numpy

    return True, f"NumPy {numpy.__version__}, OpenCV {cv2.__version__}"


def create() -> CpuBackend:
    return CpuBackend()
