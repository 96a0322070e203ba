"""How long the caller can wait for a model answer, set once at the edge and read where calls are made.

An HTTP client waits tens of seconds, then is better served by a 429 with ``Retry-After``; a blob or
a batch item can wait minutes for its turn at the quota before the pipeline's own redelivery takes
over. The edge knows which it is, the provider deep below does not: a context variable carries the
absolute deadline (a :func:`time.monotonic` reading) from one to the other, and follows tasks that
asyncio starts from within the scope.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_deadline: ContextVar[float | None] = ContextVar("vision_call_deadline", default=None)


@contextmanager
def deadline_in(seconds: float | None) -> Iterator[float | None]:
    """Within this block, model calls give up waiting ``seconds`` from now (None: no deadline).

    A nested scope can only shorten the deadline, never extend the caller's.
    """
    outer = _deadline.get()
    deadline = None if seconds is None else time.monotonic() + seconds
    if outer is not None and (deadline is None or outer < deadline):
        deadline = outer
    token = _deadline.set(deadline)
    try:
        yield deadline
    finally:
        _deadline.reset(token)


def current_deadline() -> float | None:
    """The absolute deadline of the current call, or None when the edge set none."""
    return _deadline.get()
