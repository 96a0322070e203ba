"""function_app.py as the Functions host loads it: wiring only, routes reachable through AsgiMiddleware."""

from __future__ import annotations

import json
from pathlib import Path

import azure.functions as func

REPO = Path(__file__).resolve().parent.parent


def test_function_app_registers_the_asgi_http_function():
    import function_app

    assert isinstance(function_app.app, func.AsgiFunctionApp)
    functions = function_app.app.get_functions()
    assert functions, "no function registered"
    bindings = [binding for function in functions for binding in function.get_bindings()]
    trigger = next(b for b in bindings if b.type == "httpTrigger")
    assert trigger.route == "/{*route}"
    assert str(trigger.auth_level).endswith("FUNCTION")


def test_host_json_route_prefix_is_empty():
    host = json.loads((REPO / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensions"]["http"]["routePrefix"] == ""


async def test_health_through_the_functions_asgi_adapter(make_settings, monkeypatch):
    """Invoke the FastAPI app as the Python worker does: an HttpRequest through AsgiMiddleware."""
    from shared.api import Services, create_app

    app = create_app(make_settings())
    middleware = func.AsgiMiddleware(app)
    request = func.HttpRequest(method="GET", url="http://localhost/api/health", headers={}, body=b"")
    response = await middleware.handle_async(request, None)
    assert response.status_code == 200
    assert json.loads(response.get_body())["model"]["configured"] is True
    assert isinstance(app.state.services, Services)


async def test_analyze_through_the_functions_asgi_adapter(make_settings, aoai, corpus):
    from shared.api import create_app

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
