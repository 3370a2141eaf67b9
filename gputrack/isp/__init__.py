"""The ISP: RAW Bayer frame -> RGB8 / NV12 image and the network's input tensor.

    from gputrack.isp import IspParams, IspPipeline
    isp = IspPipeline(IspParams(wb="auto"), get_backend("auto"))
    out = isp.process(raw_frame)          # out.rgb8, out.nv12, out.tensor

`params` holds what the ISP does, `reference` the algorithm in NumPy, `pipeline` its launches
of `kernels/isp.cu`.
"""

from gputrack.isp.params import DEMOSAIC_METHODS, IspParams, TensorSpec, demosaic_only
from gputrack.isp.pipeline import IspOutputs, IspPipeline

__all__ = [
    "DEMOSAIC_METHODS",
    "IspOutputs",
    "IspParams",
    "IspPipeline",
    "TensorSpec",
    "demosaic_only",
]
