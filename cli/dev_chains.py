"""The RPC URLs of a running `rwa dev`'s local chains, for other `rwa` commands on the same data dir: the chains
listen on ports chosen at start, so `rwa index status | verify | backfill` in another shell would otherwise find no
RPC_URLS_<id> and report every chain unconfigured. Explicit RPC_URLS_<id> always win. `rwa agent status | run`
also take the key `rwa dev` gives its agent for those chains, unless a key or signer is set."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, MutableMapping
from pathlib import Path

FILE = "dev-chains.json"


def publish(data_dir: Path, urls: dict[int, str]) -> None:
    path = data_dir / FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "rpc_urls": {str(k): v for k, v in urls.items()}}))
    tmp.replace(path)


def withdraw(data_dir: Path) -> None:
    try:
        (data_dir / FILE).unlink(missing_ok=True)
    except OSError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def adopt(data_dir: Path, environ: MutableMapping[str, str] = os.environ) -> dict[int, str]:
    """Set RPC_URLS_<id> (where unset) from the chains of a `rwa dev` that is still running; what was set."""
    try:
        published = json.loads((data_dir / FILE).read_text())
        pid, urls = int(published["pid"]), {int(k): str(v) for k, v in published["rpc_urls"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
    if not _alive(pid):
        return {}
    adopted = {cid: url for cid, url in urls.items() if not environ.get(f"RPC_URLS_{cid}", "").strip()}
    environ.update({f"RPC_URLS_{cid}": url for cid, url in adopted.items()})
    if adopted and environ is os.environ:  # the settings object read RPC_URLS_<id> once: read them again
        from core.settings import get_settings

        get_settings.cache_clear()
    return adopted


def adopt_agent_key(chain_ids: Iterable[int], key: str, environ: MutableMapping[str, str] = os.environ) -> list[int]:
    """Set AGENT_PRIVATE_KEY_<id> to `key` for the adopted dev chains where no agent key or signer is set; which."""

    def unset(name: str) -> bool:
        return not environ.get(name, "").strip()

    if not (unset("AGENT_PRIVATE_KEY") and unset("AGENT_SIGNER_URL")):
        return []
    chosen = [c for c in chain_ids if unset(f"AGENT_PRIVATE_KEY_{c}") and unset(f"AGENT_SIGNER_URL_{c}")]
    environ.update({f"AGENT_PRIVATE_KEY_{c}": key for c in chosen})
    if chosen and environ is os.environ:  # the settings object read the keys once: read them again
        from core.settings import get_settings

        get_settings.cache_clear()
    return chosen
