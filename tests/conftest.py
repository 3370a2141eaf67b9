"""Shared fixtures: backends that run kernels, and the shared real data."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from gputrack.data import data_dir
from gputrack.device import get_backend, probe

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def load_script(name: str):
    """A script of scripts/ as a module (they are not a package)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sass_tools_missing() -> bool:
    from gputrack.device.compile_report import nvrtc_version

    return nvrtc_version()[0] is None or load_script("sass_report").find_cuobjdump() is None


# Tests that build a kernel file to SASS (NVRTC) and read it (cuobjdump, nvdisasm).
needs_sass_tools = pytest.mark.skipif(
    _sass_tools_missing(), reason="NVRTC or cuobjdump absent (pip install -e '.[dev]')"
)


# emu twice: threads of a block in index order, then in reverse. The emulator runs a block's
# threads one after another, so a race between them (a shared-memory read with no barrier
# after another thread's write) gives the right answer in one order and not in the other.
KERNEL_BACKENDS = ("emu", "emu-reverse", "cuda", "pycuda")


@pytest.fixture(params=KERNEL_BACKENDS)
def kernel_backend(request):
    """Every backend that runs the CUDA sources; the ones not available here skip with why."""
    name = request.param.split("-")[0]
    state = probe(name)
    if not state.available:
        pytest.skip(f"{name} backend unavailable: {state.reason}")
    backend = get_backend(name)
    if name == "emu":
        backend.set_thread_order("reverse" if request.param.endswith("reverse") else "forward")
        yield backend
        backend.set_thread_order("forward")
    else:
        yield backend


@pytest.fixture
def emu():
    """The emu backend alone (tests of the emulator itself), or a skip with why."""
    state = probe("emu")
    if not state.available:
        pytest.skip(f"emu backend unavailable: {state.reason}")
    return get_backend("emu")


@pytest.fixture
def rng(request) -> np.random.Generator:
    """Fresh random inputs each run; the seed is printed on failure so a run can be replayed."""
    seed = int(np.random.SeedSequence().entropy % (2**32))
    request.node.user_properties.append(("seed", seed))
    print(f"rng seed {seed}")
    return np.random.default_rng(seed)


def shared_data(relative: str):
    """A shared data file, or skip the test with the reason."""
    path = data_dir() / relative
    if not path.exists():
        pytest.skip(f"shared data {relative} absent (set GPUTRACK_DATA; looked in {data_dir()})")
    return path
