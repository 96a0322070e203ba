"""Shared fixtures: a private Azurite, the Azure OpenAI test double, settings and an API client."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import httpx
import pytest
from PIL import Image

from shared.config import Settings
from shared.http.app import create_app
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


@pytest.fixture(scope="session")
def aoai_double_server():
    from tests.aoai_double import AzureOpenAIDouble

    with AzureOpenAIDouble() as double:
        yield double


@pytest.fixture
def aoai(aoai_double_server):
    """The double, reset; every request a test made must have been valid against the spec."""
    aoai_double_server.reset()
    yield aoai_double_server
    assert aoai_double_server.validation_errors == []


@pytest.fixture
def make_settings(aoai):
    """Settings pointing at the double, cache off unless a test turns it on."""

    def make(**values: str) -> Settings:
        base = {
            "AZURE_OPENAI_ENDPOINT": aoai.endpoint,
            "AZURE_OPENAI_API_KEY": aoai.api_key,
            "AZURE_OPENAI_DEPLOYMENT": "gpt-4o",
            "VISION_CACHE_ENABLED": "false",
            "VISION_MODEL_TIMEOUT_SECONDS": "5",
            "VISION_MODEL_MAX_RETRIES": "2",
        }
        base.update(values)
        return Settings.from_mapping(base)

    return make


@pytest.fixture
def cache_settings(storage_connection_string) -> dict[str, str]:
    """Settings values turning the cache on, in a table of this test's own."""
    return {
        "VISION_CACHE_ENABLED": "true",
        "AzureWebJobsStorage": storage_connection_string,
        "VISION_CACHE_TABLE": f"t{uuid.uuid4().hex[:16]}",
    }


@pytest.fixture
async def make_client():
    """An httpx client bound to a fresh app built from the given settings."""
    apps = []

    async def make(settings: Settings) -> httpx.AsyncClient:
        app = create_app(settings)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        apps.append((app, client))
        return client

    yield make
    for app, client in apps:
        await client.aclose()
        await app.state.services.aclose()


@pytest.fixture
async def make_analyzer():
    """Analyzers built from the given settings, closed after the test."""
    from shared.services import build_analyzer

    made = []

    def make(settings: Settings):
        made.append(build_analyzer(settings))
        return made[-1]

    yield make
    for analyzer in made:
        await analyzer.aclose()


def encode(image: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def indexed_functions() -> dict:
    """function_app's functions as the host indexes them (the SDK allows get_functions() only once)."""
    import function_app

    return {function.get_function_name(): function for function in function_app.app.get_functions()}
