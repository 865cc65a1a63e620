"""bench/scale_out.py's worker scenario: two `rwa worker` on RabbitMQ, the one sending a webhook killed with
SIGKILL mid-job, and the delivery completed exactly once by the other."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from bench.scale_out_cluster import REPO, RWA


class HoldingReceiver:
    """A webhook receiver whose first POST is never answered (the sender stays mid-job); later ones get 200."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.first = asyncio.Event()
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self) -> HoldingReceiver:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            headers = {
                k.strip().lower(): v.strip()
                for k, v in (line.split(":", 1) for line in head.decode().split("\r\n")[1:] if ":" in line)
            }
            await reader.readexactly(int(headers.get("content-length", "0")))
            entry = {
                "peer_port": writer.get_extra_info("peername")[1],
                "id": headers.get("webhook-id"),
                "answered": False,
            }
            self.requests.append(entry)
            if len(self.requests) == 1:
                self.first.set()
                await reader.read()  # hold it: answer nothing until the sender dies
                return
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            await writer.drain()
            entry["answered"] = True
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


async def worker_killed_mid_job(db_url: str, workdir: Path, env: dict[str, str]) -> dict[str, Any]:
    import asyncpg
    import psutil

    from indexer.lock import asyncpg_dsn

    vhost = f"rwa-scale-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(_rabbitmqctl, "add_vhost", vhost)
    await asyncio.to_thread(_rabbitmqctl, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    receiver = await HoldingReceiver().start()
    wenv = {**env, "BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}"}
    workers = []
    for i in range(2):
        log = open(workdir / f"worker{i}.log", "ab")
        workers.append(
            subprocess.Popen(
                [RWA, "worker", "--threads", "2", "--metrics-port", "0"],
                env=wenv,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    conn = await asyncpg.connect(asyncpg_dsn(db_url))
    delivery = uuid.uuid4()
    try:
        await asyncio.sleep(5)  # both workers consuming
        await conn.execute(
            "INSERT INTO webhook_deliveries (id, url, event, payload, state, attempts, created_at) "
            "VALUES ($1, $2, 'scale.test', '{}'::jsonb, 'PENDING', 0, now())",
            delivery,
            f"http://127.0.0.1:{receiver.port}/hook",
        )
        await asyncio.wait_for(receiver.first.wait(), 60)
        peer = receiver.requests[0]["peer_port"]
        owner = next(
            c.pid
            for c in psutil.net_connections("tcp")
            if c.laddr and c.laddr.port == peer and c.raddr and c.raddr.port == receiver.port and c.pid
        )
        group = os.getpgid(owner)  # the dramatiq processes of one `rwa worker` (its own session)
        victim = next(
            i
            for i, w in enumerate(workers)
            if any(os.getpgid(ch.pid) == group for ch in psutil.Process(w.pid).children())
        )
        os.killpg(group, signal.SIGKILL)  # mid-job: the POST in flight, the row locked, the message unacked
        os.kill(workers[victim].pid, signal.SIGKILL)
        killed = time.monotonic()
        while (
            state := await conn.fetchval("SELECT state FROM webhook_deliveries WHERE id = $1", delivery)
        ) != "DELIVERED":
            assert time.monotonic() - killed < 90, f"not delivered after the kill (state {state})"
            await asyncio.sleep(0.2)
        completed_after = time.monotonic() - killed
        await asyncio.sleep(3)  # anything more would be a second completion
        row = await conn.fetchrow("SELECT state, attempts FROM webhook_deliveries WHERE id = $1", delivery)
    finally:
        await conn.close()
        for w in workers:
            if w.poll() is None:
                os.killpg(w.pid, signal.SIGTERM)
                try:
                    w.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(w.pid, signal.SIGKILL)
            w.wait()  # the killed one's dramatiq group died with it (SIGKILL above); the other stops its own
        assert receiver.server is not None
        receiver.server.close()
        await asyncio.to_thread(_rabbitmqctl, "delete_vhost", vhost)
    answered = [r for r in receiver.requests if r["answered"]]
    return {
        "state": row["state"],
        "attempts": row["attempts"],
        "posts_received": len(receiver.requests),
        "posts_answered": len(answered),
        "same_webhook_id": len({r["id"] for r in receiver.requests}) == 1,
        "completed_after_kill_s": round(completed_after, 2),
        "exactly_once": row["state"] == "DELIVERED" and row["attempts"] == 1 and len(answered) == 1,
    }
