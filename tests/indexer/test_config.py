"""IndexerConfig.from_env: a bad value names its variable (it was a bare "invalid literal for int()")."""

from __future__ import annotations

import pytest

from indexer.config import IndexerConfig


def test_values_are_read() -> None:
    config = IndexerConfig.from_env(
        {
            "RWA_INDEXER_POLL_S": "0.5",
            "RWA_INDEXER_BATCH_EVENTS": "100",
            "RWA_FINALITY_DEPTH_137": "0",
            "RWA_INDEXER_FINALITY_TAGS": "no",
        }
    )
    assert (config.poll_interval_s, config.batch_events, config.finality_depth, config.use_finality_tags) == (
        0.5,
        100,
        {137: 0},
        False,
    )
    assert IndexerConfig.from_env({}) == IndexerConfig()


@pytest.mark.parametrize(
    "name, value",
    [
        ("RWA_INDEXER_BATCH_EVENTS", "abc"),
        ("RWA_INDEXER_LOGS_PER_CALL", "-5"),
        ("RWA_INDEXER_POLL_S", "nan"),
        ("RWA_INDEXER_LOCK_RETRY_S", "0"),
        ("RWA_FINALITY_DEPTH_1", "x"),
        ("RWA_FINALITY_DEPTH_1", "-1"),
    ],
)
def test_a_bad_value_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        IndexerConfig.from_env({name: value})
