"""What is opened is closed (issue 9, part 4): the one keyless credential, and the CLI's storage clients.

Also ``result --wait``: it polls until the result is final and says how it ended in its exit code.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from shared.blob.pipeline import BlobPipeline
from shared.cli import blob as blob_cli
from shared.cli.exit_codes import EXIT_FAILURES, EXIT_INPUT, EXIT_OK
from shared.cli.main import main
from shared.services import CredentialFactory, Services
from tests.aoai_double import Reply
from tests.fake_credentials import FakeAsyncCredential as FakeAsyncTokenCredential


class FakeCredential:
    """A synchronous token credential, like DefaultAzureCredential, that records being closed."""

    def __init__(self) -> None:
        self.closed = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:  # pragma: no cover - never asked offline
        raise AssertionError("no token is needed to build clients")

    def close(self) -> None:
        self.closed += 1


class FakeAsyncCredential:
    def __init__(self) -> None:
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1


async def test_services_make_one_credential_and_aclose_closes_it(make_settings):
    """Keyless model, cache and images account: one sync credential for the two storage clients and one
    async credential for the model, both closed with the Services (the async one's ``close`` awaited)."""
    made: list[FakeCredential] = []
    made_async: list[FakeAsyncTokenCredential] = []
    settings = make_settings(AZURE_OPENAI_API_KEY="", VISION_CACHE_ENABLED="true",
                             AzureWebJobsStorage__tableServiceUri="https://acct.table.core.windows.net",
                             VISION_IMAGES_STORAGE__blobServiceUri="https://acct.blob.core.windows.net")
    services = Services(settings, credential=CredentialFactory(lambda: made.append(FakeCredential()) or made[-1]),
                        model_credential=CredentialFactory(
                            lambda: made_async.append(FakeAsyncTokenCredential()) or made_async[-1]))
    assert services.pipeline is not None and services.analyzer.cache is not None
    assert len(made) == 1 and len(made_async) == 1
    await services.aclose()
    assert made[0].closed == 1 and made_async[0].closed == 1


async def test_services_close_the_storage_credential_when_the_model_credential_fails_to_close():
    class Failing(FakeAsyncTokenCredential):
        async def close(self) -> None:
            raise RuntimeError("session already gone")

    storage = FakeCredential()
    services = Services(credential=CredentialFactory(lambda: storage), model_credential=CredentialFactory(Failing))
    services.credential(), services.model_credential()
    with pytest.raises(RuntimeError, match="already gone"):
        await services.aclose()
    assert storage.closed == 1


async def test_credential_factory_closes_async_credentials_and_nothing_it_never_made():
    never = CredentialFactory(lambda: pytest.fail("made without being asked"))
    await never.aclose()
    fake = FakeAsyncCredential()
    factory = CredentialFactory(lambda: fake)
    assert factory() is factory() is fake
    await factory.aclose()
    assert fake.closed == 1


@pytest.fixture
def blob_env(monkeypatch, tmp_path, storage_connection_string) -> dict[str, str]:
    """The CLI in-process against the session Azurite, in its own containers, no local.settings.json."""
    tag = uuid.uuid4().hex[:10]
    values = {"AzureWebJobsStorage": storage_connection_string, "VISION_PROVIDER": "none",
              "AZURE_OPENAI_ENDPOINT": "", "VISION_CACHE_ENABLED": "false",
              "VISION_INPUT_CONTAINER": f"in-{tag}", "VISION_RESULTS_CONTAINER": f"out-{tag}",
              "VISION_QUARANTINE_CONTAINER": f"bad-{tag}"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    return values


@pytest.fixture
def blob_clients(monkeypatch) -> dict[str, list[int]]:
    """Every BlobServiceClient made, and every one closed (by id)."""
    record: dict[str, list[int]] = {"made": [], "closed": []}
    init, close = BlobServiceClient.__init__, BlobServiceClient.close

    def recording_init(self, *args: Any, **kwargs: Any) -> None:
        record["made"].append(id(self))
        init(self, *args, **kwargs)

    def recording_close(self) -> None:
        record["closed"].append(id(self))
        close(self)

    monkeypatch.setattr(BlobServiceClient, "__init__", recording_init)
    monkeypatch.setattr(BlobServiceClient, "close", recording_close)
    return record


@pytest.mark.azurite
def test_upload_and_result_close_their_clients(blob_env, blob_clients, tmp_path):
    (tmp_path / "a.png").write_bytes(b"not really a png")
    assert main(["upload", str(tmp_path / "a.png"), "--prefix", "closing"]) == EXIT_OK
    assert main(["result", "closing/a.png"]) == EXIT_INPUT  # none yet
    assert main(["result", "closing/a.png", "--wait", "0"]) == EXIT_INPUT
    assert len(blob_clients["made"]) == 3
    assert sorted(blob_clients["closed"]) == sorted(blob_clients["made"])


def write_result(env: dict[str, str], name: str, document: dict[str, Any]) -> None:
    with BlobServiceClient.from_connection_string(env["AzureWebJobsStorage"]) as service:
        container = service.get_container_client(env["VISION_RESULTS_CONTAINER"])
        if not container.exists():
            container.create_container()
        container.upload_blob(f"{name}.json", json.dumps(document), overwrite=True)


@pytest.mark.azurite
@pytest.mark.parametrize(("status", "code"), [("succeeded", EXIT_OK), ("failed", EXIT_FAILURES),
                                              ("processing", EXIT_INPUT)])
def test_result_wait_exit_codes(blob_env, status, code, capsys):
    write_result(blob_env, "w/x.png", {"status": status, "blob": "w/x.png"})
    assert main(["result", "w/x.png", "--wait", "0"]) == code
    out, err = capsys.readouterr()
    if code == EXIT_INPUT:
        assert out == "" and "still processing" in err
    else:
        assert json.loads(out)["status"] == status


@pytest.mark.azurite
def test_result_wait_polls_until_the_result_is_final(blob_env, monkeypatch, capsys):
    answers = iter([None, {"status": "processing"}, {"status": "retrying"}, {"status": "succeeded", "blob": "p"}])
    reads: list[str] = []

    def read_result(self: BlobPipeline, name: str) -> dict[str, Any] | None:
        reads.append(name)
        return next(answers)

    monkeypatch.setattr(BlobPipeline, "read_result", read_result)
    monkeypatch.setattr(blob_cli, "RESULT_POLL_SECONDS", 0)
    assert main(["result", "p", "--wait", "600"]) == EXIT_OK
    assert reads == ["p"] * 4 and json.loads(capsys.readouterr().out)["status"] == "succeeded"


@pytest.mark.parametrize("command", [["analyze"], ["extract", "invoice"], ["compare"], ["batch"]])
def test_cli_model_commands_close_the_keyless_credential(command, aoai, corpus, tmp_path, monkeypatch, capsys):
    """analyze, extract, compare and batch build their analyzer through Services, which closes its credential:
    the async one (azure.identity.aio) the model calls use; the sync storage one is never made (no cache)."""
    made: list[FakeAsyncTokenCredential] = []
    monkeypatch.setattr("azure.identity.aio.DefaultAzureCredential",
                        lambda: made.append(FakeAsyncTokenCredential()) or made[-1])
    monkeypatch.setattr("azure.identity.DefaultAzureCredential", lambda: pytest.fail("sync credential made"))
    for name in [n for n in __import__("os").environ if n.startswith(("AZURE_OPENAI", "OPENAI_", "VISION_"))]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    for name, value in {"AZURE_OPENAI_ENDPOINT": aoai.endpoint, "AZURE_OPENAI_DEPLOYMENT": "gpt-4o",
                        "VISION_CACHE_ENABLED": "false", "VISION_LOCAL_FALLBACK": "off"}.items():
        monkeypatch.setenv(name, value)
    image = str(corpus / "chelsea.png")
    if command == ["compare"]:
        args = [*command, image, str(corpus / "coffee.png"), "--prompt", "What differs?"]
    elif command == ["batch"]:
        folder = tmp_path / "in"
        folder.mkdir()
        (folder / "a.png").write_bytes((corpus / "chelsea.png").read_bytes())
        args = [*command, str(folder), "--out", str(tmp_path / "out.jsonl"), "--quiet"]
    else:
        args = [*command, image]
    if command[0] == "extract":  # a valid structured answer, from the extraction tests' fixture
        invoice = (Path(__file__).parent / "fixtures" / "extraction" / "invoice.json").read_text()
        aoai.enqueue(Reply.ok(invoice))
    assert main(args) == EXIT_OK, capsys.readouterr().err
    assert len(made) == 1 and made[0].closed == 1
    assert aoai.requests and all(r.headers.get("authorization") == "Bearer entra-token-1" for r in aoai.requests)
