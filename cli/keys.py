"""`rwa keys`: the JWT signing key rotation path (docs/runbooks/rotate-jwt-key.md).

rwa keys jwt-new --kid prod-2 --out jwt-prod-2.pem   # new Ed25519 key (0600) + the phase-1 JSON to publish
rwa keys jwt-status [--json]                          # the kid this configuration signs with, and the ones it verifies
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from cli.runtime import err, fail

app = typer.Typer(no_args_is_help=True, help="Signing keys (JWT rotation).")


def _retired(raw: str | None) -> dict[str, str]:
    try:
        value = json.loads(raw or "{}")
    except ValueError as exc:
        raise fail(f"invalid configuration: JWT_RETIRED_PUBLIC_KEYS is not JSON ({exc})", 2)
    if not isinstance(value, dict):
        raise fail("invalid configuration: JWT_RETIRED_PUBLIC_KEYS must be a JSON object {kid: public PEM}", 2)
    return value


@app.command("jwt-new")
def jwt_new(
    kid: str = typer.Option(..., help="Key id of the new key (e.g. prod-2)."),
    out: Path = typer.Option(..., help="Where to write the private key (PEM, mode 0600; never overwritten)."),
) -> None:
    """Generate a new Ed25519 signing key. Prints the JWT_RETIRED_PUBLIC_KEYS value of phase 1: the keys that
    verify today plus the new public key, so every pod knows it before any pod signs with it."""
    from core.jwt_keys import generate_private_key_pem, public_key_pem
    from core.settings import get_settings

    if not kid.strip() or len(kid) > 64 or any(ch.isspace() for ch in kid):
        raise fail("--kid must be 1-64 characters without spaces", 2)
    settings = get_settings()
    if kid == settings.jwt_key_id:
        raise fail(f"--kid {kid!r} is the kid in use (JWT_KEY_ID): pick a new one", 2)
    pem = generate_private_key_pem()
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise fail(f"{out} exists: not overwritten", 2)
    with os.fdopen(fd, "w") as fh:
        fh.write(pem)
    published = {**_retired(settings.jwt_retired_public_keys), kid: public_key_pem(pem)}
    err.print(f"[green]wrote {out}[/] (kid {kid}). Phase 1: set JWT_RETIRED_PUBLIC_KEYS to the JSON below, roll out.")
    print(json.dumps(published))


@app.command("jwt-status")
def jwt_status(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """The kid this configuration signs with and every kid it accepts (exit 2 when the keys do not load)."""
    from core.jwt_keys import KeyRing
    from core.settings import get_settings

    settings = get_settings()
    retired = _retired(settings.jwt_retired_public_keys)
    if settings.jwt_private_key is None and settings.is_production:
        raise fail("JWT_PRIVATE_KEY must be set when RWA_ENV=production", 2)
    try:
        ring = KeyRing.from_settings(settings)
    except (ValueError, TypeError) as exc:
        raise fail(f"invalid configuration: JWT_PRIVATE_KEY / JWT_RETIRED_PUBLIC_KEYS: {exc}", 2)
    info = {"signing": ring.kid, "verifying": sorted({ring.kid, *retired})}
    if as_json:
        print(json.dumps(info))
    else:
        print(f"signing kid: {info['signing']}\nverifying kids: {', '.join(info['verifying'])}")
