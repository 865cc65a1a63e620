"""The image's HEALTHCHECK for every role: `python -m core.healthcheck` reads the container's command (PID 1's
argv, or the arguments given) and probes that role's liveness endpoint:

    rwa serve [--port P]            http://127.0.0.1:P/healthz                    (8000)
    rwa index run [--metrics-port]  ops port: --metrics-port, RWA_INDEXER_METRICS_PORT (9101)
    rwa agent run [--metrics-port]  ops port: --metrics-port, RWA_AGENT_METRICS_PORT (the image sets 9102)
    rwa worker [--metrics-port]     ops port: --metrics-port, RWA_WORKER_METRICS_PORT (9103)

Anything else (`rwa migrate`, a one-off command) has nothing to probe: healthy. Exit 0 healthy, 1 not. Standard
library only: it runs every 30 s.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Mapping, Sequence

# role (the words after `rwa`) -> (port option, environment variable, default port)
ROLES = {
    ("serve",): ("--port", None, 8000),
    ("index", "run"): ("--metrics-port", "RWA_INDEXER_METRICS_PORT", 9101),
    ("agent", "run"): ("--metrics-port", "RWA_AGENT_METRICS_PORT", 0),
    ("worker",): ("--metrics-port", "RWA_WORKER_METRICS_PORT", 9103),
}


def _option(args: Sequence[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def health_url(argv: Sequence[str], env: Mapping[str, str]) -> str | None:
    """The liveness URL of the role `argv` runs, or None when it has none."""
    words = [a for a in argv if not a.startswith("-")]
    while words and (os.path.basename(words[0]) == "rwa" or os.path.basename(words[0]).startswith("python")):
        words = words[1:]  # `rwa ...`, or `python /opt/venv/bin/rwa ...` as /proc/1/cmdline shows a script
    for role, (option, variable, default) in ROLES.items():
        if tuple(words[: len(role)]) == role:
            raw = _option(argv, option) or (env.get(variable) if variable else None) or str(default)
            port = int(raw)
            return f"http://127.0.0.1:{port}/healthz" if port else None
    return None


def _container_argv() -> list[str]:
    with open("/proc/1/cmdline", "rb") as f:
        return [a.decode() for a in f.read().split(b"\0") if a]


def main(args: Sequence[str]) -> int:
    url = health_url(list(args) or _container_argv(), os.environ)
    if url is None:
        return 0
    try:
        with urllib.request.urlopen(url, timeout=4) as resp:
            return 0 if resp.status == 200 else 1
    except OSError as exc:  # refused, timeout, or an HTTP error status (HTTPError is an OSError)
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
