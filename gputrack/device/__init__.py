"""The kernel runtime: one interface (`base.Backend`), one small file per backend.

    backend = get_backend("auto")          # cuda when a GPU answers, else cpu
    mod = backend.load("isp.cu")
    mod.kernel("demosaic")(grid, block, (raw, rgb, np.int32(w), np.int32(h)))

Nothing outside this package launches kernels.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from gputrack.device.base import Backend
from gputrack.errors import BackendUnavailable, UsageError

BACKEND_NAMES = ("cuda", "pycuda", "emu", "cpu")
CHOICES = ("auto", *BACKEND_NAMES)


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str


def _module(name: str):
    return importlib.import_module(f"gputrack.device.ops_{name}")


def probe(name: str) -> Availability:
    """Whether a backend can run here, and why (or why not). Never raises."""
    if name not in BACKEND_NAMES:
        raise UsageError(f"unknown backend '{name}' (choose from {', '.join(CHOICES)})")
    try:
        ok, reason = _module(name).probe()
    except Exception as err:  # a probe must report, not crash `gputrack check`
        ok, reason = False, f"probe failed: {type(err).__name__}: {err}"
    return Availability(ok, reason)


_instances: dict[str, Backend] = {}


def get_backend(name: str = "auto", *, verbose: bool = False) -> Backend:
    """A backend by name. `auto` picks cuda when a GPU answers, else cpu, and says why."""
    if name not in CHOICES:
        raise UsageError(f"--backend: unknown backend '{name}' (choose from {', '.join(CHOICES)})")
    if name == "auto":
        cuda = probe("cuda")
        chosen = "cuda" if cuda.available else "cpu"
        why = cuda.reason if cuda.available else f"cuda unavailable: {cuda.reason}"
        if verbose:
            import sys

            sys.stderr.write(f"gputrack: backend auto -> {chosen} ({why})\n")
        name = chosen
    if name not in _instances:
        state = probe(name)
        if not state.available:
            raise BackendUnavailable(f"backend {name} is not available: {state.reason}")
        _instances[name] = _module(name).create()
    return _instances[name]


def auto_choice() -> tuple[str, str]:
    """What `auto` would pick and why, without creating anything."""
    cuda = probe("cuda")
    if cuda.available:
        return "cuda", cuda.reason
    return "cpu", f"cuda unavailable: {cuda.reason}"


__all__ = [
    "BACKEND_NAMES",
    "CHOICES",
    "Availability",
    "Backend",
    "get_backend",
    "probe",
    "auto_choice",
]
