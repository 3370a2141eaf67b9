"""Shared fixtures: backends that run kernels, and the shared real data."""

from __future__ import annotations

import numpy as np
import pytest

from gputrack.data import data_dir
from gputrack.device import get_backend, probe

KERNEL_BACKENDS = ("emu", "cuda", "pycuda")


@pytest.fixture(params=KERNEL_BACKENDS)
def kernel_backend(request):
    """Every backend that runs the CUDA sources; the ones not available here skip with why."""
    state = probe(request.param)
    if not state.available:
        pytest.skip(f"{request.param} backend unavailable: {state.reason}")
    return get_backend(request.param)


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
