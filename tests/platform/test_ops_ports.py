"""The ops ports, on real processes: `rwa serve --workers 2` serves the metrics of both workers (Prometheus
multiprocess mode, its directory made fresh by the supervisor and removed on stop) on its own port and not on the
API port; X-Forwarded-For counts only from FORWARDED_ALLOW_IPS peers (the login rate limit's client IP);
`rwa worker` answers /healthz, /readyz (broker reachable) and /metrics with job metrics from its dramatiq processes;
the indexer's and agent's readiness read their gauges; the image's healthcheck finds each role's endpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.app import free_port, process_env

RWA = str(Path(sys.executable).with_name("rwa"))
REPO = Path(__file__).resolve().parents[2]
LOGIN = "mutation($e: String!, $p: String!) { login(input: {email: $e, password: $p}) { session { accessToken } } }"


def wait_for(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except httpx.HTTPError as exc:
            value, last = None, exc
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} ({last!r})")


def total(text: str, name: str, **labels: str) -> float:
    out = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and labels.items() <= s.labels.items():
                out += s.value
    return out


def _env(database_url: str, redis_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    defaults = {"LOG_LEVEL": "WARNING", "RWA_PROMETHEUS_BASE_DIR": str(tmp_path / "prom")}
    return process_env(database_url, redis_url, tmp_path / "data", "ops", **{**defaults, **extra})


def _stop(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _serve(env: dict[str, str], tmp_path: Path, workers: int, name: str) -> tuple[str, str, subprocess.Popen]:  # type: ignore[type-arg]
    port, ops = free_port(), free_port()
    log = open(tmp_path / f"{name}.log", "wb")
    proc = subprocess.Popen(
        [RWA, "serve", "--port", str(port), "--workers", str(workers), "--metrics-port", str(ops)],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert proc.poll() is None, (tmp_path / f"{name}.log").read_text()[-3000:]
        return httpx.get(url + "/readyz", timeout=3).status_code == 200

    wait_for(ready, 90, f"rwa serve {name}")
    return url, f"http://127.0.0.1:{ops}", proc


@pytest.fixture
def trusted_api(
    module_database_url: str, redis_url: str, tmp_path: Path
) -> Iterator[tuple[str, str, subprocess.Popen]]:  # type: ignore[type-arg]
    url, ops, proc = _serve(
        _env(module_database_url, redis_url, tmp_path, LOGIN_RATE_PER_MINUTE="2", FORWARDED_ALLOW_IPS="127.0.0.1"),
        tmp_path,
        2,
        "trusted",
    )
    try:
        yield url, ops, proc
    finally:
        _stop(proc)


def _logins(url: str, forwarded_for: list[str]) -> list[str | None]:
    """One failed login per address (distinct accounts: only the per-IP limit can trip); the error code of each."""
    codes = []
    with httpx.Client(timeout=10) as c:
        for i, ip in enumerate(forwarded_for):
            resp = c.post(
                url + "/graphql",
                headers={"x-forwarded-for": ip},
                json={
                    "query": LOGIN,
                    "variables": {"e": f"nobody{i}-{uuid.uuid4().hex[:6]}@example.com", "p": "wrong-password-1"},
                },
            )
            errors = resp.json().get("errors") or [{}]
            codes.append(errors[0].get("extensions", {}).get("code"))
    return codes


def test_serve_metrics_of_every_worker_on_the_ops_port(trusted_api, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, ops, proc = trusted_api
    prom_dirs = list((tmp_path / "prom").glob("rwa-serve-metrics-*"))
    assert [d.name for d in prom_dirs] == [f"rwa-serve-metrics-{proc.pid}"]
    n = 40
    with httpx.Client(timeout=10) as c:  # new connections: the kernel spreads them over both workers
        pids = set()
        for _ in range(n):
            resp = c.post(
                url + "/graphql", json={"query": "query OpsProbe { __typename }"}, headers={"connection": "close"}
            )
            assert resp.status_code == 200
        for _ in range(30):
            pids.add(httpx.get(url + "/readyz", headers={"connection": "close"}).json()["worker"]["pid"])
    assert len(pids) == 2, "the requests did not reach both workers"
    text = httpx.get(ops + "/metrics", timeout=5).text
    assert total(text, "rwa_graphql_requests_total", operation="OpsProbe") == n  # both workers' counts, summed
    assert total(text, "rwa_db_pool_size") > 0
    # a graphql-transport-ws socket counts while open, on whichever worker took it
    from websockets.sync.client import connect

    with connect(url.replace("http", "ws") + "/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send('{"type": "connection_init", "payload": {}}')
        assert '"connection_ack"' in ws.recv(timeout=10)
        text = httpx.get(ops + "/metrics", timeout=5).text
        assert total(text, "rwa_websocket_connections_open") == 1
    assert total(text, "rwa_websocket_connections_accepted_total") == 1
    wait_for(
        lambda: total(httpx.get(ops + "/metrics").text, "rwa_websocket_connections_open") == 0,
        10,
        "the closed socket to stop counting",
    )
    assert httpx.get(url + "/metrics").status_code == 404, "metrics must not be public on the API port"
    assert httpx.get(ops + "/healthz").status_code == 200
    _stop(proc)
    assert not prom_dirs[0].exists(), "the multiprocess directory outlived the supervisor"


def test_forwarded_for_is_believed_from_trusted_proxies_only(
    trusted_api, module_database_url: str, redis_url: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    url, _, _ = trusted_api
    # trusted peer (127.0.0.1): eight clients behind the proxy, one attempt each: nobody is limited
    assert "RATE_LIMITED" not in _logins(url, [f"203.0.113.{i}" for i in range(8)])
    untrusted_url, _, proc = _serve(
        _env(module_database_url, redis_url, tmp_path, LOGIN_RATE_PER_MINUTE="2", FORWARDED_ALLOW_IPS="10.9.9.9"),
        tmp_path,
        1,
        "untrusted",
    )
    try:
        # an untrusted peer spoofing a new address on every attempt still shares one bucket (3 x 2 per minute)
        codes = _logins(untrusted_url, [f"198.51.100.{i}" for i in range(8)])
    finally:
        _stop(proc)
    assert codes[:6] == ["UNAUTHENTICATED"] * 6 and codes[6:] == ["RATE_LIMITED"] * 2, codes


def test_worker_health_and_job_metrics(module_database_url: str, redis_url: str, tmp_path: Path) -> None:
    ops_port = free_port()
    broker = os.environ.get("TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
    env = _env(module_database_url, redis_url, tmp_path, BROKER_URL=broker)
    log = open(tmp_path / "worker.log", "wb")
    proc = subprocess.Popen(
        [RWA, "worker", "--threads", "2", "--metrics-port", str(ops_port)],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    ops = f"http://127.0.0.1:{ops_port}"
    try:
        ready = wait_for(lambda: httpx.get(ops + "/readyz", timeout=5), 90, "the worker's ops port")
        assert ready.status_code == 200, ready.text
        body = ready.json()
        assert body["role"] == "worker" and body["broker"] == {"kind": "rabbitmq", "reachable": True}
        assert httpx.get(ops + "/healthz").json()["dramatiq"] == "running"

        # the scheduler's periodic jobs run in the dramatiq processes: their counts reach the parent's ops port
        def processed() -> str | None:
            text = httpx.get(ops + "/metrics").text
            return text if total(text, "rwa_jobs_processed_total") >= 3 else None

        text = wait_for(processed, 60, "job metrics")
        assert total(text, "rwa_job_seconds_count") >= 3
        assert total(text, "rwa_worker_processes") == 1
    finally:
        _stop(proc)
    assert proc.returncode == 0, (tmp_path / "worker.log").read_text()[-2000:]


def test_worker_not_ready_when_the_broker_is_gone() -> None:
    from jobs.ops import broker_reachable

    port = free_port()  # nothing listens there
    assert broker_reachable(f"amqp://guest:guest@127.0.0.1:{port}/", timeout=1)[0] is False
    assert broker_reachable(f"redis://127.0.0.1:{port}/0", timeout=1)[0] is False


def test_indexer_readiness_writer_lag_standby_and_stopped() -> None:
    from core.ops_server import Heartbeat
    from indexer import metrics
    from indexer.ops import readiness

    chain = 990_001  # labels of its own: nothing else writes them
    c = str(chain)
    check = readiness([chain], Heartbeat(), max_lag=10)
    metrics.IS_LEADER.labels(c).set(0)
    ok, details = check()
    assert ok and details["chains"][c]["role"] == "standby"
    metrics.IS_LEADER.labels(c).set(1)
    metrics.LAG_BLOCKS.labels(c).set(3)
    ok, details = check()
    assert ok and details["chains"][c] == {"role": "writer", "lagBlocks": 3, "indexedBlock": None, "ready": True}
    metrics.LAG_BLOCKS.labels(c).set(11)
    assert check()[0] is False
    metrics.LAG_BLOCKS.labels(c).set(0)
    metrics.REORGS_TOO_DEEP.labels(c).inc()
    ok, details = check()
    assert not ok and details["chains"][c]["role"] == "stopped"
    stale = Heartbeat(stale_after_s=0.0)
    assert readiness([], stale, 10)()[0] is False and stale.check()[0] is False


def test_agent_readiness_fails_while_a_sending_signer_is_out_of_gas() -> None:
    from agent import metrics
    from agent.ops import readiness
    from core.ops_server import Heartbeat

    c, a = "990002", "0x" + uuid.uuid4().hex[:40].ljust(40, "0")
    gone = "0x" + uuid.uuid4().hex[:40].ljust(40, "1")  # a rotated-out key whose operations still hold nonces
    check = readiness(Heartbeat())
    metrics.IS_SENDER.labels(c, a).set(1)
    metrics.GAS_LOW.labels(c, a).set(0)
    metrics.GAS_BALANCE.labels(c, a).set(10**18)
    metrics.REFUSED.labels(c, a).set(2)
    metrics.CANCELING.labels(c, a).set(1)
    metrics.ORPHANED.labels(c, gone).set(3)
    ok, details = check()

    def mine(details: dict) -> tuple[list[dict], list[dict]]:
        return (
            [s for s in details["signers"] if s["address"] == a],
            [o for o in details["orphaned"] if o["chainId"] == int(c)],
        )

    # refused, canceling and orphaned operations are reported; they do not fail readiness (gas_low alone does)
    assert ok and mine(details) == (
        [
            {
                "chainId": 990002,
                "address": a,
                "role": "sender",
                "balanceWei": str(10**18),
                "gasLow": False,
                "refused": 2,
                "canceling": 1,
            }
        ],
        [
            {
                "chainId": 990002,
                "address": gone,
                "operations": 3,
                "reason": "no configured signer has this address any more (key rotated?): its operations wait",
            }
        ],
    )
    metrics.GAS_LOW.labels(c, a).set(1)
    assert check()[0] is False
    metrics.IS_SENDER.labels(c, a).set(0)  # a standby sends nothing: its gas and its counts do not matter
    ok, details = check()
    assert ok and [(s["role"], s["refused"], s["canceling"]) for s in mine(details)[0]] == [("standby", 0, 0)]
    metrics.ORPHANED.labels(c, gone).set(0)  # its key configured again: no longer listed
    assert mine(check()[1])[1] == []


@pytest.mark.parametrize(
    ("argv", "env", "url"),
    [
        (["rwa", "serve", "--host", "0.0.0.0", "--port", "8000"], {}, "http://127.0.0.1:8000/healthz"),
        (["rwa", "serve", "--port=8080"], {}, "http://127.0.0.1:8080/healthz"),
        (["rwa", "index", "run", "--metrics-port", "9111"], {}, "http://127.0.0.1:9111/healthz"),
        (["rwa", "index", "run"], {"RWA_INDEXER_METRICS_PORT": "9201"}, "http://127.0.0.1:9201/healthz"),
        (["rwa", "agent", "run"], {"RWA_AGENT_METRICS_PORT": "9102"}, "http://127.0.0.1:9102/healthz"),
        (["rwa", "worker", "--threads", "4"], {}, "http://127.0.0.1:9103/healthz"),
        (["rwa", "migrate"], {}, None),
    ],
)
def test_image_healthcheck_finds_each_role(argv: list[str], env: dict[str, str], url: str | None) -> None:
    from core.healthcheck import health_url

    assert health_url(argv, env) == url


def test_image_healthcheck_probes_a_live_ops_port() -> None:
    from core.ops_server import OpsServer

    port = free_port()
    server = OpsServer("127.0.0.1", port, role="worker", liveness=lambda: (True, {})).start()
    try:
        check = [sys.executable, "-m", "core.healthcheck", "rwa", "worker", "--metrics-port", str(port)]
        assert subprocess.run(check, cwd=REPO, timeout=30).returncode == 0
        server.liveness = lambda: (False, {"dramatiq": "exited 1"})
        assert subprocess.run(check, cwd=REPO, timeout=30).returncode == 1
    finally:
        server.stop()


def test_metrics_read_while_a_process_creates_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scrape that lands while a new process's metrics file is still empty (prometheus_client opens it, then
    sizes it) answers the metrics, not a 503: the file is read again once whole."""
    import threading

    from prometheus_client import CollectorRegistry, Counter, values
    from prometheus_client.mmap_dict import MmapedDict

    from core.ops_server import metrics_payload

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue(lambda: 1))  # this test's "process"
    counter = Counter("rwa_probe_jobs", "probe", registry=CollectorRegistry())
    counter.inc(3)
    assert total(metrics_payload()[0].decode(), "rwa_probe_jobs_total") == 3

    starting = tmp_path / "counter_424242.db"
    starting.touch()  # the instant between open('a+b') and truncate in MmapedDict.__init__
    sized = threading.Timer(0.005, lambda: MmapedDict(str(starting)).close())
    sized.start()
    try:
        text = metrics_payload()[0].decode()
    finally:
        sized.join()
    assert total(text, "rwa_probe_jobs_total") == 3
