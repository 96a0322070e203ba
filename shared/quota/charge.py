"""What Azure charges a chat request against the deployment's quota when it arrives.

The charge is the estimated prompt (text and images) plus ``max_tokens``, reserved in full before
the model has written a word: a request asking for 4,096 tokens costs 4,096 of quota even if the
answer is one line. Our estimate errs high, like Azure's own (``shared.tokens``), so a limiter that
spends it never asks for more than the service will admit.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.tokens import estimate_text_tokens

#: Azure's pre-charge is its own estimate, which we cannot see: a request we count a few tokens low
#: earns a 429 that pauses every caller, one we count a few tokens high costs a fraction of a percent.
#: So each request carries a small margin (about 2% of a low-detail image request).
SAFETY_MARGIN_TOKENS = 8


def estimate_charge(texts: Iterable[str], image_tokens: Iterable[int], max_tokens: int) -> int:
    """Tokens of quota one request takes: its messages' text, its images, and ``max_tokens``.

    ``texts`` is one string per chat message (system prompt, user prompt, labels, follow-ups);
    ``image_tokens`` the estimate of each prepared image at the detail it is sent with.
    """
    messages = list(texts)
    text = sum(estimate_text_tokens(message, messages=0) for message in messages)
    framing = estimate_text_tokens("", messages=max(1, len(messages)))
    return text + framing + sum(image_tokens) + max_tokens + SAFETY_MARGIN_TOKENS
