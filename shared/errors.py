"""The errors this service raises, and what each means to a caller.

Every module raises these; only the edges (HTTP routes, CLI, blob trigger) turn
them into status codes, exit codes or ``failed`` results. Each class carries the
HTTP status and a stable problem ``type`` slug so the API can render RFC 9457
problem documents without a lookup table.

Hierarchy::

    VisionError
    ├── ConfigError                  a setting is missing or invalid (names it)
    ├── InputError                   the caller sent something we cannot use
    │   ├── InvalidParameter         400: a parameter is out of range or unknown
    │   ├── PayloadTooLarge          413: over the byte limit
    │   ├── UnsupportedImage         415: the bytes are not an image format we take
    │   ├── ImageDecodeError         422: an image we recognise but cannot decode
    │   │   └── ImageTooLarge        422: over the pixel limit (decompression bombs)
    │   ├── UnreadableDocument       422: a PDF or TIFF that is encrypted, damaged or empty
    │   ├── TooManyPages             413: more pages than VISION_MAX_PAGES (choose some with pages=)
    │   └── PageTooLarge             422: a page larger than any paper
    └── ModelError                   the model service did not give a usable answer
        ├── ModelNotConfigured       503: no endpoint configured (names the settings)
        ├── ModelCredentialsError    503: the Entra ID credential could not get a token (names the credential)
        ├── ModelThrottled           429: rate limited; carries retry_after
        ├── ModelUnavailable         503: 5xx, timeouts, connection failures
        ├── ModelBadResponse         502: an answer we cannot use
        ├── ContentFiltered          422: the prompt or the completion was filtered
        ├── NotSupported             501: the configured provider cannot do this (names the settings)
        └── BudgetExhausted          429: today's spend budget is used up; retry_after = next UTC midnight

    ResultCorrupt                    502: a stored result document is not JSON or has the wrong shape
    StorageUnavailable               503: the storage account cannot be reached or failed

Storage problems in the cache are not errors to the caller: the cache logs them
and the request continues uncached. Reading a blob-flow result has no such
fallback, so there they are :class:`StorageUnavailable` / :class:`ResultCorrupt`.

Error text can quote secrets (a connection string's key, a SAS ``sig``, a header, a
password in a URL): :func:`redact` is the one list of what counts as one, used wherever
such text becomes a log line or a document (the cache, the blob pipeline, ``watch``,
:class:`ConfigError`).
"""

from __future__ import annotations

import re
from typing import Any


class VisionError(Exception):
    """Base of every error this service raises on purpose."""

    status: int = 500
    slug: str = "internal-error"
    title: str = "Internal error"

    def __init__(self, detail: str, **context: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.context = context

    @property
    def problem_type(self) -> str:
        """The stable RFC 9457 ``type`` of this error (a relative URI)."""
        return f"/problems/{self.slug}"

    def to_problem(self) -> dict[str, Any]:
        """The problem document for this error (``application/problem+json``)."""
        problem: dict[str, Any] = {
            "type": self.problem_type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        for key, value in self.context.items():
            if value is not None:
                problem[key] = value
        return problem


class ConfigError(VisionError):
    """A setting is missing or invalid; ``setting`` names it."""

    status = 500
    slug = "configuration-error"
    title = "Configuration error"

    def __init__(self, setting: str, detail: str) -> None:
        # Redacted here, once: the detail often quotes the bad value, and it reaches logs,
        # stderr and HTTP problem documents.
        super().__init__(f"{setting}: {redact(detail)}", setting=setting)
        self.setting = setting


class InputError(VisionError):
    """The caller's input is at fault; retrying the same input will not help."""

    status = 400
    slug = "bad-input"
    title = "Bad input"


class InvalidParameter(InputError):
    status = 400
    slug = "invalid-parameter"
    title = "Invalid parameter"

    def __init__(self, parameter: str, detail: str) -> None:
        super().__init__(f"{parameter}: {detail}", parameter=parameter)
        self.parameter = parameter


class PayloadTooLarge(InputError):
    status = 413
    slug = "payload-too-large"
    title = "Payload too large"

    def __init__(self, limit_bytes: int, size_bytes: int | None = None) -> None:
        told = f" ({size_bytes} bytes)" if size_bytes is not None else ""
        super().__init__(
            f"the image is larger than the limit of {limit_bytes} bytes{told}",
            limit_bytes=limit_bytes,
            size_bytes=size_bytes,
        )
        self.limit_bytes = limit_bytes
        self.size_bytes = size_bytes


class UnsupportedImage(InputError):
    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


class ImageDecodeError(InputError):
    status = 422
    slug = "undecodable-image"
    title = "Image cannot be decoded"


class ImageTooLarge(ImageDecodeError):
    slug = "image-too-large"
    title = "Image exceeds the pixel limit"

    def __init__(self, pixels: int, limit_pixels: int) -> None:
        super().__init__(
            f"the image has {pixels} pixels, over the limit of {limit_pixels}",
            pixels=pixels,
            limit_pixels=limit_pixels,
        )
        self.pixels = pixels
        self.limit_pixels = limit_pixels


class UnreadableDocument(InputError):
    """A PDF or multi-page TIFF that is encrypted, damaged or empty: nothing to render."""

    status = 422
    slug = "unreadable-document"
    title = "Document cannot be read"


class TooManyPages(InputError):
    """More pages than one request takes (``VISION_MAX_PAGES``); a page range selects fewer."""

    status = 413
    slug = "too-many-pages"
    title = "Too many pages"


class PageTooLarge(InputError):
    """A page larger than any paper (checked from the document's structure, before rendering)."""

    status = 422
    slug = "page-too-large"
    title = "Page too large"


class ModelError(VisionError):
    """The model service did not give a usable answer."""

    status = 502
    slug = "model-error"
    title = "Model service error"

    def __init__(self, detail: str, *, retry_after: float | None = None, **context: Any) -> None:
        super().__init__(detail, **context)
        self.retry_after = retry_after


class ModelNotConfigured(ModelError):
    status = 503
    slug = "model-not-configured"
    title = "No model service configured"


class ModelCredentialsError(ModelError):
    """The Entra ID credential could not get a token for the model service (no secrets in ``detail``)."""

    status = 503
    slug = "model-credentials"
    title = "No credentials for the model service"


class ModelThrottled(ModelError):
    status = 429
    slug = "model-throttled"
    title = "Model service is throttling"


class ModelUnavailable(ModelError):
    status = 503
    slug = "model-unavailable"
    title = "Model service unavailable"

    def __init__(self, detail: str, *, sent: bool = True, **context: Any) -> None:
        super().__init__(detail, **context)
        #: False when the request never reached the service (the connection was refused): nothing was
        #: charged against the quota, so the limiter gives the reservation back.
        self.sent = sent


class ModelBadResponse(ModelError):
    status = 502
    slug = "model-bad-response"
    title = "Model service answered with something unusable"


class ContentFiltered(ModelError):
    """Azure's content filter blocked the prompt (``where='prompt'``) or the answer."""

    status = 422
    slug = "content-filtered"
    title = "Blocked by the content filter"

    def __init__(self, detail: str, *, where: str, categories: list[str] | None = None) -> None:
        super().__init__(detail, where=where, categories=categories or None)
        self.where = where
        self.categories = categories or []


class NotSupported(ModelError):
    """The configured provider cannot do this (e.g. the offline engine asked a free-form question)."""

    status = 501
    slug = "not-supported"
    title = "Not supported by the configured provider"


class BudgetExhausted(ModelError):
    """Today's spend (``VISION_DAILY_BUDGET_USD``, UTC days) is used up: no new model call until the reset.

    A sibling of :class:`ModelThrottled` and :class:`ModelUnavailable`, never a subclass: nothing is
    down, so the local-engine fallback must not stand in, fallback deployments must not be tried, the
    retry layer must not wait it out, and the blob flow defers the blob instead of counting an attempt.
    ``retry_after`` is the seconds until the next UTC midnight (at least 1).
    """

    status = 429
    slug = "budget-exhausted"
    title = "Daily spend budget exhausted"

    def __init__(self, *, spent_usd: float, budget_usd: float, retry_after: float, resets_at: str) -> None:
        super().__init__(
            f"today's model spend ({_dollars(spent_usd)}) has reached the daily budget of {_dollars(budget_usd)} "
            f"(VISION_DAILY_BUDGET_USD); new model calls resume at {resets_at}; cached answers are still served",
            retry_after=max(1.0, retry_after), spent_usd=round(spent_usd, 6), budget_usd=budget_usd,
            resets_at=resets_at,
        )
        self.spent_usd = spent_usd
        self.budget_usd = budget_usd
        self.resets_at = resets_at


def _dollars(amount: float) -> str:
    """``$1.50``, ``$0.000655``: cents at least, micro-dollars at most, no trailing zeros beyond the cents."""
    whole, _, fraction = f"{amount:.6f}".rstrip("0").partition(".")
    return f"${whole}.{fraction.ljust(2, '0')}"



# -- redaction ------------------------------------------------------------------------------

MASK = "***"
# key=value pairs of connection strings and query strings; the value ends at ; & whitespace or a quote.
_PAIRS = re.compile(
    r"(?i)\b(accountkey|sharedaccesssignature|sig|signature|password|pwd|token|access_token|client_secret"
    r"|api[-_]?key|x-functions-key|code)=[^;&\s'\"]+"
)
# Headers, as "name: value" or a dict's "'name': 'value'"; "Bearer <token>" counts as one value.
_HEADERS = re.compile(
    r"(?i)(\b(?:api-key|authorization|x-functions-key|ocp-apim-subscription-key)['\"]?\s*[:=]\s*['\"]?)"
    r"(?:(?:bearer|basic)\s+)?[^\s'\",;}&]+"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
# In URLs: user:password@ (the password masked) and token@ (all of it masked).
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*):[^/\s@]*@")
_URL_TOKEN = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+@")


def redact(text: object) -> str:
    """``str(text)`` with every secret-looking value replaced by ``***``.

    SDK exception text quotes what the SDK was given (connection strings, SAS URLs, request
    headers) and settings errors quote the bad value; none of it may reach a log or a caller.
    """
    value = str(text)
    value = _URL_PASSWORD.sub(rf"\1:{MASK}@", value)
    value = _URL_TOKEN.sub(rf"\1{MASK}@", value)
    value = _HEADERS.sub(rf"\1{MASK}", value)
    value = _BEARER.sub(rf"\1 {MASK}", value)
    return _PAIRS.sub(rf"\1={MASK}", value)


def describe(exc: BaseException, *, limit: int = 300) -> str:
    """One redacted line about a failure, for logs and health checks: its type and first line."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {redact(lines[0] if lines else '')}"[:limit]


class ResultCorrupt(VisionError):
    """A stored result document cannot be read (not JSON, or not a result's shape)."""

    status = 502
    slug = "result-corrupt"
    title = "Stored result is unreadable"


class StorageUnavailable(VisionError):
    """The storage account cannot be reached, or failed; retrying later may help."""

    status = 503
    slug = "storage-unavailable"
    title = "Storage unavailable"
