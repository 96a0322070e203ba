"""scripts/dev end to end: Azurite, the watcher and the API under uvicorn, spoken to over real HTTP."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.azurite import Azurite, free_port
from tests.conftest import stop_process_group

REPO = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def dev_server(tmp_path: Path, **settings: str) -> Iterator[tuple[str, dict[str, str], Azurite, subprocess.Popen]]:
    """scripts/dev on free ports until its health says storage is reachable; stopped with Ctrl-C after.

    Yields the API base URL, the environment it runs with, the (not separately started) Azurite
    whose ports and connection string scripts/dev uses, and the scripts/dev process.
    """
    port = free_port()
    storage = Azurite()  # not started here: only its free ports and connection string are used
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_OPENAI", "OPENAI_", "VISION_"))}
    env.pop("AzureWebJobsStorage", None)
    env.update(PORT=str(port), AZURITE_BLOB_PORT=str(storage.blob_port), AZURITE_QUEUE_PORT=str(storage.queue_port),
               AZURITE_TABLE_PORT=str(storage.table_port), AZURITE_LOCATION=str(tmp_path / "azurite"),
               VISION_WATCH_INTERVAL_SECONDS="1", **settings)
    process = subprocess.Popen([str(REPO / "scripts" / "dev")], env=env, cwd=tmp_path, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stdout.read().decode(errors="replace")
            try:
                health = httpx.get(f"{base}/api/health", timeout=2)
                if health.status_code == 200 and health.json()["storage"].get("reachable"):
                    break
            except (httpx.TransportError, ValueError):
                pass
            assert time.monotonic() < deadline, "scripts/dev did not become healthy"
            time.sleep(0.3)
        assert health.json()["status"] == "ok"
        yield base, env, storage, process
    finally:
        stop_process_group(process, grace_seconds=15)


def upload(env: dict[str, str], storage: Azurite, cwd: Path, *args: str) -> list[str]:
    """``python -m shared upload ...`` into scripts/dev's Azurite; the blob names it printed."""
    result = subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), "-m", "shared", "upload", *args],
        env={**env, "AzureWebJobsStorage": storage.connection_string, "PYTHONPATH": str(REPO)},
        cwd=cwd, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def wait_for_result(base: str, name: str, seconds: float) -> dict:
    deadline = time.monotonic() + seconds
    while (response := httpx.get(f"{base}/api/results/{name}", timeout=5)).status_code != 200:
        assert time.monotonic() < deadline, (name, response.text)
        time.sleep(0.3)
    return response.json()


@pytest.mark.timeout(120)
def test_scripts_dev_serves_analyze_with_the_cache_on_azurite(aoai, corpus, tmp_path):
    model = {"AZURE_OPENAI_ENDPOINT": aoai.endpoint, "AZURE_OPENAI_API_KEY": aoai.api_key,
             "AZURE_OPENAI_DEPLOYMENT": "gpt-4o"}
    with dev_server(tmp_path, **model) as (base, env, storage, _):
        image = (corpus / "chelsea.png").read_bytes()
        first = httpx.post(f"{base}/api/analyze", files={"file": ("cat.png", image, "image/png")}, timeout=30)
        second = httpx.post(f"{base}/api/analyze", files={"file": ("cat.png", image, "image/png")}, timeout=30)
        assert first.status_code == 200, first.text
        assert (first.json()["cached"], second.json()["cached"]) == (False, True)
        assert len(aoai.requests) == 1
        bad = httpx.post(f"{base}/api/analyze", content=b"not an image", timeout=30)
        assert bad.status_code == 415
        assert bad.headers["content-type"].startswith("application/problem+json")

        # The drop-a-file flow: upload into Azurite, the watcher processes it, the route serves the result.
        assert upload(env, storage, tmp_path, str(corpus / "coffee.png"), "--prefix", "describe") == [
            "images/describe/coffee.png"]
        result = wait_for_result(base, "describe/coffee.png", 30)
        assert result["status"] == "succeeded" and result["task"] == "describe"
        assert len(aoai.requests) == 2


@pytest.mark.timeout(180)
def test_quickstart_without_any_cloud_account(tmp_path):
    """README's quickstart: scripts/dev with no model settings, drop samples/ into Azurite, read results."""
    with dev_server(tmp_path) as (base, env, storage, _):
        assert httpx.get(f"{base}/api/health", timeout=5).json()["model"]["provider"] == "local"
        names = sorted(line.split("/", 1)[1] for line in upload(env, storage, tmp_path, str(REPO / "samples")))
        assert names == ["describe/chelsea.png", "invoices/invoice.png", "ocr/page.png"]
        results = {name: wait_for_result(base, name, 90) for name in names}
    assert all(doc["status"] == "succeeded" and doc["provider"] == "local" for doc in results.values())
    assert results["invoices/invoice.png"]["data"]["invoice_number"] == "INV-2024-0042"
    assert results["ocr/page.png"]["analysis"].count("\n") >= 3
    assert results["describe/chelsea.png"]["analysis"].startswith("Local analysis")


@pytest.mark.azurite
@pytest.mark.timeout(120)
def test_scripts_dev_stops_all_three_on_sigterm(tmp_path):
    """A supervisor's TERM (to scripts/dev alone, not its group) stops Azurite, the watcher and the API."""
    with dev_server(tmp_path) as (base, _, storage, process):
        children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) == 3
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 143
        for pid in children:
            with pytest.raises(ProcessLookupError):
                os.kill(int(pid), 0)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{base}/api/health", timeout=2)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{storage.blob_port}/", timeout=2)
