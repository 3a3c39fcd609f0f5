"""A private single-node Ray for the tests: loopback only, no dashboard, no usage stats, 2 CPUs.

Every start and stop is bounded in time (SIGALRM), so a hung Ray fails the test instead of
holding the shared machine. Test modules skip when the [ray] extra is missing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.ray.helpers import time_bound

START_S = 90  # a cold start of Ray is ~6 s here; the bound is for a hung one
STOP_S = 60
NUM_CPUS = 2
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def local_ray() -> Iterator[ModuleType]:
    """Ray started for one test module and shut down after it; never a cluster found on the machine."""
    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_USAGE_STATS_ENABLED", "0")
    mp.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    mp.delenv("RAY_ADDRESS", raising=False)  # "auto" in the code under test must find *this* Ray
    ray = pytest.importorskip("ray", reason="the Ray tests need qrerank[ray]")
    if ray.is_initialized():
        ray.shutdown()
    t0 = time.perf_counter()
    with time_bound(START_S, "starting Ray"):
        ray.init(
            address="local",
            num_cpus=NUM_CPUS,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
            configure_logging=False,
            # The workers import the tests' helper modules from the repository root.
            runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
        )
    assert time.perf_counter() - t0 < START_S
    try:
        yield ray
    finally:
        with time_bound(STOP_S, "stopping Ray"):
            ray.shutdown()
        mp.undo()
