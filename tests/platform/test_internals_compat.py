"""The private internals of strawberry-graphql and uvicorn that the code relies on, checked by name and shape.

pyproject.toml bounds both packages above; raising a bound is safe only when this file passes at the new version.
Each assertion names the code that needs it, so an incompatible release fails here, loudly, instead of as a
wrong answer or a hang at run time."""

from __future__ import annotations

import importlib.metadata as md
import inspect

import pytest


def _has(obj: object, name: str, who: str) -> object:
    assert hasattr(obj, name), (
        f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', obj)} has no "
        f"{name!r} any more (strawberry {md.version('strawberry-graphql')}, uvicorn "
        f"{md.version('uvicorn')}): {who} needs it"
    )
    return getattr(obj, name)


def _params(func: object) -> list[str]:
    return list(inspect.signature(func).parameters)  # type: ignore[arg-type]


def test_strawberry_transport_ws_handler_internals() -> None:
    from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler as H

    who = "server/ and schema/shared_subscriptions.py (shared subscription fan-out)"
    assert _params(_has(H, "_send_result_stream", who))[:3] == ["self", "operation", "result_source"], who
    assert _params(_has(H, "_handle_pre_execution_error", who))[:3] == ["self", "operation", "result"], who
    assert _params(_has(H, "_reject_incremental_delivery", who))[:2] == ["self", "operation"], who


def test_strawberry_schema_internals() -> None:
    import strawberry
    from graphql import GraphQLSchema
    from strawberry.scalars import JSON
    from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext, validate_document
    from strawberry.schema.types.scalar import DEFAULT_SCALAR_REGISTRY

    @strawberry.type
    class Query:
        ok: bool = True

    schema = strawberry.Schema(query=Query)
    assert isinstance(schema._schema, GraphQLSchema), "schema/cost.py, fast_executor.py, document_cache.py use it"
    assert callable(validate_document), "schema/document_cache.py validates with strawberry's validate_document"
    from schema.fast_executor import FastExecutor

    for name in ("execute_fields", "execute_root_grouped_field_set"):  # schema/fast_executor.py overrides these
        base = _has(StrawberryGraphQLCoreExecutionContext, name, "schema/fast_executor.py")
        assert _params(base) == _params(getattr(FastExecutor, name)), f"{name} changed shape: schema/fast_executor.py"
    assert {"serialize", "parse_value"} <= set(vars(DEFAULT_SCALAR_REGISTRY[JSON])) or all(
        hasattr(DEFAULT_SCALAR_REGISTRY[JSON], a) for a in ("serialize", "parse_value")
    ), "schema/scalars.py"


def test_uvicorn_supervisor_and_websocket_internals() -> None:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    from uvicorn.server import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    assert isinstance(STARTUP_FAILURE, int), "cli/main.py maps a worker's startup failure to the exit code"
    who = "cli/main.py (`rwa serve --workers N` supervisor) and server/health.py"
    assert _params(Multiprocess.__init__)[:3] == ["self", "config", "sockets"], who  # Multiprocess(config, sockets=)
    _has(Multiprocess, "run", who)
    assert "processes" in inspect.getsource(Multiprocess.__init__), f"{who} reads supervisor.processes"
    who = "schema/shared_subscriptions.py writes frames on the protocol's transport"
    src = inspect.getsource(WebSocketsSansIOProtocol)
    assert "self.transport" in src and "def send" in src, who


@pytest.mark.parametrize(("dist", "module"), [("strawberry-graphql", "strawberry"), ("uvicorn", "uvicorn")])
def test_installed_version_is_inside_the_declared_bounds(dist: str, module: str) -> None:
    import tomllib
    from pathlib import Path

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    req = next(
        Requirement(r)
        for r in project["dependencies"]
        if canonicalize_name(Requirement(r).name) == canonicalize_name(dist)
    )
    assert Version(md.version(dist)) in req.specifier, (
        f"{dist} {md.version(dist)} is installed but pyproject.toml allows {req.specifier}: reinstall from "
        "requirements.lock (bash scripts/setup.sh)"
    )
