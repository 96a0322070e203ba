"""Every setting the service reads, with its default and its help: one table, the single source.

``local.settings.json.example``, the README table, ``--help`` and the Bicep app settings are all
checked against it (tests/test_deploy.py); :mod:`shared.config` validates the values.
"""

from __future__ import annotations

from dataclasses import dataclass

MB = 1024 * 1024
DEFAULT_API_VERSION = "2024-10-21"


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
    Setting("VISION_JPEG_QUALITY", "85",
            "JPEG quality of the image sent to the model (sent at the service's view, at `high`: the view's "
            "own finer tables, never coarser than this quality)"),
    Setting("VISION_MODEL_TABLE", None, "JSON object adding or overriding models in the token/price table"),
    Setting("VISION_MAX_IMAGES", "10", "Most images in one compare or sequence request (Azure documents 10)"),
    Setting("VISION_MAX_TOTAL_BYTES", str(50 * MB), "Largest total upload of a multi-image request in bytes"),
    Setting("VISION_MAX_IMAGE_TOKENS", "20000", "Most estimated image tokens in one multi-image request"),
    Setting("VISION_MAX_PAGES", "20",
            "Most pages of a PDF or multi-page TIFF read in one request (choose others with pages=1-3,7)"),
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
    Setting("VISION_CONNECT_TIMEOUT_SECONDS", "5",
            "How long connecting to the model service may take (VISION_MODEL_TIMEOUT_SECONDS bounds the answer)"),
    Setting("VISION_FALLBACK_DEPLOYMENTS", None,
            "Deployments tried in order when the primary is down, its breaker open or its quota past the "
            "deadline: comma-separated 'name' (same endpoint) or 'name@https://other.openai.azure.com'; "
            "a name that is a model (gpt-4o-mini) is priced as that model"),
    Setting("VISION_BREAKER_FAILURES", "5",
            "Consecutive failed calls (after their retries) that open a deployment's circuit breaker"),
    Setting("VISION_BREAKER_COOLDOWN_SECONDS", "30",
            "How long an open breaker skips its deployment before one probe call may try it again"),
    Setting("VISION_DAILY_BUDGET_USD", None,
            "Spend per UTC day across all instances (empty: none); past it new model calls are refused "
            "until midnight UTC, cache hits are still served and blobs wait"),
    Setting("VISION_BUDGET_TABLE", "visionbudget", "Table holding the daily spend counter"),
)
SETTING_NAMES = frozenset(s.name for s in SETTINGS)
# Settings the Azure deployment (infra/) deliberately leaves unset. Keys and connection strings are for
# local work only (in Azure every connection is Entra ID: the __accountName / __blobServiceUri forms), the
# OpenAI-compatible server is an alternative to Azure OpenAI, the model table is an optional override, and
# the RPM limit follows from the TPM limit Bicep sets (6 per 1,000 TPM); fallback deployments and a spend
# budget are choices the deployer adds.
# Every other setting is either set by infra/app/function.bicep or has a default here; tests/test_infra.py
# holds the templates to that.
UNSET_IN_AZURE = frozenset({
    "AZURE_OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL",
    "AzureWebJobsStorage", "AzureWebJobsStorage__tableServiceUri", "VISION_IMAGES_STORAGE", "VISION_MODEL_TABLE",
    "VISION_RPM_LIMIT", "VISION_FALLBACK_DEPLOYMENTS", "VISION_DAILY_BUDGET_USD",
})
DEFAULTS: dict[str, str | None] = {s.name: s.default for s in SETTINGS}
