"""Tiny fixtures built at test time: one small model saved every way we read."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.fixtures.models import FixtureFiles, build_fixture_files  # noqa: E402


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> FixtureFiles:
    """Every fixture file, built once per test session."""
    return build_fixture_files(tmp_path_factory.mktemp("fixtures"))


@pytest.fixture()
def marker(tmp_path: Path) -> Path:
    """A path a malicious payload would create; tests assert it never appears."""
    return tmp_path / "PAYLOAD_RAN"
