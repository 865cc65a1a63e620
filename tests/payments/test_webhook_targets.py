"""Webhooks reach public https endpoints only (SSRF guard): checked at registration and at every delivery on what
the host resolves to then, connecting to the checked address (DNS rebinding), never following redirects; loopback
http receivers only outside production."""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
import ssl
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from core.settings import ConfigError, Settings
from core.webhook_targets import TargetPolicy, TargetRefused, address_refusal, resolve_target
from models.payments import WebhookDelivery, WebhookEndpoint
from resolvers.payments import webhooks
from tests.platform.conftest import app_client  # noqa: F401  (the fixture)

PROD = TargetPolicy(allow_loopback=False)
DEV = TargetPolicy(allow_loopback=True)
SECRET = b"s" * 32

NOT_PUBLIC = [
    "127.0.0.1",
    "127.1.2.3",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "100.64.0.1",
    "169.254.169.254",
    "169.254.0.1",
    "0.0.0.0",
    "0.1.2.3",
    "224.0.0.1",
    "239.255.255.250",
    "255.255.255.255",
    "240.0.0.1",
    "192.0.2.1",
    "198.18.0.1",
    "203.0.113.9",
    "192.0.0.8",
    "::1",
    "::",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "::127.0.0.1",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b::7f00:1",
    "2002:7f00:1::1",
    "2001:0:4136:e378::1",
    "fe80::1",
    "fd00:ec2::254",
    "fc00::1",
    "fec0::1",
    "ff02::1",
    "2001:db8::1",
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "64:ff9b::808:808"]


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_non_public_addresses_are_refused(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert address_refusal(ip, PROD) is not None
    loopback = address in ("127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1")
    assert (address_refusal(ip, DEV) is None) == loopback  # development allows loopback only


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address), PROD) is None


# real resolution (the system resolver; literals and /etc/hosts, no network): every spelling of a forbidden host
@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/h",
        "https://2130706433/h",
        "https://0177.0.0.1/h",
        "https://0x7f.0.0.1/h",
        "https://0x7f000001/h",
        "https://017700000001/h",
        "https://127.1/h",
        "https://localhost/h",
        "https://LOCALHOST./h",
        "https://[::1]/h",
        "https://[::ffff:7f00:1]/h",
        "https://[::ffff:127.0.0.1]:8443/h",
        "https://169.254.169.254/latest/meta-data/",
        "https://2852039166/",
        "https://0xa9fea9fe/",
        "https://0251.0376.0251.0376/",
        "https://[fe80::1]/",
        "https://10.0.0.1/",
        "https://0.0.0.0/",
        "https://0/",
        "https://[::]/",
        "https://100.64.1.1/",
        "https://224.0.0.251/",
        "https://[fd00::1]/",
    ],
)
async def test_forbidden_hosts_in_any_spelling_are_refused(url: str) -> None:
    with pytest.raises(TargetRefused) as refused:
        await resolve_target(url, PROD)
    assert not refused.value.retryable


@pytest.mark.parametrize(
    "url",
    [
        "http://8.8.8.8/h",  # public but not https
        "https://user:pw@8.8.8.8/h",
        "https://@8.8.8.8/h",
        "ftp://8.8.8.8/h",
        "file:///etc/passwd",
        "gopher://8.8.8.8/",
        "https:///h",
        "https://8.8.8.8:0/h",
        "https://8.8.8.8:99999/h",
        "https://8.8.8.8/h h",
        "https://8.8.8.8\\@127.0.0.1/",
        "https://8.8.8.8/" + "x" * 500,
        "//8.8.8.8/h",
        "8.8.8.8",
    ],
)
async def test_malformed_or_plain_http_urls_are_refused(url: str) -> None:
    with pytest.raises(TargetRefused):
        await resolve_target(url, PROD)


async def test_public_https_passes_and_dev_allows_loopback_http_only() -> None:
    target = await resolve_target("https://8.8.8.8:8443/hook?x=1", PROD)
    assert target.pinned_url() == "https://8.8.8.8:8443/hook?x=1" and target.host_header == "8.8.8.8:8443"
    assert (await resolve_target("http://127.0.0.1:9/h", DEV)).pinned_url() == "http://127.0.0.1:9/h"
    for url in ("http://10.0.0.1/h", "https://169.254.169.254/", "http://8.8.8.8/h"):
        with pytest.raises(TargetRefused):
            await resolve_target(url, DEV)


async def test_a_host_resolving_to_any_forbidden_address_is_refused() -> None:
    async def mixed(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "10.0.0.5"]

    with pytest.raises(TargetRefused, match="private"):
        await resolve_target("https://hooks.example.com/h", PROD, mixed)

    async def unresolvable(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    with pytest.raises(TargetRefused) as refused:
        await resolve_target("https://hooks.example.com/h", PROD, unresolvable)
    assert refused.value.retryable


def test_production_refuses_loopback_webhooks_setting() -> None:
    from tests.platform.test_settings import production_env

    assert not Settings(**production_env()).webhook_loopback_allowed  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="WEBHOOK_ALLOW_LOOPBACK"):
        Settings(**{**production_env(), "WEBHOOK_ALLOW_LOOPBACK": "true"}).check_production()  # type: ignore[arg-type]
    assert Settings(RWA_ENV="development").webhook_loopback_allowed  # type: ignore[call-arg]


# --- registration through the API


CREATE = (
    "mutation($u: String!) { createWebhookEndpoint(input: {url: $u}) "
    "{ webhookEndpoint { id url } errors { code field message } } }"
)


async def test_registration_refuses_forbidden_targets_in_production(app_client, make_user, session) -> None:  # type: ignore[no-untyped-def]
    from tests.platform.test_production_shortcuts import production

    admin = await make_user(roles=["ADMIN"])
    auth = {"Authorization": f"Bearer {admin.token}"}
    async with app_client(**production()) as c:
        for url in (
            "http://127.0.0.1:9/h",
            "https://127.0.0.1/h",
            "https://2130706433/h",
            "https://localhost/h",
            "https://169.254.169.254/latest/meta-data/",
            "https://[::ffff:a9fe:a9fe]/",
            "http://8.8.8.8/h",
            "https://10.0.0.1/h",
        ):
            reply = (await c.post("/graphql", json={"query": CREATE, "variables": {"u": url}}, headers=auth)).json()
            assert "errors" not in reply and reply["data"]["createWebhookEndpoint"]["webhookEndpoint"] is None, (
                url,
                reply,
            )
            [error] = reply["data"]["createWebhookEndpoint"]["errors"]
            assert (error["code"], error["field"]) == ("WEBHOOK_TARGET_REFUSED", ["input", "url"]), (url, reply)
        assert await session.scalar(select(func.count()).select_from(WebhookEndpoint)) == 0
        ok = (
            await c.post("/graphql", json={"query": CREATE, "variables": {"u": "https://8.8.8.8/hook"}}, headers=auth)
        ).json()
    assert ok["data"]["createWebhookEndpoint"]["webhookEndpoint"]["url"] == "https://8.8.8.8/hook", ok
    async with app_client() as c:  # test environment: a local receiver is fine, a private one is not
        local = (
            await c.post("/graphql", json={"query": CREATE, "variables": {"u": "http://127.0.0.1:9/h"}}, headers=auth)
        ).json()
        private = (
            await c.post("/graphql", json={"query": CREATE, "variables": {"u": "http://192.168.0.10/h"}}, headers=auth)
        ).json()
    assert local["data"]["createWebhookEndpoint"]["webhookEndpoint"]["url"] == "http://127.0.0.1:9/h", local
    assert private["data"]["createWebhookEndpoint"]["errors"][0]["code"] == "WEBHOOK_TARGET_REFUSED", private


# --- delivery


class Receiver:
    """A local HTTP(S) receiver recording (path, headers) and answering `status` (with a Location for 3xx)."""

    def __init__(self, status: int = 200, location: str | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((self.path, dict(self.headers)))
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


async def make_delivery(session, url: str) -> uuid.UUID:  # type: ignore[no-untyped-def]
    """A delivery to `url` as if its endpoint had been registered before (or the policy changed since)."""
    row = WebhookDelivery(id=uuid.uuid4(), url=url, event="payment.test", payload={"n": 1}, state="QUEUED")
    session.add(row)
    await session.commit()
    return row.id


async def state_of(session, delivery_id: uuid.UUID) -> tuple[str, str | None]:  # type: ignore[no-untyped-def]
    session.expire_all()
    row = await session.get(WebhookDelivery, delivery_id)
    return row.state, row.last_error


async def test_delivery_rechecks_the_target_and_kills_refused_ones(session, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    for url in (
        f"http://127.0.0.1:{receiver.port}/h",
        f"http://2130706433:{receiver.port}/h",
        f"http://localhost:{receiver.port}/h",
        "https://169.254.169.254/latest/meta-data/",
    ):
        delivery = await make_delivery(session, url)
        async with webhooks.delivery_client() as http:
            assert await webhooks.attempt(session, delivery, SECRET, http, PROD) is False
        state, error = await state_of(session, delivery)
        assert state == "DEAD" and error is not None and error.startswith("refused:"), (url, state, error)
    assert receiver.requests == []
    # the same receiver is fine for development
    delivery = await make_delivery(session, f"http://127.0.0.1:{receiver.port}/h")
    async with webhooks.delivery_client() as http:
        assert await webhooks.attempt(session, delivery, SECRET, http, DEV) is True
    assert [p for p, _ in receiver.requests] == ["/h"]


async def test_rebinding_after_registration_is_caught_at_delivery(session) -> None:  # type: ignore[no-untyped-def]
    answers = iter([["93.184.216.34"], ["169.254.169.254"]])

    async def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    url = await webhooks.check_url("https://hooks.rebind.example/h", PROD, rebinding)  # public at registration
    delivery = await make_delivery(session, url)
    async with webhooks.delivery_client() as http:
        assert await webhooks.attempt(session, delivery, SECRET, http, PROD, rebinding) is False
    state, error = await state_of(session, delivery)
    assert state == "DEAD" and "private, link-local" in (error or "")


async def test_delivery_connects_to_the_checked_address_with_the_original_host(session, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    """The name is resolved once, by the check; the connection goes to that address (the system resolver does not
    know this name, so a second lookup by the HTTP client would fail), and the receiver sees the original Host."""
    lookups: list[str] = []

    async def once(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"] if len(lookups) == 1 else ["169.254.169.254"]

    delivery = await make_delivery(session, f"http://hooks.pinned.invalid:{receiver.port}/in?a=1")
    async with webhooks.delivery_client() as http:
        assert await webhooks.attempt(session, delivery, SECRET, http, DEV, once) is True
    assert lookups == ["hooks.pinned.invalid"]
    assert len(receiver.requests) == 1
    path, headers = receiver.requests[0]
    assert path == "/in?a=1" and headers["Host"] == f"hooks.pinned.invalid:{receiver.port}"


async def test_redirects_are_not_followed(session, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    bouncer = Receiver(status=307, location=f"http://127.0.0.1:{receiver.port}/internal")
    try:
        delivery = await make_delivery(session, f"http://127.0.0.1:{bouncer.port}/h")
        async with webhooks.delivery_client() as http:
            with pytest.raises(webhooks.DeliveryFailed, match="HTTP 307"):
                await webhooks.attempt(session, delivery, SECRET, http, DEV)
    finally:
        bouncer.close()
    assert len(bouncer.requests) == 1 and receiver.requests == []


def _tls_for(host: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context with a certificate for `host` only, client context trusting it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    import tempfile

    with tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False) as f:
        f.write(pem + key_pem)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(f.name)
    client = ssl.create_default_context(cadata=pem.decode())
    return server, client


async def test_https_to_the_checked_address_verifies_the_certificate_for_the_host_name(session) -> None:  # type: ignore[no-untyped-def]
    host = f"hooks-{secrets.token_hex(3)}.example.test"
    server_tls, client_tls = _tls_for(host)
    tls_receiver = Receiver(tls=server_tls)

    async def to_loopback(h: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    try:
        delivery = await make_delivery(session, f"https://{host}:{tls_receiver.port}/secure")
        async with httpx.AsyncClient(
            verify=client_tls, follow_redirects=False, trust_env=False, limits=httpx.Limits(max_keepalive_connections=0)
        ) as http:
            assert await webhooks.attempt(session, delivery, SECRET, http, DEV, to_loopback) is True
    finally:
        tls_receiver.close()
    assert [(p, h["Host"]) for p, h in tls_receiver.requests] == [("/secure", f"{host}:{tls_receiver.port}")]


async def test_each_checked_address_is_tried_in_turn(session, receiver: Receiver) -> None:  # type: ignore[no-untyped-def]
    """A host with an address that refuses connections (an AAAA record without an IPv6 route, say) and one that
    works: delivered to the second, and still only to checked addresses."""

    async def two(host: str, port: int) -> list[str]:
        return ["127.0.0.2", "127.0.0.1"]  # nothing listens on 127.0.0.2 at this port

    delivery = await make_delivery(session, f"http://hooks.two.invalid:{receiver.port}/two")
    async with webhooks.delivery_client() as http:
        assert await webhooks.attempt(session, delivery, SECRET, http, DEV, two) is True
    assert [p for p, _ in receiver.requests] == ["/two"]
