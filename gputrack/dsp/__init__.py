"""The on-sensor network (the "DSP"): ONNX import into a small IR, fusion, the launch plan,
the detection-head decode."""
