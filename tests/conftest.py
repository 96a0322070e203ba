"""Shared fixtures: a private Azurite, the Azure OpenAI test double, the corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.azurite import Azurite

FIXTURES = Path(__file__).parent / "fixtures"
IMAGES = FIXTURES / "images"


@pytest.fixture(scope="session")
def azurite():
    """One Azurite for the session, stopped by PID at the end."""
    emulator = Azurite().start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def storage_connection_string(azurite) -> str:
    return azurite.connection_string


@pytest.fixture
def corpus() -> Path:
    """Folder of the public test images copied from ../shared/corpus."""
    return IMAGES
