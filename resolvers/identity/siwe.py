"""Sign-In with Ethereum (EIP-4361) messages: the wallet-linking challenge is one, rendered and parsed here.

    {domain} wants you to sign in with your Ethereum account:
    {address}

    {statement}

    URI: {uri}
    Version: 1
    Chain ID: {chain_id}
    Nonce: {nonce}
    Issued At: {issued_at}
    Expiration Time: {expiration_time}

Wallets that understand EIP-4361 show it as a sign-in request for `domain` (and warn when the page's origin is
another). The server checks a signed message field by field (`check`) before it looks at the signature.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

STATEMENT = "Link this wallet to your StableRWA account. Signing costs nothing and moves no funds."

_MESSAGE = re.compile(
    r"^(?P<domain>[^\s/?#]+) wants you to sign in with your Ethereum account:\n"
    r"(?P<address>0x[0-9a-fA-F]{40})\n\n"
    r"(?:(?P<statement>[^\n]+)\n\n)?"
    r"URI: (?P<uri>\S+)\n"
    r"Version: (?P<version>1)\n"
    r"Chain ID: (?P<chain_id>[0-9]+)\n"
    r"Nonce: (?P<nonce>[A-Za-z0-9]{8,})\n"
    r"Issued At: (?P<issued_at>\S+)"
    r"(?:\nExpiration Time: (?P<expiration_time>\S+))?"
    r"(?:\nNot Before: (?P<not_before>\S+))?"
    r"(?:\nRequest ID: (?P<request_id>[^\n]*))?"
    r"(?:\nResources:(?P<resources>(?:\n- \S+)+))?$"
)


class MalformedMessage(ValueError):
    pass


@dataclass(frozen=True)
class SiweMessage:
    domain: str
    address: str
    statement: str | None
    uri: str
    chain_id: int
    nonce: str
    issued_at: datetime
    expiration_time: datetime | None
    version: str = "1"
    not_before: datetime | None = None
    request_id: str | None = None
    resources: tuple[str, ...] = ()

    def render(self) -> str:
        lines = [f"{self.domain} wants you to sign in with your Ethereum account:", self.address, ""]
        if self.statement:
            lines += [self.statement, ""]
        lines += [
            f"URI: {self.uri}",
            f"Version: {self.version}",
            f"Chain ID: {self.chain_id}",
            f"Nonce: {self.nonce}",
            f"Issued At: {rfc3339(self.issued_at)}",
        ]
        if self.expiration_time is not None:
            lines.append(f"Expiration Time: {rfc3339(self.expiration_time)}")
        if self.not_before is not None:
            lines.append(f"Not Before: {rfc3339(self.not_before)}")
        if self.request_id is not None:
            lines.append(f"Request ID: {self.request_id}")
        if self.resources:
            lines.append("Resources:")
            lines += [f"- {r}" for r in self.resources]
        return "\n".join(lines)


def rfc3339(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, as EIP-4361 examples write it."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _time(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise MalformedMessage(f"not an RFC 3339 time: {raw!r}") from None
    if moment.tzinfo is None:
        raise MalformedMessage(f"time without an offset: {raw!r}")
    return moment


def parse(text: str) -> SiweMessage:
    match = _MESSAGE.match(text)
    if match is None:
        raise MalformedMessage("not an EIP-4361 message")
    g = match.groupdict()
    issued = _time(g["issued_at"])
    assert issued is not None
    return SiweMessage(
        domain=g["domain"],
        address=g["address"],
        statement=g["statement"],
        uri=g["uri"],
        chain_id=int(g["chain_id"]),
        nonce=g["nonce"],
        issued_at=issued,
        expiration_time=_time(g["expiration_time"]),
        version=g["version"],
        not_before=_time(g["not_before"]),
        request_id=g["request_id"],
        resources=tuple(r[2:] for r in (g["resources"] or "").split("\n") if r),
    )


def check(message: SiweMessage, *, domain: str, address: str, chain_id: int, nonce: str, now: datetime) -> str | None:
    """None when `message` is the one expected at `now`; else what is wrong with it."""
    if message.domain != domain:
        return "domain"
    if message.address != address:
        return "address"
    if message.chain_id != chain_id:
        return "chain id"
    if message.nonce != nonce:
        return "nonce"
    if message.expiration_time is not None and message.expiration_time <= now:
        return "expired"
    if message.not_before is not None and message.not_before > now:
        return "not yet valid"
    return None
