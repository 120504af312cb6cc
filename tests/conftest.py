from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=4000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

# The hard per-test limits (wall and virtual time): see tests/_suite_limits.py.
from _suite_limits import (  # noqa: E402, F401
    autojump_clock,
    pytest_runtest_call,
    pytest_runtest_makereport,
)

# --------------------------------------------------------------------------- a real Ray cluster

_TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """An in-process local Ray cluster on loopback, for the whole session (tests marked ``ray``).

    Without Ray installed the tests that use it are skipped, except under CI or nox (``CI`` or
    ``TRIO_AGENTS_REQUIRE_RAY`` set), where they fail: the test extra installs Ray, so a
    missing Ray there is a broken setup.
    """
    if os.environ.get("CI") or os.environ.get("TRIO_AGENTS_REQUIRE_RAY"):
        import ray
    else:
        ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    # The workers import the test factories ("remote_agents:echo") from here.
    path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_TESTS_DIR, path) if p)
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
    )
    try:
        yield
    finally:
        ray.shutdown()  # stops exactly the processes this session started
