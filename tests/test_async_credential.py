"""Keyless model calls ask an async credential (issue 13): the token is awaited on the event loop, per request.

The real openai SDK against the Azure OpenAI double (``tests/aoai_double.py``), with a fake async credential
in place of ``azure.identity.aio.DefaultAzureCredential`` (no network): what the double received in
``Authorization`` shows which token each request carried.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import CredentialUnavailableError

from shared.errors import ModelCredentialsError
from shared.providers.base import VisionRequest
from shared.providers.factory import ENTRA_SCOPE, build_provider
from shared.services import default_async_credential
from tests.fake_credentials import FakeAsyncCredential

HI = VisionRequest(prompt="hi", images=(), max_tokens=10)


def keyless(make_settings):
    return make_settings(AZURE_OPENAI_API_KEY="", VISION_MODEL_MAX_RETRIES="0")


async def test_the_token_provider_is_awaited_before_every_request(make_settings, aoai):
    """Tokens that expire within azure-core's refresh margin are fetched again for each request, on the loop."""
    credential = FakeAsyncCredential(lifetime_seconds=60)
    provider = build_provider(keyless(make_settings), credential=lambda: credential)
    try:
        for _ in range(3):
            await provider.complete(HI)
    finally:
        await provider.aclose()
    assert [r.headers["authorization"] for r in aoai.requests] == [f"Bearer entra-token-{n}" for n in (1, 2, 3)]
    assert all("api-key" not in r.headers for r in aoai.requests)
    assert credential.calls == [(ENTRA_SCOPE,)] * 3
    assert set(credential.loops) == {asyncio.get_running_loop()}  # awaited on this loop, not in a thread


async def test_a_token_still_valid_is_reused(make_settings, aoai):
    credential = FakeAsyncCredential(lifetime_seconds=3600)
    provider = build_provider(keyless(make_settings), credential=lambda: credential)
    try:
        await asyncio.gather(*(provider.complete(HI) for _ in range(3)))
    finally:
        await provider.aclose()
    assert len(credential.calls) == 1
    assert [r.headers["authorization"] for r in aoai.requests] == ["Bearer entra-token-1"] * 3


async def test_a_slow_token_refresh_does_not_hold_the_event_loop(make_settings, aoai):
    """While the credential waits (an identity endpoint taking its time), other coroutines run; the request
    leaves only once the token is there."""
    gate = asyncio.Event()

    class Slow(FakeAsyncCredential):
        async def get_token(self, *scopes, **kwargs):
            await gate.wait()
            return await super().get_token(*scopes, **kwargs)

    credential = Slow()
    provider = build_provider(keyless(make_settings), credential=lambda: credential)
    try:
        call = asyncio.create_task(provider.complete(HI))
        for _ in range(100):  # the loop keeps turning while the token is pending
            await asyncio.sleep(0.001)
        assert not call.done() and aoai.requests == []
        gate.set()
        assert (await asyncio.wait_for(call, 10)).text
    finally:
        await provider.aclose()
    assert aoai.requests[0].headers["authorization"] == "Bearer entra-token-1"


@pytest.mark.parametrize("error", [
    CredentialUnavailableError("ManagedIdentityCredential authentication unavailable, no response from IMDS"),
    ClientAuthenticationError("AzureCliCredential: please run 'az login' to set up an account"),
])
async def test_credential_errors_from_the_async_credential_are_the_same_problem(make_settings, aoai, error):
    provider = build_provider(keyless(make_settings), credential=lambda: FakeAsyncCredential(error=error))
    try:
        with pytest.raises(ModelCredentialsError) as caught:
            await provider.complete(HI)
    finally:
        await provider.aclose()
    assert caught.value.__cause__ is error
    problem = caught.value.to_problem()
    assert problem["type"] == "/problems/model-credentials" and problem["credential"] == "FakeAsyncCredential"
    assert "FakeAsyncCredential could not get a token" in caught.value.detail and aoai.requests == []


async def test_the_default_model_credential_is_azure_identity_aio_and_closes():
    """The real async DefaultAzureCredential builds (its transport needs aiohttp) and closes, with no token asked."""
    from azure.identity.aio import DefaultAzureCredential

    credential = default_async_credential()
    assert isinstance(credential, DefaultAzureCredential)
    await credential.close()


def test_key_based_and_offline_runs_never_load_azure_identity():
    code = (
        "import sys\n"
        "from shared.config import Settings\n"
        "from shared.services import Services\n"
        "for values in ({'AZURE_OPENAI_ENDPOINT': 'https://x.openai.azure.com', 'AZURE_OPENAI_API_KEY': 'k',\n"
        "                'AZURE_OPENAI_DEPLOYMENT': 'gpt-4o', 'VISION_CACHE_ENABLED': 'false'},\n"
        "               {'VISION_PROVIDER': 'none', 'VISION_CACHE_ENABLED': 'false'}):\n"
        "    assert Services(Settings.from_mapping(values)).analyzer is not None\n"
        "print(sorted(m for m in sys.modules if m.startswith('azure.identity')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"
