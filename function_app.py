"""Azure Functions entry point: wiring only. The HTTP API lives in shared.api."""

import azure.functions as func

from shared.api import app as api

app = func.AsgiFunctionApp(app=api, http_auth_level=func.AuthLevel.FUNCTION)
