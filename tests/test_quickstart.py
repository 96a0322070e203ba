"""README's Quickstart, run verbatim as a new user would, in a fresh copy of the repository.

The commands are read from README.md itself (the ``bash`` blocks of the "Quickstart" section, up
to its first subsection: "The command line" and "Under the Functions host" are references with
placeholder file names and need Core Tools). ``scripts/dev`` runs in the background exactly as
written, on its default ports (the commands name 127.0.0.1:7071 and Azurite's 10000-10002); the
others run one after another, as in a second terminal, in a copy of the tracked files with no
``local.settings.json`` and no storage or model settings in the environment. Skipped: ``scripts/setup``
and ``scripts/test`` (the copy shares this checkout's ``.venv`` and ``node_modules``; the suite is
what is running) and commands README marks ``# needs a model``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import stop_process_group

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PORTS = (7071, 10000, 10001, 10002)
NOT_RUN = ("scripts/setup", "scripts/test")
SETTING_PREFIXES = ("AZURE_OPENAI", "OPENAI_", "VISION_", "AzureWebJobs", "FUNCTIONS_")


def quickstart_commands(readme: str) -> list[str]:
    """The shell commands of README's Quickstart, in order: continuation lines joined, comment lines dropped."""
    section = readme.split("\n## Quickstart\n", 1)[1]
    section = re.split(r"\n##+ ", section, maxsplit=1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL):
        for command in block.replace("\\\n", " ").splitlines():
            if command.strip() and not command.lstrip().startswith("#"):
                commands.append(command.strip())
    return commands


def test_the_quickstart_is_read_from_readme():
    commands = quickstart_commands((REPO / "README.md").read_text(encoding="utf-8"))
    assert [command.split()[0] for command in commands[:3]] == ["scripts/setup", "scripts/test", "scripts/dev"]
    assert any("shared upload samples/" in command for command in commands)


def port_taken(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def fresh_clone(target: Path) -> Path:
    """The files of this checkout a commit would hold (tracked or new, nothing ignored: no local.settings.json,
    no .azurite), plus links to the installed ``.venv`` and ``node_modules``."""
    tracked = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                             capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    for installed in (".venv", "node_modules"):
        (target / installed).symlink_to(REPO / installed, target_is_directory=True)
    return target


@contextlib.contextmanager
def background(command: str, cwd: Path, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """``command`` in its own process group, stopped with SIGINT (Ctrl-C) to the group, KILL if it lingers."""
    with log.open("wb") as out:
        process = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env, start_new_session=True,
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        stop_process_group(process, grace_seconds=20)


def wait_until_ready(process: subprocess.Popen, log: Path, seconds: float = 90) -> None:
    """What a user waits for before the second terminal: the API answering with its storage reachable."""
    deadline = time.monotonic() + seconds
    while True:
        assert process.poll() is None, log.read_text(errors="replace")
        with contextlib.suppress(httpx.TransportError, ValueError, KeyError):
            health = httpx.get("http://127.0.0.1:7071/api/health", timeout=2)
            if health.status_code == 200 and health.json()["storage"]["reachable"]:
                return
        assert time.monotonic() < deadline, "scripts/dev did not become ready:\n" + log.read_text(errors="replace")
        time.sleep(0.3)


@pytest.mark.azurite
@pytest.mark.timeout(420)
def test_readme_quickstart_runs_verbatim_on_a_fresh_clone(tmp_path):
    if taken := [port for port in DEFAULT_PORTS if port_taken(port)]:
        pytest.skip(f"the Quickstart needs its default ports, and {taken} are in use (a scripts/dev running?)")
    if shutil.which("curl") is None:
        pytest.skip("the Quickstart uses curl")
    clone = fresh_clone(tmp_path / "vision-functions")
    assert not (clone / "local.settings.json").exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith(SETTING_PREFIXES)}
    commands = quickstart_commands((REPO / "README.md").read_text(encoding="utf-8"))
    dev = next(c for c in commands if c.startswith("scripts/dev"))
    second_terminal = [c for c in commands
                       if not c.startswith((*NOT_RUN, "scripts/dev")) and "# needs a model" not in c]
    assert any("shared upload" in c for c in second_terminal)

    outputs: dict[str, str] = {}
    dev_log = tmp_path / "scripts-dev.log"
    with background(dev, clone, env, dev_log) as process:
        wait_until_ready(process, dev_log)
        for command in second_terminal:
            done = subprocess.run(["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True,
                                  timeout=240)
            assert done.returncode == 0, (command, done.stdout, done.stderr, dev_log.read_text(errors="replace"))
            outputs[command] = done.stdout

    assert "created local.settings.json" in dev_log.read_text(errors="replace")
    assert (clone / "local.settings.json").read_text() == (clone / "local.settings.json.example").read_text()

    def output_of(fragment: str) -> str:
        return next(out for command, out in outputs.items() if fragment in command)

    assert sorted(output_of("shared upload").split()) == [
        "images/describe/chelsea.png", "images/invoices/invoice.png", "images/ocr/page.png"]
    waited = json.loads(output_of("shared result"))
    assert waited["status"] == "succeeded" and waited["provider"] == "local"
    assert waited["data"]["invoice_number"] == "INV-2024-0042"
    served = json.loads(output_of("/api/results/"))
    assert served["status"] == "succeeded" and served["blob"] == waited["blob"]
    assert json.loads(output_of("/api/health"))["status"] == "ok"
