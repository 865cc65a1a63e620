"""Embedded Postgres + Redis: real processes, real signals, checked through psutil (/proc).

Each test uses its own data dir under /tmp (never under root's home) and kills, by pid, whatever a
failing test leaves behind.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psutil
import psycopg2
import pytest
import redis

from core import embedded
from core.embedded import EmbeddedError, EmbeddedServices, refuse_root_home, resolve_data_dir, stop_orphans
from core.embedded_registry import load_registry, process_started

REPO = Path(__file__).resolve().parents[1]
EXIT_TIMEOUT_S = 30.0
READY_TIMEOUT_S = 60.0


# --- helpers ------------------------------------------------------------------------------------


def _default_sighup() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


class Runner:
    """`python -m tests.embedded_runner <data_dir>` as a child process."""

    def __init__(self, data_dir: Path, *args: str, prefix: tuple[str, ...] = ()) -> None:
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "tests.embedded_runner", str(data_dir), *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            start_new_session=True,  # its own process group, as a shell job would have
            # signal dispositions as an interactive shell gives them, whatever launched pytest (under nohup the
            # runner would inherit an ignored SIGHUP and, by design, keep ignoring it); `nohup` in `prefix` sets it
            preexec_fn=_default_sighup,
        )
        self._buffer = b""

    def event(self, timeout: float = READY_TIMEOUT_S) -> dict:
        """Next JSON line; reads the raw fd so that select() never misses lines already buffered."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(remaining, 0))
            chunk = os.read(fd, 4096) if ready else b""
            if not chunk:
                self.proc.kill()
                _, err = self.proc.communicate(timeout=10)
                raise AssertionError(f"runner gave no event (rc={self.proc.returncode}):\n{err.decode()}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def ready(self) -> dict:
        assert self.event()["event"] == "starting"
        event = self.event()
        assert event["event"] == "ready"
        return event

    def stop(self, sig: int) -> int:
        self.proc.send_signal(sig)
        try:
            self.proc.wait(EXIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"runner ignored {signal.Signals(sig).name} for {EXIT_TIMEOUT_S}s") from None
        return self.proc.returncode


def alive(pid: int) -> bool:
    return process_started(pid) is not None


def service_pids(data_dir: Path) -> dict[str, list[int]]:
    """Postmaster + its children, and the registered redis-server, as running now."""
    pids: dict[str, list[int]] = {"postgres": [], "redis": []}
    pidfile = data_dir / "pg" / "postmaster.pid"
    if pidfile.exists():
        postmaster = psutil.Process(int(pidfile.read_text().split()[0]))
        pids["postgres"] = [postmaster.pid] + [c.pid for c in postmaster.children(recursive=True)]
    server = load_registry(data_dir).redis
    if server is not None:
        pids["redis"] = [server.pid]
    return pids


def procs_referencing(data_dir: Path) -> list[tuple[int, list[str]]]:
    """Live processes whose command line mentions the data dir (postmaster -D, redis --unixsocket, runners)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        cmdline = proc.info["cmdline"] or []
        if any(str(data_dir) in arg for arg in cmdline):
            found.append((proc.pid, cmdline))
    return found


def procs_named(data_dir: Path, name: str) -> list[int]:
    return [pid for pid, cmdline in procs_referencing(data_dir) if name in cmdline[0]]


def assert_clean(data_dir: Path, pids: dict[str, list[int]]) -> None:
    left = [pid for group in pids.values() for pid in group if alive(pid)]
    assert not left, f"processes left running: {left}"
    assert not procs_referencing(data_dir)
    assert not (data_dir / "redis.sock").exists()


def check_services(database_url: str, redis_url: str) -> None:
    host = parse_qs(urlsplit(database_url).query)["host"][0]
    with psycopg2.connect(host=host, user="postgres", dbname="postgres", connect_timeout=5) as conn:
        with conn.cursor() as cur:
            cur.execute("select 41 + 1")
            assert cur.fetchone() == (42,)
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        assert client.ping() is True
    finally:
        client.close()


@pytest.fixture(scope="session")
def pg_template() -> Iterator[Path]:
    """One initdb per session; most tests copy it and get a warm start (~0.15 s instead of ~1.2 s)."""
    path = Path(tempfile.mkdtemp(prefix="rwa-emb-template-", dir="/tmp"))
    with EmbeddedServices(path, redis=False):
        pass
    yield path / "pg"
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def data_dir(fresh_data_dir: Path, pg_template: Path) -> Path:
    """A data dir with an initialized, stopped cluster (cp -a keeps the pgserver ownership as root)."""
    subprocess.run(["cp", "-a", str(pg_template), str(fresh_data_dir / "pg")], check=True)
    return fresh_data_dir


@pytest.fixture
def fresh_data_dir() -> Iterator[Path]:
    """An empty data dir: start() runs initdb."""
    path = Path(tempfile.mkdtemp(prefix="rwa-emb-", dir="/tmp"))
    try:
        yield path
    finally:
        # Whatever a failed test left behind, killed by pid: runners first, then the servers.
        for pid, _ in procs_referencing(path):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        postmaster = path / "pg" / "postmaster.pid"
        if postmaster.exists():
            try:
                os.kill(int(postmaster.read_text().split()[0]), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        shutil.rmtree(path, ignore_errors=True)


# --- data dir -----------------------------------------------------------------------------------


def test_default_data_dir_is_dot_rwa_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_data_dir(None) == tmp_path.resolve() / ".rwa"
    assert resolve_data_dir("") == tmp_path.resolve() / ".rwa"
    assert resolve_data_dir("rel/dir") == tmp_path.resolve() / "rel" / "dir"
    assert not (tmp_path / ".rwa").exists(), "resolving must not create anything"


def test_root_home_is_refused_only_for_root() -> None:
    homes = [Path("/root")]
    for inside in (Path("/root"), Path("/root/.rwa"), Path("/root/app/.rwa")):
        with pytest.raises(EmbeddedError, match="RWA_DATA_DIR"):
            refuse_root_home(inside, euid=0, homes=homes)
    refuse_root_home(Path("/var/lib/rwa"), euid=0, homes=homes)
    refuse_root_home(Path("/rootfs/rwa"), euid=0, homes=homes)  # a sibling, not inside
    refuse_root_home(Path("/root/.rwa"), euid=1000, homes=homes)


def test_resolve_data_dir_refuses_root_home_as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded.os, "geteuid", lambda: 0)
    with pytest.raises(EmbeddedError, match="/var/lib/rwa"):
        resolve_data_dir("/root/somewhere/.rwa")
    assert resolve_data_dir("/var/tmp/rwa") == Path("/var/tmp/rwa")


# --- in-process API -----------------------------------------------------------------------------


async def test_endpoints_work_with_sqlalchemy_and_redis_asyncio(data_dir: Path) -> None:
    from redis.asyncio import Redis
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    with EmbeddedServices(data_dir) as endpoints:
        assert endpoints.database_url is not None and endpoints.redis_url is not None
        assert endpoints.database_url.startswith("postgresql+asyncpg://postgres@/postgres?host=/")
        assert endpoints.redis_url == f"unix://{data_dir}/redis.sock"
        engine = create_async_engine(endpoints.database_url)
        try:
            async with engine.connect() as conn:
                assert (await conn.execute(text("select current_user"))).scalar() == "postgres"
        finally:
            await engine.dispose()
        client = Redis.from_url(endpoints.redis_url)
        assert await client.ping()
        await client.aclose()
        pids = service_pids(data_dir)
        assert pids["postgres"] and pids["redis"]
    assert_clean(data_dir, pids)
    assert load_registry(data_dir).users == []


def test_only_the_requested_services_start(fresh_data_dir: Path) -> None:
    with EmbeddedServices(fresh_data_dir, postgres=False) as endpoints:
        assert endpoints.database_url is None and endpoints.redis_url is not None
        assert not (fresh_data_dir / "pg").exists()
        pids = service_pids(fresh_data_dir)
    assert_clean(fresh_data_dir, pids)


def test_objects_in_one_process_share_until_the_last_stops(data_dir: Path) -> None:
    first, second = EmbeddedServices(data_dir), EmbeddedServices(data_dir)
    a = first.start()
    b = second.start()
    assert a == b
    pids = service_pids(data_dir)
    first.stop()
    first.stop()  # idempotent
    check_services(b.database_url or "", b.redis_url or "")
    second.stop()
    assert_clean(data_dir, pids)


def test_a_forked_child_leaves_the_parents_services_alone(data_dir: Path) -> None:
    parent = EmbeddedServices(data_dir)
    with parent as endpoints:
        pids = service_pids(data_dir)
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                parent.stop()  # inherited object: must not unregister the parent or stop its servers
                fresh = EmbeddedServices(data_dir)
                fresh.start()  # a new user in the child registers itself and joins the servers
                users = {u.process.pid for u in load_registry(data_dir).users}
                handles = json.loads((data_dir / "pg" / ".handle_pids.json").read_text())
                fresh.stop()
                code = 0 if users == {os.getpid(), os.getppid()} and os.getpid() in handles else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        check_services(endpoints.database_url or "", endpoints.redis_url or "")
        assert [u.process.pid for u in load_registry(data_dir).users] == [os.getpid()]
    assert_clean(data_dir, pids)


# --- signals, sharing, kill -9 ------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_signal_stops_everything(data_dir: Path, sig: signal.Signals) -> None:
    runner = Runner(data_dir)
    ready = runner.ready()
    check_services(ready["database_url"], ready["redis_url"])
    pids = service_pids(data_dir)
    assert pids["postgres"] and pids["redis"]
    rc = runner.stop(sig)
    assert rc in (128 + sig, -sig), f"unexpected exit code {rc}"
    assert_clean(data_dir, pids)


def test_ignored_sighup_stays_ignored_under_nohup(data_dir: Path) -> None:
    runner = Runner(data_dir, prefix=("nohup",))
    ready = runner.ready()
    pids = service_pids(data_dir)
    runner.proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert runner.proc.poll() is None, "nohup asked for SIGHUP to be ignored"
    check_services(ready["database_url"], ready["redis_url"])
    assert runner.stop(signal.SIGTERM) in (128 + signal.SIGTERM, -signal.SIGTERM)
    assert_clean(data_dir, pids)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_signal_under_uvicorn_stops_everything(data_dir: Path, sig: signal.Signals) -> None:
    runner = Runner(data_dir, "--uvicorn")
    ready = runner.ready()
    assert runner.event()["event"] == "serving"  # uvicorn's handlers are installed now
    pids = service_pids(data_dir)
    check_services(ready["database_url"], ready["redis_url"])
    runner.proc.send_signal(sig)
    assert runner.event(EXIT_TIMEOUT_S)["event"] == "uvicorn-stopped"  # graceful shutdown ran first
    rc = runner.proc.wait(EXIT_TIMEOUT_S)
    # uvicorn.run() swallows the KeyboardInterrupt it re-raises for SIGINT, so that exit is a normal one.
    expected = (0,) if sig == signal.SIGINT else (128 + sig, -sig)
    assert rc in expected, f"unexpected exit code {rc}"
    assert_clean(data_dir, pids)


def test_signal_during_cold_start_leaves_nothing(fresh_data_dir: Path) -> None:
    runner = Runner(fresh_data_dir)
    assert runner.event()["event"] == "starting"
    time.sleep(0.3)  # cold start takes ~1.3 s (initdb): the signal lands while start() runs
    runner.stop(signal.SIGTERM)
    assert_clean(fresh_data_dir, service_pids(fresh_data_dir))
    assert not any(p for p in (fresh_data_dir / "pg").glob("postmaster.pid"))


@pytest.mark.parametrize("delay", [0.2, 0.8, 1.5])
def test_ctrl_c_to_the_process_group_during_cold_start(fresh_data_dir: Path, delay: float) -> None:
    """A terminal's Ctrl-C also hits initdb/pg_ctl (same group): nothing may survive, whatever the phase."""
    runner = Runner(fresh_data_dir)
    assert runner.event()["event"] == "starting"
    time.sleep(delay)
    os.killpg(runner.proc.pid, signal.SIGINT)
    try:
        runner.proc.wait(EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        runner.proc.kill()
        raise
    assert_clean(fresh_data_dir, service_pids(fresh_data_dir))
    # and the data dir still works afterwards
    with EmbeddedServices(fresh_data_dir) as endpoints:
        check_services(endpoints.database_url or "", endpoints.redis_url or "")
        pids = service_pids(fresh_data_dir)
    assert_clean(fresh_data_dir, pids)


def test_two_processes_share_one_data_dir(data_dir: Path) -> None:
    first = Runner(data_dir)
    a = first.ready()
    second = Runner(data_dir)
    b = second.ready()
    assert (a["database_url"], a["redis_url"]) == (b["database_url"], b["redis_url"])
    pids = service_pids(data_dir)
    assert len(load_registry(data_dir).users) == 2

    first.stop(signal.SIGTERM)
    assert service_pids(data_dir)["postgres"][0] == pids["postgres"][0]
    assert all(alive(pid) for pid in pids["redis"])
    check_services(b["database_url"], b["redis_url"])
    assert len(load_registry(data_dir).users) == 1

    second.stop(signal.SIGTERM)
    assert_clean(data_dir, pids)


def test_concurrent_cold_starts_on_a_fresh_data_dir(fresh_data_dir: Path) -> None:
    runners = [Runner(fresh_data_dir), Runner(fresh_data_dir)]
    events = [r.ready() for r in runners]
    assert events[0]["database_url"] == events[1]["database_url"]
    assert events[0]["redis_url"] == events[1]["redis_url"]
    pids = service_pids(fresh_data_dir)
    assert len(pids["redis"]) == 1 and len(procs_named(fresh_data_dir, "redis-server")) == 1
    for runner, event in zip(runners, events):
        check_services(event["database_url"], event["redis_url"])
        runner.stop(signal.SIGTERM)
    assert_clean(fresh_data_dir, pids)


def test_long_data_dir_path_uses_short_socket_dirs(fresh_data_dir: Path) -> None:
    deep = fresh_data_dir / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    with EmbeddedServices(deep) as endpoints:
        assert endpoints.redis_url is not None and str(deep) not in endpoints.redis_url
        assert endpoints.database_url is not None and str(deep) not in endpoints.database_url
        check_services(endpoints.database_url, endpoints.redis_url)
        pids = service_pids(deep)
        sock = Path(endpoints.redis_url.removeprefix("unix://"))
        pg_socket_dir = Path(parse_qs(urlsplit(endpoints.database_url).query)["host"][0])
        for private in (pg_socket_dir, sock.parent):  # trust auth / no password: nobody else may get in
            assert private.stat().st_mode & 0o077 == 0, f"{private} is reachable by other users"
    assert_clean(deep, pids)
    assert not sock.exists() and not sock.parent.exists()


def test_next_start_after_kill_9_reuses_then_cleans_up(data_dir: Path) -> None:
    owner = Runner(data_dir)
    owner.ready()
    pids = service_pids(data_dir)
    owner.proc.kill()
    owner.proc.wait(10)
    # SIGKILL cannot be handled: the servers outlive their owner...
    assert all(alive(pid) for pid in pids["redis"] + pids["postgres"][:1])

    successor = Runner(data_dir)
    ready = successor.ready()
    check_services(ready["database_url"], ready["redis_url"])
    registry = load_registry(data_dir)
    assert [u.process.pid for u in registry.users] == [successor.proc.pid], "the dead owner is pruned"
    handles = json.loads((data_dir / "pg" / ".handle_pids.json").read_text())
    assert handles == [successor.proc.pid]

    # ...and the last live user stops what the killed one left.
    successor.stop(signal.SIGTERM)
    assert_clean(data_dir, pids)


def test_kill_9_during_cold_start_then_next_start_works(fresh_data_dir: Path) -> None:
    owner = Runner(fresh_data_dir)
    assert owner.event()["event"] == "starting"
    time.sleep(0.3)  # initdb is running; SIGKILL leaves it (and maybe pg_ctl) running on their own
    owner.proc.kill()
    owner.proc.wait(10)
    with EmbeddedServices(fresh_data_dir) as endpoints:
        check_services(endpoints.database_url or "", endpoints.redis_url or "")
        pids = service_pids(fresh_data_dir)
    assert_clean(fresh_data_dir, pids)


def test_stop_orphans_after_kill_9(data_dir: Path) -> None:
    owner = Runner(data_dir)
    owner.ready()
    pids = service_pids(data_dir)
    owner.proc.kill()
    owner.proc.wait(10)
    assert sorted(stop_orphans(data_dir)) == ["postgres", "redis"]
    assert_clean(data_dir, pids)
    assert stop_orphans(data_dir) == []


def test_stale_socket_and_reused_postmaster_pid_do_not_block_start(data_dir: Path) -> None:
    with EmbeddedServices(data_dir):
        postmaster_pid_file = (data_dir / "pg" / "postmaster.pid").read_text()
    # A killed redis leaves its socket file; a restarted machine/container gives the old postmaster pid
    # to another program (here: this test process).
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(data_dir / "redis.sock"))
    stale.close()
    lines = postmaster_pid_file.split("\n")
    (data_dir / "pg" / "postmaster.pid").write_text("\n".join([str(os.getpid()), *lines[1:]]))

    with EmbeddedServices(data_dir) as endpoints:
        check_services(endpoints.database_url or "", endpoints.redis_url or "")
        pids = service_pids(data_dir)
        assert os.getpid() not in pids["postgres"]
    assert_clean(data_dir, pids)


def test_signal_handlers_take_sigint_even_when_started_ignored() -> None:
    """`rwa ... &` from a script starts with SIGINT ignored: `kill -INT` must still stop it (KeyboardInterrupt, so the
    embedded services are stopped); a SIGHUP ignored by nohup stays ignored. Run in a child process."""
    code = (
        "import os, signal\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN); signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
        "from core.embedded import install_signal_handlers\n"
        "install_signal_handlers()\n"
        "print(signal.getsignal(signal.SIGHUP) == signal.SIG_IGN, flush=True)\n"
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    signal.sigtimedwait([], 0.1) if hasattr(signal, 'sigtimedwait') else None\n"
        "    print('ignored')\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.split() == ["True", "interrupted"], (out.stdout, out.stderr)
