"""gputrack: an IMX500-style AI camera sensor emulated on a GPU."""

__version__ = "0.1.0"
