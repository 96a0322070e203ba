"""Settings, read once from the environment (and ``local.settings.json`` when present).

The same names are used everywhere: ``local.settings.json.example``, the Bicep
templates, the CLI and the tests. A missing or invalid setting raises one
:class:`~shared.errors.ConfigError` that names it, so a misconfigured deployment
says exactly what to fix instead of failing somewhere deep in a request.

Environment variables win over ``local.settings.json`` so that the Functions host,
CI and a developer's shell can all override the file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from shared.errors import ConfigError

DEFAULT_API_VERSION = "2024-10-21"
MB = 1024 * 1024


@dataclass(frozen=True)
class Setting:
    """One documented setting: the README table and ``--help`` are generated from these."""

    name: str
    default: str | None
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("AZURE_OPENAI_ENDPOINT", None, "Azure OpenAI resource endpoint, https://<name>.openai.azure.com"),
    Setting("AZURE_OPENAI_API_KEY", None,
            "Key for local work only; when absent, Entra ID (DefaultAzureCredential) is used"),
    Setting("AZURE_OPENAI_DEPLOYMENT", None, "Deployment name of a vision model (required with an endpoint)"),
    Setting("AZURE_OPENAI_API_VERSION", DEFAULT_API_VERSION, "Azure OpenAI data-plane api-version"),
    Setting("AZURE_OPENAI_MODEL", "gpt-4o",
            "Model behind the deployment, for token and cost estimates (gpt-4o, gpt-4o-mini, gpt-4.1-mini...)"),
    Setting("OPENAI_BASE_URL", None,
            "OpenAI-compatible server instead of Azure (OpenAI, Ollama, vLLM), e.g. http://localhost:11434/v1"),
    Setting("OPENAI_API_KEY", None, "Key for OPENAI_BASE_URL (servers that need none accept any value)"),
    Setting("OPENAI_MODEL", None, "Model name sent to OPENAI_BASE_URL (required with it)"),
    Setting("VISION_PROVIDER", "auto",
            "auto (Azure OpenAI if configured, else OPENAI_BASE_URL, else local), azure_openai, "
            "openai_compatible, local (offline OCR engine) or none"),
    Setting("VISION_LOCAL_FALLBACK", "pipeline",
            "When the model service is still unreachable after its retries, let the local engine answer "
            "(marked degraded): off, pipeline (blob flow only, on its last attempt) or all (HTTP too)"),
    Setting("AzureWebJobsStorage", None,
            "Storage connection string (UseDevelopmentStorage=true for Azurite); the Functions host needs it too"),
    Setting("AzureWebJobsStorage__accountName", None,
            "Keyless host storage (Azure): the account the cache and the images default to"),
    Setting("AzureWebJobsStorage__tableServiceUri", None,
            "Keyless alternative to AzureWebJobsStorage for the cache: https://<account>.table.core.windows.net"),
    Setting("VISION_CACHE_ENABLED", "true", "Cache answers in Table Storage (true/false)"),
    Setting("VISION_CACHE_TABLE", "visioncache", "Table holding cached answers"),
    Setting("VISION_CACHE_CONTAINER", "vision-cache", "Blob container for cached answers too big for a table entity"),
    Setting("VISION_CACHE_TTL_SECONDS", "604800", "How long a cached answer is served (default 7 days)"),
    Setting("VISION_MAX_IMAGE_BYTES", str(20 * MB), "Largest accepted upload in bytes (default 20 MiB)"),
    Setting("VISION_MAX_IMAGE_PIXELS", "50000000", "Largest accepted image in pixels, checked before decoding"),
    Setting("VISION_MAX_OUTPUT_TOKENS", "4096", "Upper bound accepted for max_tokens"),
    Setting("VISION_DEFAULT_MAX_TOKENS", "1000", "max_tokens when the caller gives none"),
    Setting("VISION_MODEL_TIMEOUT_SECONDS", "60", "Timeout of one model call"),
    Setting("VISION_MODEL_MAX_RETRIES", "2",
            "Retries of a model call after a 5xx, timeout or connection failure (throttling is waited out "
            "until the deadline instead)"),
    Setting("VISION_JPEG_QUALITY", "85", "JPEG quality of the image sent to the model"),
    Setting("VISION_MODEL_TABLE", None, "JSON object adding or overriding models in the token/price table"),
    Setting("VISION_MAX_IMAGES", "10", "Most images in one compare or sequence request (Azure documents 10)"),
    Setting("VISION_MAX_TOTAL_BYTES", str(50 * MB), "Largest total upload of a multi-image request in bytes"),
    Setting("VISION_MAX_IMAGE_TOKENS", "20000", "Most estimated image tokens in one multi-image request"),
    Setting("VISION_IMAGES_STORAGE", None,
            "Connection string of the images account (blob pipeline); defaults to AzureWebJobsStorage"),
    Setting("VISION_IMAGES_STORAGE__blobServiceUri", None,
            "Keyless alternative to VISION_IMAGES_STORAGE: https://<account>.blob.core.windows.net"),
    Setting("VISION_INPUT_CONTAINER", "images", "Container the blob pipeline watches"),
    Setting("VISION_RESULTS_CONTAINER", "results", "Container receiving <same path>.json results"),
    Setting("VISION_QUARANTINE_CONTAINER", "quarantine", "Container receiving copies of refused images"),
    Setting("VISION_SCHEMAS_CONTAINER", "schemas",
            "Container of JSON Schemas that blob metadata 'schema' points to (extraction in the blob flow)"),
    Setting("VISION_BLOB_SOURCE", "EventGrid",
            "Blob trigger source: EventGrid (Flex Consumption) or LogsAndContainerScan"),
    Setting("VISION_MAX_ATTEMPTS", "5",
            "Deliveries of one blob before a transient failure is recorded as failed (= poisonBlobThreshold)"),
    Setting("VISION_CLAIM_SECONDS", "600", "How long a blob being processed is left to the delivery working on it"),
    Setting("VISION_WATCH_INTERVAL_SECONDS", "5", "Polling interval of python -m shared watch"),
    Setting("VISION_TPM_LIMIT", None,
            "Tokens per minute of the model deployment's quota (empty: learnt from the service's "
            "x-ratelimit-remaining-tokens); calls are paced to it"),
    Setting("VISION_RPM_LIMIT", None,
            "Requests per minute of the deployment (empty: 6 per 1,000 TPM, as Azure assigns)"),
    Setting("VISION_INSTANCES", "1",
            "Processes sharing the deployment (set it to maximumInstanceCount); each paces to its share of the quota"),
    Setting("VISION_HTTP_DEADLINE_SECONDS", "30",
            "How long an HTTP request waits for its turn at the quota before a 429 with Retry-After"),
    Setting("VISION_BACKGROUND_DEADLINE_SECONDS", "300",
            "How long a blob, batch or watch item waits for its turn at the quota before it is redelivered"),
)
SETTING_NAMES = frozenset(s.name for s in SETTINGS)
# Settings the Azure deployment (infra/) deliberately leaves unset. Keys and connection strings are for
# local work only (in Azure every connection is Entra ID: the __accountName / __blobServiceUri forms), the
# OpenAI-compatible server is an alternative to Azure OpenAI, the model table is an optional override, and
# the RPM limit follows from the TPM limit Bicep sets (6 per 1,000 TPM).
# Every other setting is either set by infra/app/function.bicep or has a default here; tests/test_infra.py
# holds the templates to that.
UNSET_IN_AZURE = frozenset({
    "AZURE_OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL",
    "AzureWebJobsStorage", "AzureWebJobsStorage__tableServiceUri", "VISION_IMAGES_STORAGE", "VISION_MODEL_TABLE",
    "VISION_RPM_LIMIT",
})
DEFAULTS: dict[str, str | None] = {s.name: s.default for s in SETTINGS}


def _truthy(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(name, f"expected true or false, got {value!r}")


def _positive_int(name: str, value: str, *, minimum: int = 1) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(name, f"expected a whole number, got {value!r}") from None
    if number < minimum:
        raise ConfigError(name, f"must be at least {minimum}, got {number}")
    return number


BLOB_SOURCES = ("EventGrid", "LogsAndContainerScan")
PROVIDERS = ("auto", "azure_openai", "openai_compatible", "local", "none")
FALLBACKS = ("off", "pipeline", "all")
_CONTAINER_NAME = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


def _container(name: str, value: str) -> str:
    """Container names: 3-63 characters, lowercase letters, digits and single hyphens."""
    if not _CONTAINER_NAME.match(value):
        raise ConfigError(name, f"{value!r} is not a valid container name (3-63 lowercase letters, digits, hyphens)")
    return value


def _url(name: str, value: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in {"http", "https"} or not parsed.netloc:
        raise ConfigError(name, f"expected an http(s) URL, got {value!r}")
    return value.rstrip("/")


@dataclass(frozen=True)
class Settings:
    """Validated settings; build with :meth:`from_mapping` or :func:`load_settings`."""

    azure_openai_endpoint: str | None = None
    azure_openai_api_key: str | None = field(default=None, repr=False)
    azure_openai_deployment: str | None = None
    azure_openai_api_version: str = DEFAULT_API_VERSION
    model: str = "gpt-4o"
    openai_base_url: str | None = None
    openai_api_key: str | None = field(default=None, repr=False)
    openai_model: str | None = None
    storage_connection_string: str | None = field(default=None, repr=False)
    table_service_uri: str | None = None
    cache_enabled: bool = True
    cache_table: str = "visioncache"
    cache_container: str = "vision-cache"
    cache_ttl_seconds: int = 7 * 24 * 3600
    max_image_bytes: int = 20 * MB
    max_image_pixels: int = 50_000_000
    max_output_tokens: int = 4096
    default_max_tokens: int = 1000
    model_timeout_seconds: float = 60.0
    model_max_retries: int = 2
    jpeg_quality: int = 85
    model_table_json: str | None = None
    max_images: int = 10
    max_total_bytes: int = 50 * MB
    max_image_tokens: int = 20000
    images_connection_string: str | None = field(default=None, repr=False)
    images_blob_service_uri: str | None = None
    input_container: str = "images"
    results_container: str = "results"
    quarantine_container: str = "quarantine"
    schemas_container: str = "schemas"
    blob_source: str = "EventGrid"
    max_attempts: int = 5
    claim_seconds: int = 600
    watch_interval_seconds: int = 5
    provider: str = "auto"
    local_fallback: str = "pipeline"
    tpm_limit: int | None = None
    rpm_limit: int | None = None
    instances: int = 1
    http_deadline_seconds: float = 30.0
    background_deadline_seconds: float = 300.0

    @classmethod
    def from_mapping(cls, values: Mapping[str, str]) -> Settings:
        """Validate raw string settings; raise :class:`ConfigError` naming the first bad one."""

        def get(name: str) -> str | None:
            """The trimmed value, else the documented default (from :data:`SETTINGS`, the one place)."""
            raw = values.get(name)
            if raw is None or not str(raw).strip():
                return DEFAULTS[name]
            return str(raw).strip()

        endpoint = get("AZURE_OPENAI_ENDPOINT")
        deployment = get("AZURE_OPENAI_DEPLOYMENT")
        if endpoint:
            endpoint = _url("AZURE_OPENAI_ENDPOINT", endpoint)
            if not deployment:
                raise ConfigError("AZURE_OPENAI_DEPLOYMENT", "is required when AZURE_OPENAI_ENDPOINT is set")
        base_url = get("OPENAI_BASE_URL")
        openai_model = get("OPENAI_MODEL")
        if base_url:
            base_url = _url("OPENAI_BASE_URL", base_url)
            if not openai_model:
                raise ConfigError("OPENAI_MODEL", "is required when OPENAI_BASE_URL is set")
        if endpoint and base_url:
            raise ConfigError("OPENAI_BASE_URL", "set either AZURE_OPENAI_ENDPOINT or OPENAI_BASE_URL, not both")
        table_uri = get("AzureWebJobsStorage__tableServiceUri")
        account = get("AzureWebJobsStorage__accountName")
        if account and not re.fullmatch(r"[a-z0-9]{3,24}", account):
            raise ConfigError("AzureWebJobsStorage__accountName", f"{account!r} is not a storage account name")
        if table_uri:
            table_uri = _url("AzureWebJobsStorage__tableServiceUri", table_uri)
        elif account:
            table_uri = f"https://{account}.table.core.windows.net"
        quality = _positive_int("VISION_JPEG_QUALITY", get("VISION_JPEG_QUALITY"))
        if quality > 95:
            raise ConfigError("VISION_JPEG_QUALITY", f"must be at most 95, got {quality}")
        max_output = _positive_int("VISION_MAX_OUTPUT_TOKENS", get("VISION_MAX_OUTPUT_TOKENS"))
        default_max = _positive_int("VISION_DEFAULT_MAX_TOKENS", get("VISION_DEFAULT_MAX_TOKENS"))
        if default_max > max_output:
            raise ConfigError("VISION_DEFAULT_MAX_TOKENS", f"must not exceed VISION_MAX_OUTPUT_TOKENS ({max_output})")
        model_table = get("VISION_MODEL_TABLE")
        if model_table:
            try:
                parsed = json.loads(model_table)
            except json.JSONDecodeError as exc:
                raise ConfigError("VISION_MODEL_TABLE", f"is not valid JSON: {exc.msg}") from None
            if not isinstance(parsed, dict):
                raise ConfigError("VISION_MODEL_TABLE", "must be a JSON object keyed by model name")
        provider = (get("VISION_PROVIDER")).lower()
        if provider not in PROVIDERS:
            raise ConfigError("VISION_PROVIDER", f"must be one of {', '.join(PROVIDERS)}; got {provider!r}")
        if provider == "azure_openai" and not endpoint:
            raise ConfigError("AZURE_OPENAI_ENDPOINT", "is required when VISION_PROVIDER is azure_openai")
        if provider == "openai_compatible" and not base_url:
            raise ConfigError("OPENAI_BASE_URL", "is required when VISION_PROVIDER is openai_compatible")
        fallback = (get("VISION_LOCAL_FALLBACK")).lower()
        if fallback not in FALLBACKS:
            raise ConfigError("VISION_LOCAL_FALLBACK", f"must be one of {', '.join(FALLBACKS)}; got {fallback!r}")
        blob_source = get("VISION_BLOB_SOURCE")
        if blob_source not in BLOB_SOURCES:
            raise ConfigError("VISION_BLOB_SOURCE", f"must be one of {', '.join(BLOB_SOURCES)}; got {blob_source!r}")
        containers = {}
        for name, default in (("VISION_INPUT_CONTAINER", "images"), ("VISION_RESULTS_CONTAINER", "results"),
                              ("VISION_QUARANTINE_CONTAINER", "quarantine"), ("VISION_SCHEMAS_CONTAINER", "schemas")):
            containers[name] = _container(name, get(name) or default)
        if len(set(containers.values())) != len(containers):
            raise ConfigError("VISION_RESULTS_CONTAINER",
                              "input, results, quarantine and schema containers must differ")
        blob_uri = get("VISION_IMAGES_STORAGE__blobServiceUri")
        if blob_uri:
            blob_uri = _url("VISION_IMAGES_STORAGE__blobServiceUri", blob_uri)
        elif account and not get("VISION_IMAGES_STORAGE") and not get("AzureWebJobsStorage"):
            blob_uri = f"https://{account}.blob.core.windows.net"
        tpm_limit, rpm_limit = get("VISION_TPM_LIMIT"), get("VISION_RPM_LIMIT")
        return cls(
            provider=provider,
            local_fallback=fallback,
            tpm_limit=_positive_int("VISION_TPM_LIMIT", tpm_limit) if tpm_limit else None,
            rpm_limit=_positive_int("VISION_RPM_LIMIT", rpm_limit) if rpm_limit else None,
            instances=_positive_int("VISION_INSTANCES", get("VISION_INSTANCES")),
            http_deadline_seconds=float(
                _positive_int("VISION_HTTP_DEADLINE_SECONDS", get("VISION_HTTP_DEADLINE_SECONDS"))),
            background_deadline_seconds=float(
                _positive_int("VISION_BACKGROUND_DEADLINE_SECONDS", get("VISION_BACKGROUND_DEADLINE_SECONDS"))),
            max_images=_positive_int("VISION_MAX_IMAGES", get("VISION_MAX_IMAGES"), minimum=2),
            max_total_bytes=_positive_int("VISION_MAX_TOTAL_BYTES", get("VISION_MAX_TOTAL_BYTES")),
            max_image_tokens=_positive_int("VISION_MAX_IMAGE_TOKENS", get("VISION_MAX_IMAGE_TOKENS")),
            images_connection_string=get("VISION_IMAGES_STORAGE"),
            images_blob_service_uri=blob_uri,
            input_container=containers["VISION_INPUT_CONTAINER"],
            results_container=containers["VISION_RESULTS_CONTAINER"],
            quarantine_container=containers["VISION_QUARANTINE_CONTAINER"],
            schemas_container=containers["VISION_SCHEMAS_CONTAINER"],
            blob_source=blob_source,
            max_attempts=_positive_int("VISION_MAX_ATTEMPTS", get("VISION_MAX_ATTEMPTS")),
            claim_seconds=_positive_int("VISION_CLAIM_SECONDS", get("VISION_CLAIM_SECONDS")),
            watch_interval_seconds=_positive_int(
                "VISION_WATCH_INTERVAL_SECONDS", get("VISION_WATCH_INTERVAL_SECONDS")
            ),
            azure_openai_endpoint=endpoint,
            azure_openai_api_key=get("AZURE_OPENAI_API_KEY"),
            azure_openai_deployment=deployment,
            azure_openai_api_version=get("AZURE_OPENAI_API_VERSION") or DEFAULT_API_VERSION,
            model=get("AZURE_OPENAI_MODEL"),
            openai_base_url=base_url,
            openai_api_key=get("OPENAI_API_KEY"),
            openai_model=openai_model,
            storage_connection_string=get("AzureWebJobsStorage"),
            table_service_uri=table_uri,
            cache_enabled=_truthy("VISION_CACHE_ENABLED", get("VISION_CACHE_ENABLED")),
            cache_table=get("VISION_CACHE_TABLE"),
            cache_container=get("VISION_CACHE_CONTAINER"),
            cache_ttl_seconds=_positive_int("VISION_CACHE_TTL_SECONDS", get("VISION_CACHE_TTL_SECONDS")),
            max_image_bytes=_positive_int("VISION_MAX_IMAGE_BYTES", get("VISION_MAX_IMAGE_BYTES")),
            max_image_pixels=_positive_int("VISION_MAX_IMAGE_PIXELS", get("VISION_MAX_IMAGE_PIXELS")),
            max_output_tokens=max_output,
            default_max_tokens=default_max,
            model_timeout_seconds=float(
                _positive_int("VISION_MODEL_TIMEOUT_SECONDS", get("VISION_MODEL_TIMEOUT_SECONDS"))
            ),
            model_max_retries=_positive_int(
                "VISION_MODEL_MAX_RETRIES", get("VISION_MODEL_MAX_RETRIES"), minimum=0
            ),
            jpeg_quality=quality,
            model_table_json=model_table,
        )

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (tests and the CLI use it)."""
        current = {f.name: getattr(self, f.name) for f in fields(self)}
        current.update(changes)
        return Settings(**current)

    @property
    def model_provider(self) -> str | None:
        """Which language-model service answers: ``azure_openai``, ``openai_compatible`` or None.

        None means no language model: the local engine (``VISION_PROVIDER`` auto or local) or
        nothing at all (``none``).
        """
        if self.provider in ("local", "none"):
            return None
        if self.azure_openai_endpoint:
            return "azure_openai"
        if self.openai_base_url:
            return "openai_compatible"
        return None

    @property
    def uses_local_engine(self) -> bool:
        """True when the offline engine answers every request (chosen, or nothing else configured)."""
        return self.provider == "local" or (self.provider == "auto" and self.model_provider is None)

    @property
    def deployment_name(self) -> str | None:
        """What the caller sees as ``deployment``: the Azure deployment or the compatible server's model."""
        if self.model_provider == "azure_openai":
            return self.azure_openai_deployment
        if self.model_provider == "openai_compatible":
            return self.openai_model
        return "local" if self.uses_local_engine else None

    @property
    def estimation_model(self) -> str:
        """Model name used for token and cost estimates."""
        return self.openai_model if self.model_provider == "openai_compatible" and self.openai_model else self.model


def read_local_settings(path: Path | None = None) -> dict[str, str]:
    """The ``Values`` of ``local.settings.json`` (Core Tools' format), or {} when absent."""
    candidate = path or Path.cwd() / "local.settings.json"
    if not candidate.is_file():
        return {}
    try:
        document = json.loads(candidate.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError("local.settings.json", f"cannot be read: {exc}") from None
    values = document.get("Values", {}) if isinstance(document, dict) else {}
    if not isinstance(values, dict):
        raise ConfigError("local.settings.json", "'Values' must be an object")
    return {str(k): str(v) for k, v in values.items() if v is not None}


def load_settings(environ: Mapping[str, str] | None = None, local_settings: Path | None = None) -> Settings:
    """Settings from ``local.settings.json`` overlaid by the environment."""
    merged: dict[str, str] = dict(read_local_settings(local_settings))
    merged.update(environ if environ is not None else os.environ)
    return Settings.from_mapping(merged)


def settings_help() -> str:
    """The settings table as plain text, for ``--help``."""
    width = max(len(s.name) for s in SETTINGS)
    lines = ["settings (environment, or Values in local.settings.json):"]
    for setting in SETTINGS:
        default = f" [default: {setting.default}]" if setting.default else ""
        lines.append(f"  {setting.name.ljust(width)}  {setting.help}{default}")
    return "\n".join(lines)
