"""Child process for tests/test_embedded.py: start the embedded services, report, wait for a signal.

    python -m tests.embedded_runner <data_dir> [--no-postgres] [--no-redis]
Prints one JSON line when starting and one when ready; exits through the signal handlers.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

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
        if "--uvicorn" in argv:
            serve_with_uvicorn()
        else:
            while True:
                time.sleep(3600)


def serve_with_uvicorn() -> None:
    """uvicorn installs its own SIGINT/SIGTERM handlers while serving, then restores ours and re-raises."""
    import uvicorn

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                    print(json.dumps({"event": "serving"}), flush=True)
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    print(json.dumps({"event": "uvicorn-stopped"}), flush=True)
                    return

    uvicorn.run(app, host="127.0.0.1", port=0, log_level="warning")


if __name__ == "__main__":
    main(sys.argv[1:])
