"""Child process for tests/test_embedded.py: start the embedded services, report, wait for a signal.

    python -m tests.embedded_runner <data_dir> [--no-postgres] [--no-redis]
Prints one JSON line when starting and one when ready; exits through the signal handlers.
"""

from __future__ import annotations

import json
import os
import sys
import time

from core.embedded import EmbeddedServices, install_signal_handlers, resolve_data_dir


def main(argv: list[str]) -> None:
    data_dir = resolve_data_dir(argv[0])
    install_signal_handlers()
    print(json.dumps({"event": "starting", "pid": os.getpid()}), flush=True)
    t0 = time.perf_counter()
    services = EmbeddedServices(data_dir, postgres="--no-postgres" not in argv, redis="--no-redis" not in argv)
    with services as endpoints:
        ready = {
            "event": "ready",
            "database_url": endpoints.database_url,
            "redis_url": endpoints.redis_url,
            "start_s": time.perf_counter() - t0,
        }
        print(json.dumps(ready), flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv[1:])
