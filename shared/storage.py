"""Storage clients from settings: connection strings locally, Entra ID (keyless) in Azure.

One place knows how settings name a storage account, so the cache, the blob pipeline
and the CLI agree on it. ``UseDevelopmentStorage=true`` is expanded here because the
table and blob SDKs disagree on how to read it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from azure.storage.blob import BlobServiceClient, ExponentialRetry

from shared.errors import ConfigError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from shared.config import Settings

# What ``UseDevelopmentStorage=true`` stands for: Azurite's default ports and its public,
# documented development key (not a secret).
DEV_CONNECTION_STRING = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)


#: The CA bundle variables ``requests`` honours, in its order of preference.
CA_BUNDLE_SETTINGS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def environment_options(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Storage SDK options that read the environment once instead of on every request.

    With env settings on, ``requests`` scans the whole environment for ``*_proxy`` variables, looks
    for a ``.netrc`` and for a CA bundle on every request: about a tenth of a storage call's CPU, and
    a backfill at the deployment's quota makes thousands (``benchmarks/bench_quota.py``). So unless a
    proxy is configured (its ``no_proxy`` rules need the per-request check), the SDK is told not to
    read the environment, and a CA bundle it names is passed once as ``connection_verify``.
    """
    env = os.environ if environ is None else environ
    if any(name.lower().endswith("_proxy") for name in env):
        return {}
    options: dict[str, Any] = {"use_env_settings": False}
    bundle = next((env[name] for name in CA_BUNDLE_SETTINGS if env.get(name)), None)
    if bundle:
        options["connection_verify"] = bundle
    return options


def normalise_connection_string(connection_string: str) -> str:
    """Expand ``UseDevelopmentStorage=true`` (any case, trailing ``;``): the two SDKs disagree on it."""
    parts = (p.split("=", 1) for p in connection_string.split(";") if "=" in p)
    flags = {name.strip().lower(): value.strip().lower() for name, value in parts}
    return DEV_CONNECTION_STRING if flags.get("usedevelopmentstorage") == "true" else connection_string


def images_blob_service(settings: Settings, *, credential: Callable[[], TokenCredential] | None = None,
                        **options: Any) -> BlobServiceClient:
    """The blob service holding the input, results and quarantine containers.

    ``VISION_IMAGES_STORAGE`` (connection string) or its keyless ``__blobServiceUri`` (with the
    credential ``credential()`` makes, see :func:`shared.services.default_credential`);
    otherwise the host's own ``AzureWebJobsStorage``. Retries are exponential and short
    enough for a blob trigger: storage hiccups are retried here, longer outages raise so
    the host redelivers.
    """
    options.setdefault("retry_policy", ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=3))
    options.setdefault("connection_timeout", 5)
    options.setdefault("read_timeout", 30)
    options = {**environment_options(), **options}
    if settings.images_connection_string:
        return _from_connection_string("VISION_IMAGES_STORAGE", settings.images_connection_string, options)
    if settings.images_blob_service_uri:
        if credential is None:
            raise ConfigError("VISION_IMAGES_STORAGE__blobServiceUri", "keyless access needs an Entra ID credential")
        return BlobServiceClient(settings.images_blob_service_uri, credential=credential(), **options)
    if settings.storage_connection_string:
        return _from_connection_string("AzureWebJobsStorage", settings.storage_connection_string, options)
    raise ConfigError(
        "VISION_IMAGES_STORAGE",
        "no storage account for images: set VISION_IMAGES_STORAGE, VISION_IMAGES_STORAGE__blobServiceUri "
        "or AzureWebJobsStorage (UseDevelopmentStorage=true for Azurite)",
    )


def _from_connection_string(setting: str, value: str, options: dict[str, Any]) -> BlobServiceClient:
    try:
        return BlobServiceClient.from_connection_string(normalise_connection_string(value), **options)
    except ValueError:
        raise ConfigError(setting, "is not a valid storage connection string") from None
