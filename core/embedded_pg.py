"""Embedded Postgres through the `pgserver` wheel, made safe for kill -9 and for shared data dirs.

pgserver keeps a per-pgdata list of client pids (<pgdata>/.handle_pids.json) and stops the server
when the last one leaves. A killed client never leaves, so before joining or leaving we drop the pids
of dead processes; and a postmaster.pid whose pid now belongs to another program (a restarted
container) is removed so that postgres can start again.
Callers hold the data-dir lock (core.embedded_registry.data_dir_lock) around join() and leave().
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import psutil

log = logging.getLogger(__name__)

HANDLE_PIDS = ".handle_pids.json"


def _pgserver() -> ModuleType:
    # Imported lazily: the import reads platformdirs and warns when XDG_RUNTIME_DIR is unset (root, containers).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    quiet = logging.getLogger("pgserver")
    if quiet.level == logging.NOTSET:
        quiet.setLevel(logging.WARNING)  # its INFO lines are every command line it runs
    return pgserver


def _server_class() -> Any:
    return _pgserver().postgres_server.PostgresServer


def database_url(socket_dir: Path) -> str:
    return f"postgresql+asyncpg://postgres@/postgres?host={quote(str(socket_dir), safe='/')}"


def prune_handle_pids(pgdata: Path, dead_pids: set[int]) -> list[int]:
    """Drop pids that are gone, or known dead rwa processes (covers pid reuse); return the kept ones."""
    path = pgdata / HANDLE_PIDS
    with _server_class()._lock:  # the lock pgserver itself takes around this file
        torn = False
        try:
            pids = [int(p) for p in json.loads(path.read_text())]
        except FileNotFoundError:
            return []
        except (ValueError, TypeError):
            pids, torn = [], True  # torn write from a killed process
        kept = [p for p in pids if p not in dead_pids and psutil.pid_exists(p)]
        if kept != pids or torn:
            path.write_text(json.dumps(kept))
        if kept != pids:
            log.info("pruned dead pgserver handles %s from %s", sorted(set(pids) - set(kept)), path)
        return kept


def remove_stale_postmaster_pid(pgdata: Path) -> None:
    """postgres refuses to start while postmaster.pid names any live pid; drop it if that pid is not postgres."""
    pidfile = pgdata / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError):
        return
    try:
        # A negative pid marks a single-user backend (initdb's bootstrap); none runs after wait_for_orphaned_tools.
        proc = psutil.Process(pid) if pid > 0 else None
        if proc is not None and proc.name() == "postgres" and proc.status() != psutil.STATUS_ZOMBIE:
            return
    except psutil.NoSuchProcess:
        pass
    log.warning("removing stale %s (pid %s is not a running postgres)", pidfile, pid)
    pidfile.unlink(missing_ok=True)


def wait_for_orphaned_tools(pgdata: Path, timeout: float = 60.0) -> None:
    """An initdb or pg_ctl whose caller was killed keeps running on pgdata; let it finish first."""
    needle = str(pgdata)
    tools = [
        p
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] in ("initdb", "pg_ctl") and needle in (p.info["cmdline"] or [])
    ]
    if tools:
        log.warning("waiting for %s still working on %s", [p.info["name"] for p in tools], pgdata)
        psutil.wait_procs(tools, timeout=timeout)


def running_postmaster(pgdata: Path) -> psutil.Process | None:
    """The live postmaster serving pgdata, if any (read from postmaster.pid)."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        if pid <= 0:
            return None
        proc = psutil.Process(pid)
        if proc.name() == "postgres" and proc.status() != psutil.STATUS_ZOMBIE:
            return proc
    except (FileNotFoundError, ValueError, psutil.NoSuchProcess):
        pass
    return None


def _make_private(socket_dir: Path) -> None:
    """Local connections use trust auth: only the server's owner may reach the socket.

    pgserver falls back to a socket dir under its runtime path when <pgdata> is too long for AF_UNIX,
    and as root makes it mode 777. Hand it to the server user with mode 700 (root connects anyway).
    """
    if os.geteuid() == 0:
        import pwd

        entry = pwd.getpwnam("pgserver")
        os.chown(socket_dir, entry.pw_uid, entry.pw_gid)
    socket_dir.chmod(0o700)


class EmbeddedPostgres:
    """This process's handle on the postgres serving <pgdata>."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self._server: Any = None

    def join(self, dead_pids: set[int]) -> str:
        """Start postgres or join the running one; return its database URL."""
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        wait_for_orphaned_tools(self.pgdata)
        prune_handle_pids(self.pgdata, dead_pids)
        remove_stale_postmaster_pid(self.pgdata)
        server = self._server = _pgserver().get_server(self.pgdata)
        # get_server returns a cached handle without re-registering us; make sure our pid is listed.
        with server._lock:
            server.global_process_id_list.get_and_add(os.getpid())
        info = server.get_postmaster_info()
        assert info.socket_dir is not None, "pgserver always uses a unix socket on POSIX"
        if info.socket_dir != self.pgdata:
            _make_private(info.socket_dir)
        return database_url(info.socket_dir)

    def leave(self, dead_pids: set[int]) -> None:
        """Unregister; pgserver stops postgres if no live process is left."""
        server = self._server
        if server is None:
            return
        self._server = None
        prune_handle_pids(self.pgdata, dead_pids)
        try:
            server._cleanup()  # stops the server (pg_ctl -w stop, fast mode) when we were the last handle
        finally:
            atexit.unregister(server._cleanup)
            # Forget the per-process cache so a later join() re-registers and re-checks the server.
            _server_class()._instances.pop(self.pgdata, None)

    def stop_orphan(self) -> bool:
        """Stop a postgres that no live process holds (its users were killed). True if one was stopped."""
        if prune_handle_pids(self.pgdata, set()):
            return False
        proc = running_postmaster(self.pgdata)
        if proc is None:
            return False
        from pgserver._commands import create_command_function

        pg_ctl = create_command_function("pg_ctl")  # what pgserver binds as _commands.pg_ctl (setattr at import)

        user = "pgserver" if os.geteuid() == 0 else None
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=user, timeout=30)
        except Exception:  # noqa: BLE001 - fall back to signals, the goal is no orphan
            proc.terminate()
        try:
            proc.wait(10)
        except psutil.TimeoutExpired:
            proc.kill()
        return True
