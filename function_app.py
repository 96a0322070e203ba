"""Azure Functions entry point: wiring only. The HTTP API lives in shared.http, the blob flow in shared.blob."""

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob

from shared.blob.trigger import (
    BACKFILL_SCHEDULE,
    blob_source,
    handle_blob_event,
    images_connection,
    input_path,
    run_backfill,
)
from shared.http.app import app as api
from shared.http.app import functions_asgi

app = func.AsgiFunctionApp(app=functions_asgi, http_auth_level=func.AuthLevel.FUNCTION)


@app.blob_trigger(arg_name="client", path=input_path(), connection=images_connection(), source=blob_source())
async def on_image_uploaded(client: blob.BlobClient) -> None:
    await handle_blob_event(client, api.state.services)


@app.timer_trigger(arg_name="timer", schedule=BACKFILL_SCHEDULE, run_on_startup=False, use_monitor=True)
async def backfill_pending_blobs(timer: func.TimerRequest) -> None:
    await run_backfill(api.state.services)
