"""Who is using an embedded data dir: a flock-protected registry shared by every `rwa` process.

Layout inside the data dir:
    .lock        flock(2) target; held for the whole of a start or a stop, so they never interleave
    users.json   {"users": [{"pid", "started", "postgres", "redis"}], "redis": {"pid", "started"} | null}

A process is identified by (pid, start time), so a pid reused after a `kill -9` is not mistaken for
the process that registered it.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

LOCK_NAME = ".lock"
REGISTRY_NAME = "users.json"


@dataclass(frozen=True)
class ProcessId:
    pid: int
    started: float

    @classmethod
    def of(cls, pid: int) -> ProcessId | None:
        started = process_started(pid)
        return None if started is None else cls(pid, started)

    @classmethod
    def current(cls) -> ProcessId:
        me = cls.of(os.getpid())
        assert me is not None
        return me

    def alive(self) -> bool:
        """True while the very process that registered runs (zombies count as gone)."""
        return process_started(self.pid) == self.started


def process_started(pid: int) -> float | None:
    """Start time of a live, non-zombie process, or None."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return round(proc.create_time(), 2)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


@dataclass(frozen=True)
class User:
    process: ProcessId
    postgres: bool
    redis: bool


@dataclass
class Registry:
    users: list[User]
    redis: ProcessId | None

    def live_users(self) -> list[User]:
        return [u for u in self.users if u.process.alive()]

    def dead_pids(self) -> set[int]:
        """Pids of registered processes that died without unregistering (kill -9, OOM, crash)."""
        return {u.process.pid for u in self.users if not u.process.alive()}

    def prune(self) -> set[int]:
        dead = self.dead_pids()
        self.users = self.live_users()
        return dead

    def set_user(self, user: User) -> None:
        self.users = [u for u in self.users if u.process != user.process]
        if user.postgres or user.redis:
            self.users.append(user)

    def redis_users(self) -> list[User]:
        return [u for u in self.users if u.redis]


def _user_from_json(raw: dict[str, Any]) -> User:
    return User(ProcessId(int(raw["pid"]), float(raw["started"])), bool(raw["postgres"]), bool(raw["redis"]))


def load_registry(data_dir: Path) -> Registry:
    path = data_dir / REGISTRY_NAME
    try:
        raw = json.loads(path.read_text())
        users = [_user_from_json(u) for u in raw.get("users", [])]
        redis_raw = raw.get("redis")
        redis = ProcessId(int(redis_raw["pid"]), float(redis_raw["started"])) if redis_raw else None
    except FileNotFoundError:
        return Registry([], None)
    except (ValueError, KeyError, TypeError):
        # A torn or hand-edited file must not block startup; the live processes re-register.
        return Registry([], None)
    return Registry(users, redis)


def save_registry(data_dir: Path, registry: Registry) -> None:
    raw = {
        "users": [
            {"pid": u.process.pid, "started": u.process.started, "postgres": u.postgres, "redis": u.redis}
            for u in registry.users
        ],
        "redis": asdict(registry.redis) if registry.redis else None,
    }
    tmp = data_dir / f".{REGISTRY_NAME}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(raw))
    os.replace(tmp, data_dir / REGISTRY_NAME)  # atomic: a kill mid-write leaves the old file


@contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """Exclusive flock on <data_dir>/.lock; released by the kernel if the holder dies."""
    fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the only descriptor drops the lock
