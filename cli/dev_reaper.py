"""Watchdog of `rwa dev`: stops what `rwa dev` started when `rwa dev` dies without cleaning up (SIGKILL, OOM).

    python -m cli.dev_reaper [<data_dir>]        # started by `rwa dev` in its own session, stdin = a pipe

`rwa dev` writes one line per process it starts ("<pid> <start time> <group|proc>") and "done" after its own
clean shutdown. EOF without "done" means it died: every listed process that is still the same process (same
start time, so a reused pid is never hit) gets SIGTERM, then SIGKILL after a grace period ("group" entries:
their whole process group, e.g. `rwa worker` with its dramatiq processes). Then the embedded Postgres/Redis of
<data_dir> are stopped if no live process uses them any more.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

GRACE_S = 20.0  # longer than the children's own graceful shutdown (uvicorn 10 s, dramatiq 10 s)


@dataclass(frozen=True)
class Watched:
    pid: int
    start_time: str  # /proc/<pid>/stat field 22, in clock ticks since boot
    group: bool  # the process leads its own process group; signal all of it

    def line(self) -> str:
        return f"{self.pid} {self.start_time} {'group' if self.group else 'proc'}\n"

    @classmethod
    def parse(cls, line: str) -> Watched | None:
        parts = line.split()
        if len(parts) != 3 or not parts[0].isdigit():
            return None
        return cls(int(parts[0]), parts[1], parts[2] == "group")


def start_time(pid: int) -> str | None:
    """The process's start time, or None when it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def watched(pid: int, group: bool = False) -> Watched:
    return Watched(pid, start_time(pid) or "0", group)


def _alive(proc: Watched) -> bool:
    return start_time(proc.pid) == proc.start_time


def _signal(proc: Watched, signum: int) -> None:
    try:
        if proc.group:
            os.killpg(proc.pid, signum)
        else:
            os.kill(proc.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def reap(procs: list[Watched], grace_s: float = GRACE_S) -> None:
    live = [p for p in procs if _alive(p)]
    for proc in live:
        _signal(proc, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive(p) for p in live):
        time.sleep(0.1)
    for proc in live:
        if _alive(proc) or proc.group:  # a group may outlive its leader (dramatiq workers)
            _signal(proc, signal.SIGKILL)


def main(argv: list[str]) -> int:
    # Own session (no terminal Ctrl-C); ignore what could still reach us so the watch outlives `rwa dev`.
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_IGN)
    procs: list[Watched] = []
    for line in sys.stdin:
        if line.strip() == "done":
            return 0
        entry = Watched.parse(line)
        if entry is not None:
            procs.append(entry)
    reap(procs)
    if argv:
        from core.embedded import stop_orphans

        time.sleep(0.5)  # the children's own exit paths may still be stopping the services
        stopped = stop_orphans(Path(argv[0]))
        if stopped:
            print(f"rwa dev died; stopped {', '.join(stopped)} in {argv[0]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
