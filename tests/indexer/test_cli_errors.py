"""`rwa index` refuses bad input and unreachable nodes with one line and a specific exit code, no traceback,
and never prints an RPC URL's credentials, path or query."""

from __future__ import annotations

from tests.indexer.cli_helpers import SECRETS, closed_port, run_many, run_rwa, secret_url

GOOD = "0x52908400098527886E0F7030069857D2E4169EE7"  # a valid EIP-55 address (from the EIP's test vectors)
BAD_CHECKSUM = "0x52908400098527886E0F7030069857D2E4169Ee7"

BAD_INPUT = [
    (
        ["verify", "--chain", "goerli", "--token", GOOD],
        "unknown chain 'goerli'; known chains: 1 (ethereum), 137 (polygon), 56 (bsc)",
    ),
    (["backfill", "--chain", "5", "--from-block", "0"], "unknown chain '5'; known chains: 1 (ethereum)"),
    (["run", "--chain", "solana"], "unknown chain 'solana'"),
    (["status", "--chain", "avalanche"], "unknown chain 'avalanche'"),
    (["verify", "--chain", "1", "--token", "0x1234"], "not an address: '0x1234'"),
    (
        ["verify", "--chain", "ethereum", "--token", BAD_CHECKSUM],
        f"bad address checksum: '{BAD_CHECKSUM}' (did you mean {GOOD}?)",
    ),
    (["backfill", "--chain", "polygon", "--from-block", "0", "--token", GOOD[2:]], "not an address"),
    (["backfill", "--chain", "bsc", "--from-block", "10", "--to-block", "9"], "--from-block 10 is above --to-block 9"),
    (["verify", "--chain", "56", "--token", GOOD], "no RPC URL for bsc (chain 56): set RPC_URLS_56"),
    (["run"], "no chain configured: set RPC_URLS_1"),
]


def test_bad_input_exits_2_with_one_line(database_url, redis_url) -> None:  # type: ignore[no-untyped-def]
    results = run_many([(args, None) for args, _ in BAD_INPUT], database_url, redis_url)
    for (args, needle), result in zip(BAD_INPUT, results):
        assert result.code == 2, (args, result.output)
        assert needle in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
        assert "Traceback" not in result.output


def test_unreachable_rpc_exits_3_naming_chain_and_host_only(database_url, redis_url) -> None:
    port = closed_port()
    rpc = {1: secret_url(port)}
    calls = [
        (["verify", "--chain", "1", "--token", GOOD], rpc),
        (["backfill", "--chain", "1", "--from-block", "0"], rpc),
        (["run", "--chain", "eth"], rpc),
        (["run"], rpc),
    ]
    for (args, _), result in zip(calls, run_many(calls, database_url, redis_url)):
        assert result.code == 3, (args, result.output)
        assert f"ethereum (chain 1): RPC unreachable at http://127.0.0.1:{port}" in result.stderr, (args, result.stderr)
        assert not [s for s in SECRETS if s in result.output], result.output
        assert "Traceback" not in result.output


def test_unreachable_database_exits_3(redis_url) -> None:  # type: ignore[no-untyped-def]
    dead_db = f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port()}/postgres"
    result = run_rwa(["status", "--json"], dead_db, redis_url)
    assert result.code == 3, result.output
    assert "cannot reach the database" in result.stderr
    assert "Traceback" not in result.output
