"""The test suite. It never exports telemetry: the Application Insights settings a developer's shell may carry are
dropped here, before the conftest imports the app (``shared.http.app`` configures telemetry when it is imported)."""

import os

for _setting in ("APPLICATIONINSIGHTS_CONNECTION_STRING", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
                 "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"):
    os.environ.pop(_setting, None)
