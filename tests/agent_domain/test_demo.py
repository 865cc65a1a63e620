"""`rwa demo` against a real `rwa dev` (README "A first session"): two investors trade and, a few blocks later, the
trade is SETTLED and `rwa index verify` agrees. The demo exits 0 only if every step happened."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable

from tests.test_dev_command import RWA, Dev, start_dev  # noqa: F401  (fixture)


def test_demo_trade_settles_on_rwa_dev(start_dev: Callable[[], Dev]) -> None:  # noqa: F811
    dev = start_dev()
    dev.wait_ready()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "RWA_ENV") and not k.startswith("RPC_URLS_")
    }
    env.update(RWA_DATA_DIR=str(dev.base / "data"), LOG_LEVEL="WARNING")
    demo = subprocess.run(
        [RWA, "demo", "--api", f"{dev.url}/graphql", "--timeout", "120"],
        env=env,
        cwd=dev.base,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = demo.stdout + demo.stderr
    try:
        assert demo.returncode == 0, out[-4000:] + "\n--- rwa dev ---\n" + dev.output()[-3000:]
        assert "trade SETTLED, operation CONFIRMED" in " ".join(out.split()), out
        assert "OK: 2 holder(s)" in out and "0 mismatched" in out, out
    finally:
        os.killpg(dev.proc.pid, signal.SIGINT)
        dev.proc.wait(60)


def test_demo_without_a_running_api_says_so(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """No `rwa dev` listening: one line naming the URL and exit 3, not an httpx traceback."""
    from bench.harness import free_port

    url = f"http://127.0.0.1:{free_port()}/graphql"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(RWA_DATA_DIR=str(tmp_path / "data"), LOG_LEVEL="WARNING")
    demo = subprocess.run(
        [RWA, "demo", "--api", url, "--timeout", "5"], env=env, capture_output=True, text=True, timeout=120
    )
    out = " ".join((demo.stdout + demo.stderr).split())
    assert demo.returncode == 3, out
    assert f"cannot reach the API at {url}" in out and "Traceback" not in out, out
