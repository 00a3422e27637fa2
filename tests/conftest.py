"""Shared test set-up. Installed third-party plugins never autoload here; caches live in a temp folder."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Set before any clinseek import builds the registry: only built-in plugins load in the project's own tests.
os.environ["CLINSEEK_LOAD_PLUGINS"] = ""


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """One cache per test session (the demo cohort and knowledge base build once, then are reused)."""
    if not os.environ.get("CLINSEEK_TEST_KEEP_CACHE"):
        os.environ["CLINSEEK_CACHE"] = str(tmp_path_factory.mktemp("clinseek-cache"))
    yield


@pytest.fixture
def registry():
    """The plugin registry with the in-test plugin (scripted host, notes toolset) registered."""
    from clinseek.plugins import get_registry, reset_registry

    import spine_plugin

    reset_registry()
    reg = get_registry()
    reg.register_module(spine_plugin, name="spine-test")
    reg.collect()
    yield reg
    reset_registry()


SERVICE_MARKERS = ("postgres", "browser", "llm")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under .ci/run (CLINSEEK_REQUIRE_SERVICES=1) a skipped service test is a failure: CI starts PostgreSQL and
    installs Chromium, so such a skip means the set-up broke, not that the test may be passed over."""
    outcome = yield
    report = outcome.get_result()
    if (report.skipped and os.environ.get("CLINSEEK_REQUIRE_SERVICES") == "1"
            and any(item.get_closest_marker(m) for m in SERVICE_MARKERS)):
        report.outcome = "failed"
        report.longrepr = f"service test skipped under CLINSEEK_REQUIRE_SERVICES=1: {report.longrepr}"
