"""Azure Functions entry point: wiring only. The HTTP API lives in shared.api, the blob flow in shared.pipeline."""

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob

from shared.api import app as api
from shared.pipeline import handle_blob_event
from shared.trigger import blob_source, images_connection, input_path

app = func.AsgiFunctionApp(app=api, http_auth_level=func.AuthLevel.FUNCTION)


@app.blob_trigger(arg_name="client", path=input_path(), connection=images_connection(), source=blob_source())
async def on_image_uploaded(client: blob.BlobClient) -> None:
    await handle_blob_event(client, api.state.services)
