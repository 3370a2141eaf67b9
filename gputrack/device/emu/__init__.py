"""The emu backend's machinery: the CUDA emulation header and runtime (C++), the source checks
and code generation (`source.py`) and the g++ builds with their cache (`build.py`).

`gputrack.device.ops_emu` is the backend itself.
"""
