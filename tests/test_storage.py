"""Storage clients from settings: the environment is read once, and a configured proxy is still used."""

from __future__ import annotations

import socket
import threading

import pytest
from azure.core.exceptions import AzureError
from azure.storage.blob import ExponentialRetry

from shared.config import Settings
from shared.storage import environment_options, images_blob_service
from tests.azurite import free_port


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"PATH": "/bin", "HOME": "/root"}, {"use_env_settings": False}),
        ({"HTTPS_PROXY": "http://proxy:3128"}, {}),
        ({"no_proxy": "localhost"}, {}),
        ({"REQUESTS_CA_BUNDLE": "/etc/corp-ca.pem", "CURL_CA_BUNDLE": "/etc/other.pem"},
         {"use_env_settings": False, "connection_verify": "/etc/corp-ca.pem"}),
        ({"CURL_CA_BUNDLE": "/etc/corp-ca.pem"}, {"use_env_settings": False, "connection_verify": "/etc/corp-ca.pem"}),
        ({"REQUESTS_CA_BUNDLE": ""}, {"use_env_settings": False}),
    ],
)
def test_environment_is_trusted_only_when_it_configures_something(environ, expected):
    assert environment_options(environ) == expected


class RecordingProxy:
    """A loopback TCP server that records the first line of each request and answers 503."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.lines: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            with connection:
                request = connection.recv(65536).decode("latin-1")
                self.lines.append(request.split("\r\n", 1)[0])
                connection.sendall(b"HTTP/1.1 503 Service Unavailable\r\n"
                                   b"Content-Length: 0\r\nConnection: close\r\n\r\n")

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def proxy():
    recording = RecordingProxy()
    yield recording
    recording.close()


def settings_for(port: int) -> Settings:
    connection = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
                  f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;")
    return Settings.from_mapping({"AzureWebJobsStorage": connection})


def test_a_configured_proxy_is_still_used(proxy, monkeypatch):
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    target = free_port()  # nothing listens there: only the proxy can answer
    service = images_blob_service(settings_for(target), retry_policy=ExponentialRetry(retry_total=0))

    with pytest.raises(AzureError):
        service.get_container_client("images").get_container_properties()

    assert proxy.lines and proxy.lines[0].startswith(f"GET http://127.0.0.1:{target}/devstoreaccount1/images")


def test_without_proxy_settings_requests_go_straight_to_the_account(proxy, monkeypatch):
    """The proxy is set only after the client is built: a client that read the environment once ignores it."""
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy",
                 "ALL_PROXY", "all_proxy", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    account = RecordingProxy()  # stands in for the account: records what reaches it directly
    try:
        service = images_blob_service(settings_for(account.port), retry_policy=ExponentialRetry(retry_total=0))
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        with pytest.raises(AzureError):
            service.get_container_client("images").get_container_properties()
    finally:
        account.close()
    assert proxy.lines == [] and account.lines[0].startswith("GET /devstoreaccount1/images")
