"""The CLI: same service, same settings; errors become exit codes and messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from shared.cli.exit_codes import EXIT_CONFIG, EXIT_INPUT, EXIT_MODEL, EXIT_OK
from shared.cli.main import main
from shared.imaging import prepare_image

REPO = Path(__file__).resolve().parent.parent


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_OPENAI", "OPENAI_", "VISION_"))}
    clean.update(env or {})
    clean["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "shared", *args], capture_output=True, text=True, env=clean, cwd=cwd or REPO,
        timeout=120,
    )


def test_help_documents_commands_and_settings():
    result = run("--help")
    assert result.returncode == 0
    for word in ("analyze", "prepare", "serve", "compare", "sequence", "AZURE_OPENAI_ENDPOINT",
                 "VISION_MAX_IMAGE_BYTES"):
        assert word in result.stdout
    analyze_help = run("analyze", "--help").stdout
    assert "--prompt" in analyze_help and "--detail" in analyze_help and "AZURE_OPENAI_DEPLOYMENT" in analyze_help


def test_prepare_reports_what_would_be_sent(corpus, tmp_path):
    result = run("prepare", str(corpus / "astronaut.png"), "--detail", "high", "--json", cwd=tmp_path)
    assert result.returncode == EXIT_OK, result.stderr
    report = json.loads(result.stdout)
    assert report["sent"]["width"] == 512 and report["sent"]["height"] == 512
    assert report["estimated_image_tokens"] == 85 + 170  # one 512 tile
    assert report["estimated_input_cost_usd"] > 0
    text = run("prepare", str(corpus / "astronaut.png"), cwd=tmp_path)
    assert "512x512" in text.stdout and "tokens" in text.stdout


def test_prepare_uses_the_providers_preferences(corpus, tmp_path, monkeypatch, capsys):
    """prepare reports what analyze sends: the offline engine asks for high detail at JPEG q95 whatever is asked."""
    for name in ("AZURE_OPENAI_ENDPOINT", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VISION_CACHE_ENABLED", "false")
    monkeypatch.setenv("VISION_PROVIDER", "local")
    data = (corpus / "astronaut.png").read_bytes()
    assert main(["prepare", str(corpus / "astronaut.png"), "--detail", "low", "--json"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    sent = prepare_image(data, "high", jpeg_quality=95)
    assert (report["provider"], report["detail"]) == ("local", "high")
    assert report["sent"]["bytes"] == len(sent.data) and report["estimated_image_tokens"] == sent.estimated_tokens
    monkeypatch.setenv("VISION_PROVIDER", "none")  # a billed model: the caller's detail and VISION_JPEG_QUALITY
    assert main(["prepare", str(corpus / "astronaut.png"), "--detail", "low", "--json"]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["detail"] == "low" and report["sent"]["bytes"] == len(prepare_image(data, "low").data)


def test_analyze_json_against_the_double(aoai, corpus, tmp_path):
    env = {
        "AZURE_OPENAI_ENDPOINT": aoai.endpoint,
        "AZURE_OPENAI_API_KEY": aoai.api_key,
        "AZURE_OPENAI_DEPLOYMENT": "gpt-4o",
        "VISION_CACHE_ENABLED": "false",
    }
    result = run("analyze", str(corpus / "rocket.jpg"), "--prompt", "What is it?", "--json", env=env, cwd=tmp_path)
    assert result.returncode == EXIT_OK, result.stderr
    document = json.loads(result.stdout)
    assert document["analysis"] and document["cached"] is False
    assert aoai.requests[0].body["messages"][-1]["content"][0]["text"] == "What is it?"
    assert aoai.api_key not in result.stdout + result.stderr


def test_local_settings_json_is_read(aoai, corpus, tmp_path):
    (tmp_path / "local.settings.json").write_text(json.dumps({"Values": {
        "AZURE_OPENAI_ENDPOINT": aoai.endpoint, "AZURE_OPENAI_API_KEY": aoai.api_key,
        "AZURE_OPENAI_DEPLOYMENT": "from-file", "VISION_CACHE_ENABLED": "false",
    }}))
    result = run("analyze", str(corpus / "chelsea.png"), cwd=tmp_path)
    assert result.returncode == EXIT_OK, result.stderr
    assert result.stdout.strip()
    assert aoai.requests[0].deployment == "from-file"


def test_exit_codes(corpus, tmp_path, monkeypatch, capsys):
    for name in ("AZURE_OPENAI_ENDPOINT", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VISION_CACHE_ENABLED", "false")
    monkeypatch.setenv("VISION_PROVIDER", "none")
    assert main(["analyze", str(corpus / "chelsea.png")]) == EXIT_MODEL
    assert "AZURE_OPENAI_ENDPOINT" in capsys.readouterr().err
    assert main(["prepare", str(tmp_path / "missing.png")]) == EXIT_INPUT
    (tmp_path / "notes.txt").write_text("not an image")
    assert main(["prepare", str(tmp_path / "notes.txt")]) == EXIT_INPUT
    assert "image" in capsys.readouterr().err
    monkeypatch.setenv("VISION_MAX_IMAGE_PIXELS", "none")
    assert main(["prepare", str(corpus / "chelsea.png")]) == EXIT_CONFIG
    assert "VISION_MAX_IMAGE_PIXELS" in capsys.readouterr().err


def test_upload_process_and_result_commands(aoai, corpus, tmp_path, storage_connection_string):
    env = {
        "AZURE_OPENAI_ENDPOINT": aoai.endpoint,
        "AZURE_OPENAI_API_KEY": aoai.api_key,
        "AZURE_OPENAI_DEPLOYMENT": "gpt-4o",
        "AzureWebJobsStorage": storage_connection_string,
        "VISION_CACHE_ENABLED": "false",
        "VISION_INPUT_CONTAINER": "cli-in",
        "VISION_RESULTS_CONTAINER": "cli-out",
        "VISION_QUARANTINE_CONTAINER": "cli-bad",
    }
    (tmp_path / "notes.png").write_text("not really a png")
    uploaded = run("upload", str(corpus / "chelsea.png"), str(tmp_path / "notes.png"), "--prefix", "ocr",
                   env=env, cwd=tmp_path)
    assert uploaded.returncode == EXIT_OK, uploaded.stderr
    assert uploaded.stdout.split() == ["cli-in/ocr/chelsea.png", "cli-in/ocr/notes.png"]
    processed = run("process", "--quiet", env=env, cwd=tmp_path)
    assert processed.returncode == EXIT_OK, processed.stderr
    assert "done: 1, skipped: 0, failed: 1" in processed.stderr
    again = run("process", "--quiet", env=env, cwd=tmp_path)
    assert "done: 0, skipped: 0, failed: 0" in again.stderr
    result = run("result", "ocr/chelsea.png", env=env, cwd=tmp_path)
    assert json.loads(result.stdout)["task"] == "ocr"
    failed = json.loads(run("result", "ocr/notes.png", env=env, cwd=tmp_path).stdout)
    assert failed["status"] == "failed" and failed["quarantined"] == "cli-bad/ocr/notes.png"
    assert run("result", "ocr/missing.png", env=env, cwd=tmp_path).returncode == EXIT_INPUT
    assert len(aoai.requests) == 1
