"""`rwa index ...` next to a running `rwa dev` uses its chains (cli/dev_chains.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cli import dev_chains


def test_a_running_dev_publishes_its_chains_and_explicit_urls_win(tmp_path: Path) -> None:
    dev_chains.publish(tmp_path, {1: "http://127.0.0.1:1111", 137: "http://127.0.0.1:2222"})
    environ = {"RPC_URLS_137": "https://polygon.example"}
    assert dev_chains.adopt(tmp_path, environ) == {1: "http://127.0.0.1:1111"}
    assert environ == {"RPC_URLS_1": "http://127.0.0.1:1111", "RPC_URLS_137": "https://polygon.example"}
    dev_chains.withdraw(tmp_path)
    assert not (tmp_path / dev_chains.FILE).exists()
    assert dev_chains.adopt(tmp_path, {}) == {}


def test_chains_of_a_dev_that_is_gone_are_ignored(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / dev_chains.FILE).write_text(json.dumps({"pid": int(gone.stdout), "rpc_urls": {"1": "http://x:1"}}))
    environ: dict[str, str] = {}
    assert dev_chains.adopt(tmp_path, environ) == {} and environ == {}
    (tmp_path / dev_chains.FILE).write_text("not json")
    assert dev_chains.adopt(tmp_path, environ) == {}


def test_agent_commands_next_to_dev_sign_with_its_agent_key_unless_one_is_set() -> None:
    # `rwa agent status` next to `rwa dev` found the chains but no key: every chain "not set", unhealthy, exit 1
    environ = {"AGENT_PRIVATE_KEY_137": "0xown", "AGENT_SIGNER_URL_56": "http://signer"}
    assert dev_chains.adopt_agent_key([1, 137, 56], "0xdev", environ) == [1]
    assert environ["AGENT_PRIVATE_KEY_1"] == "0xdev" and environ["AGENT_PRIVATE_KEY_137"] == "0xown"
    assert "AGENT_PRIVATE_KEY_56" not in environ
    assert dev_chains.adopt_agent_key([1], "0xdev", {"AGENT_PRIVATE_KEY": "0xglobal"}) == []
    assert dev_chains.adopt_agent_key([1], "0xdev", {"AGENT_SIGNER_URL": "http://signer"}) == []
