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
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from shared.errors import ConfigError
from shared.settings_table import (  # noqa: F401 - re-exported: the settings' one home
    DEFAULT_API_VERSION,
    DEFAULTS,
    MB,
    SETTING_NAMES,
    SETTINGS,
    UNSET_IN_AZURE,
    Setting,
)


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


def _positive_amount(name: str, value: str) -> float:
    try:
        amount = float(value)
    except ValueError:
        raise ConfigError(name, f"expected an amount such as 25 or 7.50, got {value!r}") from None
    if not math.isfinite(amount) or amount <= 0:
        raise ConfigError(name, f"must be a positive amount, got {value!r}")
    return amount


def _table_name(name: str, value: str) -> str:
    """Table names: 3-63 letters and digits, not starting with a digit."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{2,62}", value):
        raise ConfigError(name, f"{value!r} is not a valid table name (3-63 letters and digits, first a letter)")
    return value


_DEPLOYMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _fallbacks(value: str | None) -> tuple[tuple[str, str | None], ...]:
    """``VISION_FALLBACK_DEPLOYMENTS``: ``name`` or ``name@https://endpoint``, comma-separated, in order."""
    entries: list[tuple[str, str | None]] = []
    for raw in (value or "").split(","):
        item = raw.strip()
        if not item:
            continue
        name, _, endpoint = item.partition("@")
        name = name.strip()
        if not _DEPLOYMENT_NAME.match(name):
            raise ConfigError("VISION_FALLBACK_DEPLOYMENTS", f"{name!r} is not a deployment name")
        entry = (name, _url("VISION_FALLBACK_DEPLOYMENTS", endpoint.strip()) if endpoint else None)
        if entry in entries:
            raise ConfigError("VISION_FALLBACK_DEPLOYMENTS", f"{item!r} is listed twice")
        entries.append(entry)
    return tuple(entries)


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
    max_pages: int = 20
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
    connect_timeout_seconds: float = 5.0
    #: (deployment, endpoint or None for the primary's), in the order they are tried after the primary.
    fallback_deployments: tuple[tuple[str, str | None], ...] = ()
    breaker_failures: int = 5
    breaker_cooldown_seconds: float = 30.0
    daily_budget_usd: float | None = None
    budget_table: str = "visionbudget"

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
        budget = get("VISION_DAILY_BUDGET_USD")
        return cls(
            connect_timeout_seconds=float(
                _positive_int("VISION_CONNECT_TIMEOUT_SECONDS", get("VISION_CONNECT_TIMEOUT_SECONDS"))),
            fallback_deployments=_fallbacks(get("VISION_FALLBACK_DEPLOYMENTS")),
            breaker_failures=_positive_int("VISION_BREAKER_FAILURES", get("VISION_BREAKER_FAILURES")),
            breaker_cooldown_seconds=float(
                _positive_int("VISION_BREAKER_COOLDOWN_SECONDS", get("VISION_BREAKER_COOLDOWN_SECONDS"))),
            daily_budget_usd=_positive_amount("VISION_DAILY_BUDGET_USD", budget) if budget else None,
            budget_table=_table_name("VISION_BUDGET_TABLE", get("VISION_BUDGET_TABLE")),
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
            max_pages=_positive_int("VISION_MAX_PAGES", get("VISION_MAX_PAGES")),
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
