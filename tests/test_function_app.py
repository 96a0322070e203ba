"""function_app.py as the Functions host loads it: wiring only, routes reachable through AsgiMiddleware."""

from __future__ import annotations

import json
from pathlib import Path

import azure.functions as func

REPO = Path(__file__).resolve().parent.parent


def test_function_app_registers_the_asgi_http_function(indexed_functions):
    import function_app

    assert isinstance(function_app.app, func.AsgiFunctionApp)
    [trigger] = [b for b in indexed_functions["http_app_func"].get_bindings() if b.type == "httpTrigger"]
    assert trigger.route == "/{*route}"
    assert str(trigger.auth_level).endswith("FUNCTION")


def test_blob_trigger_binding(indexed_functions):
    """Event Grid source on the input container, through the SDK-type BlobClient binding."""
    function = json.loads(indexed_functions["on_image_uploaded"].get_function_json())
    [binding] = function["bindings"]
    assert binding["type"] == "blobTrigger"
    assert binding["path"] == "images/{name}"
    assert binding["connection"] == "AzureWebJobsStorage"
    assert binding["source"] == "EventGrid"
    # The worker turns on deferred (SDK-type) binding when the parameter has the extension's type.
    import inspect

    from azurefunctions.extensions.bindings.blob import BlobClient

    user_function = indexed_functions["on_image_uploaded"].get_user_function()
    assert inspect.signature(user_function).parameters["client"].annotation is BlobClient


def test_trigger_parameters_follow_the_settings():
    from shared.blob.trigger import blob_source, images_connection, input_path

    env = {"VISION_INPUT_CONTAINER": "uploads", "VISION_IMAGES_STORAGE__blobServiceUri": "https://a.blob.x",
           "VISION_BLOB_SOURCE": "LogsAndContainerScan"}
    assert input_path(env) == "uploads/{name}"
    assert images_connection(env) == "VISION_IMAGES_STORAGE"
    assert blob_source(env) == func.BlobSource.LOGS_AND_CONTAINER_SCAN
    assert (input_path({}), images_connection({}), blob_source({})) == (
        "images/{name}", "AzureWebJobsStorage", func.BlobSource.EVENT_GRID)


def test_host_json_route_prefix_is_empty():
    host = json.loads((REPO / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensions"]["http"]["routePrefix"] == ""


async def test_health_through_the_functions_asgi_adapter(make_settings, monkeypatch):
    """Invoke the FastAPI app as the Python worker does: an HttpRequest through AsgiMiddleware."""
    from shared.http.app import create_app
    from shared.services import Services

    app = create_app(make_settings())
    middleware = func.AsgiMiddleware(app)
    request = func.HttpRequest(method="GET", url="http://localhost/api/health", headers={}, body=b"")
    response = await middleware.handle_async(request, None)
    assert response.status_code == 200
    assert json.loads(response.get_body())["model"]["configured"] is True
    assert isinstance(app.state.services, Services)


async def test_analyze_through_the_functions_asgi_adapter(make_settings, aoai, corpus):
    from shared.http.app import create_app

    app = create_app(make_settings())
    middleware = func.AsgiMiddleware(app)
    request = func.HttpRequest(
        method="POST",
        url="http://localhost/api/analyze",
        params={"detail": "low"},
        headers={"content-type": "image/png"},
        body=(corpus / "chelsea.png").read_bytes(),
    )
    response = await middleware.handle_async(request, None)
    assert response.status_code == 200, response.get_body()
    assert json.loads(response.get_body())["detail"] == "low"
    assert len(aoai.requests) == 1
    bad = func.HttpRequest(method="POST", url="http://localhost/api/analyze", headers={}, body=b"plain text")
    response = await middleware.handle_async(bad, None)
    assert response.status_code == 415
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_the_backfill_timer_does_every_blob_left_without_a_result(storage_connection_string, containers):
    """What the daily timer runs: blobs deferred by the budget or missed by Event Grid get their result."""
    from shared.blob.trigger import run_backfill
    from shared.config import Settings
    from shared.services import Services
    from tests.conftest import distinct_png, upload

    settings = Settings.from_mapping({"VISION_PROVIDER": "local", "VISION_CACHE_ENABLED": "false",
                                      "AzureWebJobsStorage": storage_connection_string, **containers})
    async with Services(settings) as services:
        services.pipeline.ensure_containers()
        upload(services.pipeline, "describe/missed.png", distinct_png(7))
        await run_backfill(services)
        assert services.pipeline.read_result("describe/missed.png")["status"] == "succeeded"
