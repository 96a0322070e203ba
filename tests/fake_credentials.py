"""An async Entra ID credential for tests: the shape of ``azure.identity.aio.DefaultAzureCredential``, no network.

The model path asks an async credential for tokens on the event loop (``shared.services.default_async_credential``),
so the fakes the model tests hand in are async too: ``get_token`` a coroutine, ``close`` a coroutine, as
azure-identity's are. Shared by the credential, close and HTTP-edge tests so each does not grow its own copy.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from azure.core.credentials import AccessToken


class FakeAsyncCredential:
    """Hands out ``entra-token-1``, ``entra-token-2``... (or raises ``error``), and records calls and closes.

    ``lifetime_seconds`` sets how long a token lasts: under azure-core's five-minute refresh margin, the
    bearer-token policy asks for a new one before every request, so each request shows which token it got.
    ``get_token`` yields to the loop once, as a real refresh (an HTTP call) would.
    """

    def __init__(self, *, lifetime_seconds: float = 3600, error: Exception | None = None) -> None:
        self.lifetime_seconds = lifetime_seconds
        self.error = error
        self.calls: list[tuple[str, ...]] = []
        self.loops: list[asyncio.AbstractEventLoop] = []
        self.closed = 0

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls.append(scopes)
        self.loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0)
        if self.error is not None:
            raise self.error
        return AccessToken(f"entra-token-{len(self.calls)}", int(time.time() + self.lifetime_seconds))

    async def close(self) -> None:
        self.closed += 1
