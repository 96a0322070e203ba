"""Azure OpenAI chat-completions test double: a real HTTP server (uvicorn + Starlette) on loopback.

``AzureOpenAIDouble`` serves, from a daemon thread on 127.0.0.1 (free port), two dialects:
Azure ``POST /openai/deployments/{deployment}/chat/completions?api-version=...`` with an ``api-key`` header
or ``Authorization: Bearer`` (``endpoint`` -> ``AsyncAzureOpenAI(azure_endpoint=...)``), and OpenAI-compatible
``POST /v1/chat/completions`` with ``Authorization: Bearer <api_key>`` and the body's ``model`` as deployment
(``openai_base_url`` -> ``AsyncOpenAI(base_url=...)``).

It records every request (``requests``) and validates it with openapi-core against the official spec
``fixtures/aoai/inference-2024-10-21.patched.json`` (OpenAPI 3.0, ``nullable`` honoured): path, required
``api-version`` (also checked against ``api_versions``), security (api-key or bearer) and the JSON body
against ``createChatCompletionRequest``. One in-memory fix: that schema is ``allOf`` a common part whose
``max_tokens``/``presence_penalty``/``frequency_penalty`` are not nullable while its own copies are; the
``nullable: true`` wins, so ``max_tokens=None`` (sent by the SDK as ``null``) passes, as on the live service.
Beyond the spec: at most ``max_images`` (10) image parts; data URLs must be ``data:image/{png,jpeg,gif,webp};
base64,`` with valid base64 decoding to at most 20 MB of real image bytes (magic numbers checked); http(s)
URLs pass. Streaming is not implemented and is rejected. Problems get Azure's error shape (404 unknown path,
401 no credentials, else 400 ``BadRequest`` with ``param``) and land in ``validation_errors``, so a test can
``assert double.validation_errors == []``; a *wrong* key or token gets 401 but is not a validation error.
(Live Azure answers a missing or unknown api-version with 404 "Resource not found"; the double says 400.)

Valid requests are answered by a FIFO queue of scripted ``Reply`` objects, else the ``set_responder``
callable, else ``default_reply`` (default: a deterministic success naming the image count, detail and prompt,
valid against ``createChatCompletionResponse``). Rejected requests consume no scripted reply. Replies can
throttle (429 + ``retry-after-ms``), fail (5xx), stall, send broken JSON or a wrong shape, close the connection
mid-response (``Reply.connection_reset``), or mimic both live content-filter shapes. State is lock-guarded
(server thread vs test thread); ``reset()`` clears it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import json
import math
import re
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import uvicorn
from openapi_core import OpenAPI
from openapi_core.templating.paths.exceptions import PathError
from openapi_core.testing import MockRequest
from openapi_core.validation.request.exceptions import SecurityValidationError
from openapi_schema_validator import OAS30Validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

SPEC_PATH = Path(__file__).parent / "fixtures" / "aoai" / "inference-2024-10-21.patched.json"
SPEC_API_VERSION = "2024-10-21"
DEFAULT_MODEL = "gpt-4o-2024-08-06"
MAX_IMAGES = 10
MAX_IMAGE_BYTES = 20 * 1024 * 1024
IMAGE_MIME_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")
_AZURE_PATH = re.compile(r"/openai/deployments/([^/]+)/chat/completions")
_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+);base64,(.*)", re.DOTALL)
_UNAUTHORIZED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key "
    "for an active subscription and use a correct regional API endpoint for your resource.")
_PROMPT_FILTERED = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please "
    "modify your prompt and retry. To learn more about our content filtering policies please read our "
    "documentation: https://go.microsoft.com/fwlink/?linkid=2198766")

Problem = tuple[int, str, str | None]  # (HTTP status, message, param)


@cache
def load_spec() -> dict[str, Any]:
    """The inference spec with the nullable fix described above (cached: do not mutate)."""
    spec = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    schemas = spec["components"]["schemas"]
    common = schemas["chatCompletionsRequestCommon"]["properties"]
    for part in schemas["createChatCompletionRequest"]["allOf"]:
        for name, prop in part.get("properties", {}).items():
            if prop.get("nullable") and name in common:
                common[name]["nullable"] = True
    return spec


@cache
def _openapi() -> OpenAPI:
    spec = copy.deepcopy(load_spec())
    spec["servers"] = [{"url": "/openai"}]  # match on the path only, whatever host and port we run on
    # openapi-core cannot check oauth2 (it warns and passes); the "bearer" scheme is an Entra bearer token.
    spec["components"]["securitySchemes"]["bearer"] = {"type": "http", "scheme": "bearer"}
    return OpenAPI.from_dict(spec)  # validates the spec document itself, once


@cache
def _schema_validator(name: str) -> OAS30Validator:
    return OAS30Validator({"$ref": f"#/components/schemas/{name}", "components": load_spec()["components"]})


def schema_errors(schema_name: str, instance: Any) -> list[str]:
    """Validate ``instance`` against ``components/schemas/<schema_name>``; return readable problems."""
    errors = _schema_validator(schema_name).iter_errors(instance)
    return list(dict.fromkeys(f"{where}: {message}" for where, message in map(_describe, errors)))


def _shrink(value: Any) -> Any:
    """Cut long strings: jsonschema repr()s failing instances, megabytes of base64 each time. The spec
    puts no maxLength/pattern on request strings, so validity is unchanged."""
    if isinstance(value, dict):
        return {k: _shrink(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shrink(v) for v in value]
    return value[:4096] if isinstance(value, str) else value


def _leaves(err: Any) -> Iterator[Any]:
    """Leaf errors of a nested oneOf failure, skipping branches ruled out by their ``role``/``type`` enum."""
    if not err.context:
        yield err
        return
    branches: dict[Any, list[Any]] = {}
    for sub in err.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    kept = [errs for errs in branches.values()
            if not any(e.validator == "enum" and list(e.relative_path) in (["role"], ["type"]) for e in errs)]
    for errs in kept or branches.values():
        for sub in errs:
            yield from _leaves(sub)


def _describe(err: Any) -> tuple[str, str]:
    """(JSON path like ``messages[1].content[0].image_url.detail``, message) for the most specific leaf."""
    leaves = list(_leaves(err))
    depth = max(len(e.absolute_path) for e in leaves)
    first = next(e for e in leaves if len(e.absolute_path) == depth)
    same = [e for e in leaves if e.absolute_path == first.absolute_path]
    message = first.message
    if len(same) > 1 and all(e.validator == "enum" for e in same):
        allowed = list(dict.fromkeys(v for e in same for v in e.validator_value))
        message = f"{first.instance!r} is not one of {allowed}"
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first.absolute_path).lstrip(".")
    return where or "body", message


@dataclass(frozen=True)
class ImageRef:
    """One ``image_url`` content part as sent; ``detail`` is None when omitted (the service uses "auto")."""

    url: str
    detail: str | None

    @property
    def data(self) -> bytes | None:
        """Decoded bytes of a data URL (None for http(s) URLs)."""
        match = _DATA_URL.fullmatch(self.url)
        return base64.b64decode(match.group(2)) if match else None


@dataclass
class RecordedRequest:
    method: str
    path: str
    mode: str  # "azure" or "openai"
    deployment: str | None  # from the Azure path, or the body's model on /v1
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON; None if the body was not JSON
    status: int = 0  # what the double answered
    errors: list[str] = field(default_factory=list)  # this request's validation problems

    @property
    def api_version(self) -> str | None:
        return self.query.get("api-version")

    @property
    def auth(self) -> str | None:
        """Which credential the client sent: "api-key", "bearer" or None."""
        if "api-key" in self.headers:
            return "api-key"
        return "bearer" if self.headers.get("authorization", "").lower().startswith("bearer ") else None

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages = self.body.get("messages") if isinstance(self.body, dict) else None
        return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []

    def parts(self, role: str | None = None) -> Iterator[Any]:
        """Content parts of all messages (of ``role``); a string content counts as one part."""
        for message in self.messages:
            if role is None or message.get("role") == role:
                content = message.get("content")
                yield from content if isinstance(content, list) else [content]

    @property
    def images(self) -> list[ImageRef]:
        images = [p.get("image_url") for p in self.parts() if isinstance(p, dict)
                  and p.get("type") == "image_url"]
        return [ImageRef(str(i.get("url")), i.get("detail")) for i in images if isinstance(i, dict)]

    def text_of(self, role: str | None = None) -> str:
        texts = (p.get("text") if isinstance(p, dict) else p for p in self.parts(role))
        return "\n".join(t for t in texts if isinstance(t, str))

    @property
    def text(self) -> str:
        """The user messages' text (string contents and text parts), joined by newlines."""
        return self.text_of("user")


def _filter_results(*, prompt: bool, flagged: str | None = None, severity: str = "high") -> dict[str, Any]:
    results: dict[str, Any] = {c: {"filtered": c == flagged, "severity": severity if c == flagged else "safe"}
                               for c in ("hate", "self_harm", "sexual", "violence")}
    for c in ("jailbreak",) if prompt else ("protected_material_code", "protected_material_text"):
        results[c] = {"filtered": c == flagged, "detected": c == flagged}
    return results


def _error(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


class ConnectionCut(Exception):
    """Raised by the double mid-body: uvicorn closes the socket of a response it has started."""


def _cut_short(head: bytes, status: int, headers: dict[str, str]) -> StreamingResponse:
    """A response that sends its status, its headers and ``head`` (chunked: no length to go by), then drops the
    connection. (uvicorn logs the exception that closes it as an application error.)"""

    async def body() -> Any:
        yield head
        raise ConnectionCut("the test double drops the connection mid-response")

    return StreamingResponse(body(), status, headers, media_type="application/json")


@dataclass(frozen=True)
class Reply:
    """One scripted answer. ``body=None`` means "a chat completion built from the request"."""

    kind: str = "ok"
    status: int = 200
    body: dict[str, Any] | bytes | None = None
    text: str | None = None  # None: the deterministic default text
    finish_reason: str = "stop"
    prompt_tokens: int | None = None  # None: estimated from the request
    completion_tokens: int | None = None
    flagged: str | None = None  # the choice's content-filter category that fired
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to stall before answering
    cut_after: int | None = None  # close the connection after this many bytes of the body (a reset mid-response)

    @classmethod
    def ok(cls, text: str | None = None, *, prompt_tokens: int | None = None,
           completion_tokens: int | None = None, headers: dict[str, str] | None = None) -> Reply:
        return cls(text=text, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                   headers=dict(headers or {}))

    @classmethod
    def truncated(cls, text: str = "The image shows", **kwargs: Any) -> Reply:
        """finish_reason "length"; completion_tokens defaults to the request's max_tokens."""
        return replace(cls.ok(text, **kwargs), kind="truncated", finish_reason="length")

    @classmethod
    def content_filter_completion(cls, text: str | None = None, *, category: str = "violence") -> Reply:
        """HTTP 200, finish_reason "content_filter", ``category`` filtered on the choice, content ``text``."""
        return cls(kind="content_filter_completion", text=text, finish_reason="content_filter",
                   flagged=category)

    @classmethod
    def content_filter_prompt(cls, *, category: str = "violence", severity: str = "high") -> Reply:
        """HTTP 400 in the live shape (``innererror``/``content_filter_result``, not the spec's names)."""
        inner = {"code": "ResponsibleAIPolicyViolation",
                 "content_filter_result": _filter_results(prompt=True, flagged=category, severity=severity)}
        body = _error("content_filter", _PROMPT_FILTERED, param="prompt", status=400, innererror=inner)
        return cls(kind="content_filter_prompt", status=400, body=body)

    @classmethod
    def throttled(cls, retry_after_ms: int = 1000, *, message: str | None = None) -> Reply:
        """429 with ``retry-after-ms`` and ``retry-after`` (whole seconds, rounded up, at least 1)."""
        seconds = max(1, math.ceil(retry_after_ms / 1000))
        message = message or (
            "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version "
            f"{SPEC_API_VERSION} have exceeded token rate limit of your current OpenAI S0 pricing tier. "
            f"Please retry after {seconds} second{'s' * (seconds != 1)}.")
        headers = {"retry-after-ms": str(retry_after_ms), "retry-after": str(seconds),
                   "x-ratelimit-remaining-requests": "0", "x-ratelimit-remaining-tokens": "0"}
        return cls(kind="throttled", status=429, body=_error("429", message), headers=headers)

    @classmethod
    def server_error(cls, status: int = 500, *, retry_after_ms: int = 20) -> Reply:
        """A 5xx with ``retry-after-ms``, as Azure sends on some: short by default, so a client that honours
        it (the SDK does) retries at once instead of the tests sitting through its backoff."""
        code = {500: "InternalServerError", 502: "BadGateway", 503: "ServiceUnavailable", 504: "Timeout"}
        message = "The server had an error while processing your request. Sorry about that!"
        reply = cls.error(status, code.get(status, str(status)), message)
        return replace(reply, kind="server_error", headers={"retry-after-ms": str(retry_after_ms)})

    @classmethod
    def error(cls, status: int, code: str, message: str, **extra: Any) -> Reply:
        """Any other error in Azure's shape: ``{"error": {"code", "message", **extra}}``."""
        return cls(kind="error", status=status, body=_error(code, message, **extra))

    @classmethod
    def raw(cls, body: dict[str, Any] | bytes, status: int = 200) -> Reply:
        """Exactly this JSON (dict) or these bytes, with content-type application/json."""
        return cls(kind="raw", status=status, body=body)

    @classmethod
    def connection_reset(cls, after_bytes: int = 40) -> Reply:
        """Status 200, headers and the first ``after_bytes`` of a completion, then the connection is closed: the
        service (or a proxy in between) dropping the connection mid-response. The client reads a broken body."""
        return replace(cls.ok(), kind="connection_reset", cut_after=after_bytes)

    @classmethod
    def timeout(cls, seconds: float = 30.0, then: Reply | None = None) -> Reply:
        """Stall ``seconds`` (cut short by ``reset``/``stop``), then answer ``then`` (default: success)."""
        return replace(then or cls.ok(), kind="timeout", delay=seconds)

    @classmethod
    def malformed(cls) -> Reply:
        """HTTP 200, content-type application/json, body truncated mid-JSON."""
        body = b'{"id": "chatcmpl-malformed", "object": "chat.completion", "choices": [{"ind'
        return replace(cls.raw(body), kind="malformed")

    @classmethod
    def malformed_schema(cls) -> Reply:
        """HTTP 200 with valid JSON of the wrong shape: no ``choices``, no ``usage``."""
        body = {"id": "chatcmpl-garbage", "object": "chat.completion", "status": "succeeded",
                "result": {"text": "not where the SDK looks"}}
        return replace(cls.raw(body), kind="malformed_schema")


class AzureOpenAIDouble:
    """Loopback Azure OpenAI (see the module docstring): ``with AzureOpenAIDouble() as d`` or start()."""

    def __init__(self, *, api_key: str = "test-key", model: str = DEFAULT_MODEL, port: int = 0) -> None:
        self.api_key = api_key
        self.bearer_token: str | None = None  # None: any non-empty bearer token passes (can't verify Entra)
        self.model = model  # the completions' "model" field
        self.api_versions: set[str] = {SPEC_API_VERSION}
        self.deployments: set[str] | None = None  # None: every deployment exists; else others get 404
        self.max_images, self.max_image_bytes = MAX_IMAGES, MAX_IMAGE_BYTES
        self.image_mime_types: set[str] = set(IMAGE_MIME_TYPES)
        self.prompt_tokens_base = 12  # usage estimate: base + len(all text) // 4 + tokens per image
        self.image_tokens = {"low": 85, "high": 765, "auto": 765}
        self.ratelimit_requests, self.ratelimit_tokens = 1000, 450_000
        self._port = port
        self._lock = threading.RLock()
        self._queue: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []
        self._errors: list[str] = []  # validation problems (and responder crashes), as "METHOD path: problem"
        self._default_reply: Reply | None = None
        self._responder: Callable[[RecordedRequest], Reply | None] | None = None
        self._generation = 0  # bumped by reset() and stop() to cut stalls short
        self._seq = self._used_tokens = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> AzureOpenAIDouble:
        if self._thread is not None:
            raise RuntimeError("AzureOpenAIDouble already started")
        _openapi()  # parse and check the spec now, not in the first request
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart may reuse the port
            sock.bind(("127.0.0.1", self._port))
        except OSError:
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        app = Starlette(routes=[Route("/{path:path}", self._handle,
                                      methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])])
        config = uvicorn.Config(app, lifespan="off", log_config=None, log_level="warning", access_log=False,
                                http="h11", ws="none", loop="asyncio", timeout_graceful_shutdown=2)
        self._server = server = uvicorn.Server(config)
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                                        name=f"aoai-double-{self._port}")
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                sock.close()
                raise RuntimeError("AzureOpenAIDouble did not start")
            time.sleep(0.002)
        return self

    def stop(self) -> None:
        """Stop serving and join the thread (idempotent). Stalled replies are cut short."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        with self._lock:
            self._generation += 1
        server.should_exit = True
        thread.join(5)
        if thread.is_alive():
            server.force_exit = True
            thread.join(5)
        self._server = self._thread = None

    def __enter__(self) -> AzureOpenAIDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``, for ``AzureOpenAI(azure_endpoint=...)``."""
        return f"http://127.0.0.1:{self._port}"

    base_url = endpoint

    @property
    def openai_base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, for ``OpenAI(base_url=...)``."""
        return f"{self.endpoint}/v1"

    def enqueue(self, *replies: Reply) -> None:
        with self._lock:
            self._queue.extend(replies)

    def enqueue_many(self, reply: Reply, times: int) -> None:
        self.enqueue(*([reply] * times))

    @property
    def default_reply(self) -> Reply | None:
        return self._default_reply

    @default_reply.setter
    def default_reply(self, reply: Reply | None) -> None:
        with self._lock:
            self._default_reply = reply

    def set_responder(self, responder: Callable[[RecordedRequest], Reply | None] | None) -> None:
        """Called (in the server thread) for valid requests once the queue is empty; None falls through."""
        with self._lock:
            self._responder = responder

    @property
    def pending_replies(self) -> int:
        with self._lock:
            return len(self._queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def last_request(self) -> RecordedRequest:
        with self._lock:
            return self._requests[-1]

    @property
    def validation_errors(self) -> list[str]:
        with self._lock:
            return list(self._errors)

    def reset(self) -> None:
        """Forget requests, errors, queued replies, responder and default reply; cut stalls short."""
        with self._lock:
            self._queue.clear()
            self._requests.clear()
            self._errors.clear()
            self._default_reply = self._responder = None
            self._used_tokens = 0
            self._generation += 1

    async def _handle(self, request: Request) -> Response:
        raw = await request.body()
        path = request.url.path
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        match = _AZURE_PATH.fullmatch(path)
        mode, deployment = "azure", match.group(1) if match else None
        if path == "/v1/chat/completions":
            model = body.get("model") if isinstance(body, dict) else None
            mode, deployment = "openai", model if isinstance(model, str) else None
        rec = RecordedRequest(request.method, path, mode, deployment, dict(request.query_params),
                              {k.lower(): v for k, v in request.headers.items()}, body)
        # The generation is read before the request is recorded: a stop() or reset() that a test makes once it
        # sees the request always cuts this reply's stall short (read after, it could be missed).
        generation = self._generation
        status, payload, headers, delay, cut_after = self._respond(rec, raw)
        end = time.monotonic() + delay
        while (left := end - time.monotonic()) > 0 and generation == self._generation:
            await asyncio.sleep(min(left, 0.02))
        request_id = str(uuid.uuid4())
        headers = {"apim-request-id": request_id, "x-request-id": request_id, **headers}
        content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        if cut_after is not None:
            return _cut_short(content[:cut_after], status, headers)
        return Response(content, status, headers, media_type="application/json")

    def _respond(self, rec: RecordedRequest, raw: bytes) -> tuple[int, Any, dict[str, str], float, int | None]:
        problems = self._problems(rec, raw)
        with self._lock:
            self._requests.append(rec)
            rec.errors = [message for _, message, _ in problems]
            self._errors.extend(f"{rec.method} {rec.path}: {message}" for message in rec.errors)
        reply = self._reject(rec, problems) or self._next_reply(rec)
        status, payload, headers = self._render(reply, rec)
        rec.status = status
        return status, payload, headers, reply.delay, reply.cut_after

    def _problems(self, rec: RecordedRequest, raw: bytes) -> list[Problem]:
        """Every spec violation and vision-limit breach of the request."""
        problems: list[Problem] = []
        path, query = rec.path, rec.query
        if rec.mode == "openai":  # validate as the equivalent Azure call
            if not rec.deployment:
                problems.append((400, "model: a non-empty string is required on /v1", "model"))
            path = f"/openai/deployments/{rec.deployment or 'unknown'}/chat/completions"
            query = {"api-version": SPEC_API_VERSION}
        if len(raw) > 100_000 and rec.body is not None:
            raw = json.dumps(_shrink(rec.body)).encode()
        mock = MockRequest("http://127.0.0.1", rec.method, path, args=query, headers=rec.headers, data=raw,
                           content_type=rec.headers.get("content-type", "application/octet-stream"))
        for exc in _openapi().iter_request_errors(mock):
            if isinstance(exc, PathError):
                return [(404, f"no such operation in the spec: {exc}", None)]
            if isinstance(exc, SecurityValidationError):
                problems.append((401, "no credentials: send api-key or Authorization: Bearer", None))
            elif hasattr(exc.__cause__, "schema_errors"):
                for where, message in map(_describe, exc.__cause__.schema_errors):
                    problems.append((400, f"request body: {where}: {message}", where))
            else:
                problems.append((400, str(exc), None))
        version = query.get("api-version")
        if version is not None and version not in self.api_versions:
            problems.append((400, f"api-version {version!r} is not one of {sorted(self.api_versions)}", None))
        if isinstance(rec.body, dict):
            if rec.body.get("stream"):
                problems.append((400, "stream=true is not supported by the test double", "stream"))
            problems.extend(self._image_problems(rec))
        return list(dict.fromkeys(problems))  # allOf repeats some property checks

    def _image_problems(self, rec: RecordedRequest) -> list[Problem]:
        problems: list[Problem] = []
        count = 0
        for i, message in enumerate(rec.messages):
            content = message.get("content")
            for j, part in enumerate(content if isinstance(content, list) else []):
                if isinstance(part, dict) and part.get("type") == "image_url":
                    count += 1
                    image = part.get("image_url")
                    url = image.get("url") if isinstance(image, dict) else None
                    if isinstance(url, str) and (problem := self._image_problem(url)):
                        problems.append((400, problem, f"messages[{i}].content[{j}].image_url.url"))
        if count > self.max_images:
            message = f"Too many images in request: {count}. Max is {self.max_images}."
            problems.insert(0, (400, message, "messages"))
        return problems

    def _image_problem(self, url: str) -> str | None:
        if url.startswith(("https://", "http://")):
            return None
        match = _DATA_URL.fullmatch(url)
        if not match:
            return f"invalid image URL {url[:40]!r}: expected https:// or data:image/...;base64,..."
        if (mime := match.group(1).lower()) not in self.image_mime_types:
            return f"unsupported image MIME type {mime!r}; supported: {sorted(self.image_mime_types)}"
        try:
            data = base64.b64decode(match.group(2), validate=True)
        except (binascii.Error, ValueError):
            return "invalid image data: the data URL payload is not valid base64"
        if len(data) > self.max_image_bytes:
            return f"image is {len(data)} bytes; the limit is {self.max_image_bytes} bytes (20 MB)"
        if not (data.startswith(_IMAGE_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")):
            return "invalid image data: the bytes are not a PNG, JPEG, GIF or WEBP image"
        return None

    def _reject(self, rec: RecordedRequest, problems: list[Problem]) -> Reply | None:
        """The error reply for an unknown path, bad credentials, a problem or an unknown deployment."""
        if problems and problems[0][0] == 404:
            return Reply.error(404, "404", "Resource not found")
        key, authorization = rec.headers.get("api-key"), rec.headers.get("authorization", "")
        token = authorization[7:] if authorization.lower().startswith("bearer ") else None
        if rec.mode == "openai":
            authorized = token == self.api_key
        elif key is not None:
            authorized = key == self.api_key
        else:
            authorized = bool(token) and self.bearer_token in (None, token)
        if not authorized:
            return Reply.error(401, "401", _UNAUTHORIZED)
        if problems:
            _, message, param = next((p for p in problems if p[0] == 400), problems[0])
            return Reply.error(400, "BadRequest", message, type="invalid_request_error",
                               **({"param": param} if param else {}))
        if self.deployments is not None and rec.deployment not in self.deployments:
            message = "The API deployment for this resource does not exist."
            return Reply.error(404, "DeploymentNotFound", message)
        return None

    def _next_reply(self, rec: RecordedRequest) -> Reply:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            responder, default = self._responder, self._default_reply
        if responder is not None:
            try:
                reply = responder(rec)
            except Exception as exc:
                with self._lock:
                    self._errors.append(f"{rec.method} {rec.path}: responder raised {exc!r}")
                return Reply.server_error(500)
            if reply is not None:
                return reply
        return default or Reply.ok()

    def _render(self, reply: Reply, rec: RecordedRequest) -> tuple[int, Any, dict[str, str]]:
        if reply.body is not None:
            return reply.status, reply.body, dict(reply.headers)
        body = rec.body if isinstance(rec.body, dict) else {}
        images, text = rec.images, reply.text
        if text is None and reply.flagged is None:
            detail = (images[0].detail or "auto") if images else "n/a"
            text = f"Test double analysis of {len(images)} image(s) at detail={detail}: {rec.text[:40]}"
        prompt_tokens = reply.prompt_tokens
        if prompt_tokens is None:
            prompt_tokens = self.prompt_tokens_base + len(rec.text_of()) // 4 + sum(
                self.image_tokens.get(image.detail or "auto", 765) for image in images)
        completion_tokens = reply.completion_tokens
        if completion_tokens is None:
            limit = body.get("max_tokens") or body.get("max_completion_tokens")
            truncated = reply.finish_reason == "length" and isinstance(limit, int)
            completion_tokens = limit if truncated else max(1, len(text or "") // 4)
        total = prompt_tokens + completion_tokens
        with self._lock:
            self._seq += 1
            self._used_tokens += total
            seq, used_requests, used_tokens = self._seq, len(self._requests), self._used_tokens
        choice_filter = _filter_results(prompt=False, flagged=reply.flagged)
        choices = [{"index": i, "finish_reason": reply.finish_reason, "logprobs": None,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "content_filter_results": choice_filter}
                   for i in range(body["n"] if isinstance(body.get("n"), int) and body["n"] > 1 else 1)]
        payload = {
            "id": f"chatcmpl-AOAIDouble{seq:010d}", "object": "chat.completion", "created": int(time.time()),
            "model": self.model, "system_fingerprint": "fp_d0ub1e5eed",
            "prompt_filter_results": [{"prompt_index": 0,
                                       "content_filter_results": _filter_results(prompt=True)}],
            "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": total, "completion_tokens_details": {"reasoning_tokens": 0}},
        }
        headers = {"x-ratelimit-remaining-requests": str(max(0, self.ratelimit_requests - used_requests)),
                   "x-ratelimit-remaining-tokens": str(max(0, self.ratelimit_tokens - used_tokens)),
                   **reply.headers}
        return reply.status, payload, headers
