"""The Functions blob trigger's side: its binding parameters and its body.

The parameters are read when the Functions host indexes ``function_app.py``. They come
straight from the environment (not :func:`shared.config.load_settings`) so a bad unrelated
setting cannot stop the host from indexing the functions; the handler validates everything
on first use and names what is wrong.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import azure.functions as func

from shared.blob.watch import process

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient

    from shared.services import Services

log = logging.getLogger(__name__)

#: When the backfill timer runs (NCRONTAB, UTC): ten minutes after the daily spend budget resets, so blobs
#: deferred by the budget (their deliveries long used up by the host's retries) are done that day.
BACKFILL_SCHEDULE = "0 10 0 * * *"


def input_path(environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return f"{env.get('VISION_INPUT_CONTAINER') or 'images'}/{{name}}"


def images_connection(environ: dict[str, str] | None = None) -> str:
    """The setting prefix of the images account: its own when present, else the host's storage."""
    env = os.environ if environ is None else environ
    if any(key == "VISION_IMAGES_STORAGE" or key.startswith("VISION_IMAGES_STORAGE__") for key in env):
        return "VISION_IMAGES_STORAGE"
    return "AzureWebJobsStorage"


def blob_source(environ: dict[str, str] | None = None) -> func.BlobSource:
    """Event Grid (the only source Flex Consumption supports) unless the setting asks for a container scan."""
    env = os.environ if environ is None else environ
    value = (env.get("VISION_BLOB_SOURCE") or "EventGrid").strip().lower()
    return func.BlobSource.LOGS_AND_CONTAINER_SCAN if value == "logsandcontainerscan" else func.BlobSource.EVENT_GRID


async def handle_blob_event(blob: BlobClient, services: Services) -> None:
    """The blob trigger's body: process the blob; raise only for a redelivery.

    ``services`` is the worker's :class:`~shared.services.Services`, so the trigger shares
    the HTTP app's model client and cache.
    """
    # A BlobCreated event is nearly always a blob with no result yet: the claim creates the result at once,
    # and reads it only when that fails (a redelivery, or a blob replaced under the same name).
    outcome = await services.pipeline.handle(blob, result_absent=True)
    log.info("blob %s: %s%s", outcome.name, outcome.status, f" ({outcome.reason})" if outcome.reason else "")


async def run_backfill(services: Services) -> None:
    """The backfill timer's body: every blob of the input container without a final result, once.

    Blobs wait for it when the daily spend budget deferred them past the host's redeliveries, or when an
    Event Grid delivery was lost; claims keep it from doubling work a delivery is doing.
    """
    summary = await process(services.pipeline, progress=False)
    log.info("backfill: %s", summary.line())
