"""Sends a generated operation as one caller and checks the gate's contract on the answer: no HTTP 5xx, a JSON body,
no error coded INTERNAL, and an `extensions.code` on every error. A failure names the operation, the caller and the
server's own traceback (captured from the `rwa` loggers), and is also appended to $RWA_FUZZ_LOG (JSON lines) when set,
so a long run lists everything it found instead of stopping at the first example."""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from collections import Counter
from typing import Any

import graphql
import httpx

from core.services import Services
from tests.fuzz.documents import Operation
from tests.fuzz.scalars import Pools
from tests.fuzz.world import Account, World, call, payload, restore

# root fields by which a caller may end its own session or lose its role: the runner then restores the account, or
# every later operation of that caller would stop at UNAUTHENTICATED/FORBIDDEN and the gate would test nothing
SELF_HARM = {"logout", "revokeRole", "grantRole"}
TOKEN_REFRESH_S = 600  # access tokens live 900 s: a long run renews them through refreshToken before that


class ServerErrors(logging.Handler):
    """Collects the exceptions the app logs while a request is served (the INTERNAL's cause)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def drain(self) -> str:
        out = []
        for record in self.records:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text += "\n" + "".join(traceback.format_exception(*record.exc_info))[-3000:]
            out.append(text)
        self.records.clear()
        return "\n".join(out)


class Caller:
    """One role's view of the API: its token (renewed in long runs) and the shared pools."""

    def __init__(
        self,
        schema: graphql.GraphQLSchema,
        client: httpx.AsyncClient,
        setup_client: httpx.AsyncClient,
        services: Services,
        world: World,
        pools: Pools,
        role: str,
    ) -> None:
        self.client, self.services, self.world, self.pools, self.role = client, services, world, pools, role
        self.schema, self.setup_client = schema, setup_client
        self.account: Account | None = world.accounts.get(role)
        self.renewed = time.monotonic()
        self.errors = ServerErrors()
        self.outcomes: Counter[tuple[str, str]] = Counter()  # (root fields, first error code or "data")
        logging.getLogger("rwa").addHandler(self.errors)

    def close(self) -> None:
        logging.getLogger("rwa").removeHandler(self.errors)

    async def headers(self) -> dict[str, str]:
        if self.account is None:
            return {}
        if time.monotonic() - self.renewed > TOKEN_REFRESH_S:
            data = await call(
                self.setup_client,
                "mutation($r: String!) { refreshToken(input: {refreshToken: $r}) "
                "{ session { accessToken refreshToken } errors { code message } } }",
                {"r": self.account.refresh_token},
            )
            session = payload(data, "refreshToken", "session")
            self.account.access_token = session["accessToken"]
            self.account.refresh_token = session["refreshToken"]
            self.renewed = time.monotonic()
        return {"Authorization": f"Bearer {self.account.access_token}"}

    async def send(self, op: Operation) -> httpx.Response:
        headers = await self.headers()
        if not op.files:
            # json.dumps(allow_nan=True): a variable may be Infinity/NaN, which hostile clients do send
            body = json.dumps({"query": op.query, "variables": op.variables}).encode()
            return await self.client.post(
                "/graphql", content=body, headers={**headers, "content-type": "application/json"}
            )
        names = list(op.files)
        form = {
            "operations": json.dumps({"query": op.query, "variables": op.variables}),
            "map": json.dumps({str(i): [f"variables.{name}"] for i, name in enumerate(names)}),
        }
        files = {str(i): op.files[name] for i, name in enumerate(names)}
        return await self.client.post(
            "/graphql", data=form, files=files, headers={**headers, "Apollo-Require-Preflight": "true"}
        )

    async def check(self, op: Operation) -> None:
        self.errors.drain()
        resp = await self.send(op)
        problem = _problem(resp)
        fields, outcome = _outcome(op, resp)
        self.outcomes[(",".join(fields) if len(fields) < 3 else f"{len(fields)} fields", outcome)] += 1
        if problem is None:
            self.pools.harvest(resp.json().get("data"), _root_type(self.schema, op))
            if self.account is not None and (SELF_HARM & set(fields) or "session ended" in outcome):
                await restore(self.setup_client, self.services, self.world, self.account)
                self.renewed = time.monotonic()
            return
        server = self.errors.drain()
        _log_failure(self.role, op, resp, problem, server)
        raise AssertionError(
            f"{problem} as {self.role}\n{op.describe()}\nHTTP {resp.status_code}: {resp.text[:1500]}"
            + (f"\nserver log:\n{server}" if server else "")
        )


def _problem(resp: httpx.Response) -> str | None:
    if resp.status_code >= 500:
        return f"HTTP {resp.status_code}"
    try:
        body = resp.json()
    except ValueError:
        return "a body that is not JSON"
    if not isinstance(body, dict):
        return "a body that is not a JSON object"
    for error in body.get("errors") or []:
        code = (error.get("extensions") or {}).get("code") if isinstance(error, dict) else None
        if not code:
            return "an error without extensions.code"
        if code == "INTERNAL":
            return "an INTERNAL error"
    return None


def _root_type(schema: graphql.GraphQLSchema, op: Operation) -> graphql.GraphQLObjectType | None:
    document = graphql.parse(op.query)
    definition = document.definitions[0]
    return (
        schema.get_root_type(definition.operation) if isinstance(definition, graphql.OperationDefinitionNode) else None
    )


def _outcome(op: Operation, resp: httpx.Response) -> tuple[list[str], str]:
    """(the operation's root fields, its first error's code and message start, or "data")."""
    try:
        body = resp.json()
        document = graphql.parse(op.query)
    except (ValueError, graphql.GraphQLError):
        return ([], f"HTTP {resp.status_code}")
    fields = sorted(
        {
            sel.name.value
            for d in document.definitions
            if isinstance(d, graphql.OperationDefinitionNode)
            for sel in d.selection_set.selections
            if isinstance(sel, graphql.FieldNode)
        }
    )
    errors = body.get("errors") if isinstance(body, dict) else None
    code = ((errors[0].get("extensions") or {}).get("code") or "UNCODED") if errors else "data"
    if errors:  # the start of the message tells which check refused it
        code += ": " + str(errors[0].get("message"))[:70]
    return (fields, str(code))


def _log_failure(role: str, op: Operation, resp: httpx.Response, problem: str, server: str) -> None:
    path = os.environ.get("RWA_FUZZ_LOG")
    if not path:
        return
    entry: dict[str, Any] = {
        "problem": problem,
        "role": role,
        "query": op.query,
        "variables": repr(op.variables)[:2000],
        "files": [f[0] for f in op.files.values()],
        "status": resp.status_code,
        "body": resp.text[:1000],
        "server": server[-3000:],
    }
    with open(path, "a", encoding="utf-8") as log:
        log.write(json.dumps(entry) + "\n")
