"""The fuzz gate (issue 12, item 10): generated operations over the whole schema, sent through the real ASGI app to
real Postgres and Redis as an anonymous caller, an INVESTOR and an ADMIN, must never get an HTTP 5xx, an INTERNAL
error, or an error without `extensions.code`.

Stages:
- every query and mutation root field alone, per caller (so each field is reached, and a failure names it);
- documents selecting 2-5 root fields at once, with plausible arguments (graphql-core resolves query root fields
  concurrently, each with its own database session);
- schema-violating documents (hypothesis-graphql's negative mode): refused with a code.

Budget: RWA_FUZZ_EXAMPLES examples per root field and caller (default 3), RWA_FUZZ_MULTI_EXAMPLES per caller and
operation kind for the multi-field stage (default 25), RWA_FUZZ_NEGATIVE_EXAMPLES (default 10). CI runs the defaults
derandomized (the same examples every run, ~1-2 min on 2 cores); RWA_FUZZ_RANDOM=1 draws new ones. A longer run and
its failure log: see README ("Fuzzing the API")."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode

from core.services import Services
from core.settings import Environment, Settings
from schema import build_schema
from tests.fuzz.documents import operations
from tests.fuzz.runner import Caller
from tests.fuzz.scalars import Pools
from tests.fuzz.world import PASSWORD, World

SCHEMA = build_schema(Settings(RWA_ENV=Environment.TEST))._schema
ROLES = ("ANONYMOUS", "INVESTOR", "ADMIN")
ROOT_FIELDS = [("query", name) for name in sorted(SCHEMA.query_type.fields)] + [
    ("mutation", name) for name in sorted(SCHEMA.mutation_type.fields)
]  # type: ignore[union-attr]


def budget(name: str, default: int) -> int:
    return max(1, int(os.environ.get(name, default)))


def fuzz_settings(examples: int):  # type: ignore[no-untyped-def]
    # no shrinking unless asked: a failure already prints its whole (single-field) operation, and shrinking one
    # through the database costs minutes of a CI budget
    phases = [Phase.explicit, Phase.reuse, Phase.generate] + (
        [Phase.shrink] if os.environ.get("RWA_FUZZ_SHRINK") else []
    )
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=phases,
        derandomize=os.environ.get("RWA_FUZZ_RANDOM") != "1",
        suppress_health_check=list(HealthCheck),
    )


@pytest.fixture(scope="module")
def pools(world: World) -> Pools:
    return Pools(
        ids=list(world.ids),
        strings=[*world.strings, PASSWORD],
        named={kind: list(values) for kind, values in world.named.items()},
    )


@pytest.fixture(scope="module")
async def callers(
    fuzz_client: httpx.AsyncClient, setup_client: httpx.AsyncClient, fuzz_services: Services, world: World, pools: Pools
) -> AsyncIterator[dict[str, Caller]]:
    made = {role: Caller(SCHEMA, fuzz_client, setup_client, fuzz_services, world, pools, role) for role in ROLES}
    yield made
    for caller in made.values():
        caller.close()
    if os.environ.get("RWA_FUZZ_STATS"):  # what the answers were, per caller and root field(s)
        stats = {
            role: {f"{fields} -> {code}": n for (fields, code), n in sorted(c.outcomes.items())}
            for role, c in made.items()
        }
        Path(os.environ["RWA_FUZZ_STATS"]).write_text(json.dumps(stats, indent=1))


_strategies: dict[tuple[str, tuple[str, ...] | None, Mode], st.SearchStrategy] = {}


def strategy(pools: Pools, kind: str, fields: tuple[str, ...] | None, mode: Mode = Mode.POSITIVE) -> st.SearchStrategy:
    key = (kind, fields, mode)
    if key not in _strategies:
        # several root fields: plausible arguments only, so that the fields get to run side by side
        _strategies[key] = operations(
            SCHEMA,
            pools,
            kind,
            None if fields is None else list(fields),
            mode,
            hostile=fields is None or len(fields) == 1,
        )
    return _strategies[key]


def root_field_sets(kind: str) -> st.SearchStrategy[tuple[str, ...]]:
    names = sorted(SCHEMA.query_type.fields if kind == "query" else SCHEMA.mutation_type.fields)  # type: ignore[union-attr]
    return st.lists(st.sampled_from(names), min_size=2, max_size=5, unique=True).map(lambda f: tuple(sorted(f)))


def test_every_root_field_is_fuzzed() -> None:
    """The gate covers the schema as it is: a new root field joins the fuzz without a change here."""
    assert {name for kind, name in ROOT_FIELDS if kind == "query"} == set(SCHEMA.query_type.fields)  # type: ignore[union-attr]
    assert len(ROOT_FIELDS) > 60


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("kind, field", ROOT_FIELDS, ids=[f"{k}.{f}" for k, f in ROOT_FIELDS])
@fuzz_settings(budget("RWA_FUZZ_EXAMPLES", 3))
@given(data=st.data())
async def test_root_field(
    callers: dict[str, Caller], pools: Pools, role: str, kind: str, field: str, data: st.DataObject
) -> None:
    await callers[role].check(data.draw(strategy(pools, kind, (field,))))


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("kind", ["query", "mutation"])
@fuzz_settings(budget("RWA_FUZZ_MULTI_EXAMPLES", 25))
@given(data=st.data())
async def test_several_root_fields(
    callers: dict[str, Caller], pools: Pools, role: str, kind: str, data: st.DataObject
) -> None:
    await callers[role].check(data.draw(strategy(pools, kind, data.draw(root_field_sets(kind)))))


@pytest.mark.parametrize("role", ["ANONYMOUS", "ADMIN"])
@pytest.mark.parametrize("kind", ["query", "mutation"])
@fuzz_settings(budget("RWA_FUZZ_NEGATIVE_EXAMPLES", 10))
@given(data=st.data())
async def test_invalid_documents(
    callers: dict[str, Caller], pools: Pools, role: str, kind: str, data: st.DataObject
) -> None:
    await callers[role].check(data.draw(strategy(pools, kind, None, Mode.NEGATIVE)))
