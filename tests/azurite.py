"""Start and stop a private Azurite (blob, queue, table) on free loopback ports.

The tests own their emulator: each session starts one from the repo's
``node_modules`` with a temp ``--location`` and stops it by PID, so nothing
outside loopback is touched and no state leaks between runs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = REPO_ROOT / "node_modules" / ".bin" / "azurite"

# The well-known development account (public, documented by Microsoft; not a secret).
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port free now and never handed out before in this process.

    The kernel may give the same ephemeral port to two quick ``bind(0)`` calls once the first socket
    is closed, so a test asking for four ports (scripts/dev's API and Azurite's three) could get one
    twice; remembering what was handed out rules that out.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def _wait_for_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


@dataclass
class Azurite:
    """One running Azurite process; ``connection_string`` points at it."""

    blob_port: int = field(default_factory=free_port)
    queue_port: int = field(default_factory=free_port)
    table_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    location: str | None = None

    @property
    def connection_string(self) -> str:
        return (
            "DefaultEndpointsProtocol=http;"
            f"AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.blob_port}/{DEV_ACCOUNT};"
            f"QueueEndpoint=http://127.0.0.1:{self.queue_port}/{DEV_ACCOUNT};"
            f"TableEndpoint=http://127.0.0.1:{self.table_port}/{DEV_ACCOUNT};"
        )

    def start(self) -> Azurite:
        if not AZURITE_BIN.exists():
            raise RuntimeError(f"Azurite is not installed at {AZURITE_BIN}; run scripts/setup")
        if self.location is None:
            self.location = tempfile.mkdtemp(prefix="azurite-")
        command = [
            str(AZURITE_BIN),
            "--blobHost", "127.0.0.1", "--blobPort", str(self.blob_port),
            "--queueHost", "127.0.0.1", "--queuePort", str(self.queue_port),
            "--tableHost", "127.0.0.1", "--tablePort", str(self.table_port),
            "--location", self.location,
            "--skipApiVersionCheck", "--silent", "--loose",
        ]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for port in (self.blob_port, self.queue_port, self.table_port):
            if not _wait_for_port(port, timeout=30):
                self.stop()
                raise RuntimeError(f"Azurite did not open port {port} within 30 s")
        return self

    def stop(self, *, keep_data: bool = False) -> None:
        """Stop the process group by PID; ``keep_data`` allows a later restart on the same data."""
        if self.process is not None and self.process.poll() is None:
            try:
                # Azurite often ignores SIGTERM once it has served requests; do not wait long.
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=2)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self.process = None
        if not keep_data and self.location:
            shutil.rmtree(self.location, ignore_errors=True)
            self.location = None

    def restart(self) -> None:
        self.stop(keep_data=True)
        self.start()
