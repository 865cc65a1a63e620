"""The processes of bench/scale_out.py: the environment they share (one scratch database, a Redis key prefix, a
JWT key) and one `rwa serve` process started, awaited, stopped and killed on a port of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from bench.harness import REDIS_URL, free_port

REPO = Path(__file__).resolve().parent.parent

RWA = str(Path(sys.executable).with_name("rwa"))
PROBE = '{"query": "{ __typename }"}'


def _jwt_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return (
        Ed25519PrivateKey.generate()
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )


def base_env(db_url: str, workdir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": db_url,
        "REDIS_URL": REDIS_URL,
        "RWA_ENV": "test",
        "RWA_DATA_DIR": str(workdir / "data"),
        "RWA_REDIS_PREFIX": f"rwa-scale:{uuid.uuid4().hex[:8]}:",
        "JWT_PRIVATE_KEY": _jwt_key(),
        "KYC_ENCRYPTION_KEY": os.urandom(32).hex(),
        "LOG_LEVEL": "WARNING",
        "MIGRATE_ON_START": "false",
        "RWA_PROMETHEUS_BASE_DIR": str(workdir / "prom"),
    }


class Api:
    """One `rwa serve` process (one uvicorn worker) on a fixed port."""

    def __init__(self, env: dict[str, str], workdir: Path, index: int) -> None:
        self.env, self.workdir, self.index = env, workdir, index
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.workdir / f"api{self.index}.log", "ab")
        self.proc = subprocess.Popen(
            [RWA, "serve", "--port", str(self.port), "--metrics-port", "0"],
            env=self.env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, f"api{self.index} exited"
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"api{self.index} not ready in {timeout}s")

    def terminate(self) -> int:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(40)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
