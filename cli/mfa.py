"""`rwa user mfa-enrol`: enrol a user's TOTP second factor from a server host.

This is how the first ADMIN (and any ADMIN/COMPLIANCE account) gets MFA in production, where such accounts cannot
sign in without it (resolvers/identity/mfa.py). Whoever runs it holds the database and the encryption key, so it
needs no password. Without `--code` it starts an enrolment (printing the otpauth URI and the secret on stdout, the
operator's terminal, never in logs) and asks for the first code; with `--code` it confirms a pending enrolment.
Either way the recovery codes are printed once.
"""

from __future__ import annotations

import asyncio
import sys

import click
import typer

from cli.runtime import err, fail, runtime


def mfa_enrol(
    email: str = typer.Option(..., help="The account's email."),
    code: str | None = typer.Option(
        None, help="Confirm a pending enrolment with this authenticator code (otherwise a new enrolment starts)."
    ),
) -> None:
    """Enrol a user's TOTP authenticator (required for ADMIN and COMPLIANCE in production)."""
    from sqlalchemy import select

    from core.db import create_engine, create_session_factory
    from core.errors import AppError, BadUserInput
    from core.services import build_cipher
    from models.identity import User
    from resolvers.audit import record
    from resolvers.identity import mfa
    from resolvers.identity.validation import normalize_email

    with runtime(quiet_logs=True) as settings:
        cipher = build_cipher(settings)

        async def _run(step: str, code: str | None) -> tuple[str, mfa.Enrolment | list[str]]:
            engine = create_engine(settings.database_url or "", pool_size=1)
            try:
                async with create_session_factory(engine)() as session:
                    user = (
                        await session.execute(select(User).where(User.email == normalize_email(email)))
                    ).scalar_one_or_none()
                    if user is None:
                        raise BadUserInput("no account with this email", field="email")
                    if step == "begin":
                        result: mfa.Enrolment | list[str] = await mfa.begin(
                            session, cipher, user.id, user.email, settings.mfa_issuer
                        )
                        action = "mfa.enrolment_begin"
                    else:
                        result = await mfa.confirm(session, cipher, settings, user.id, code or "", BadUserInput)
                        action = "mfa.enrolment_confirm"
                    record(
                        session,
                        actor_id=None,
                        action=action,
                        target_type="user",
                        target_id=user.id,
                        details={"via": "cli"},
                    )
                    await session.commit()
                    return user.email, result
            finally:
                await engine.dispose()

        try:
            if code is None:
                stored, enrolment = asyncio.run(_run("begin", None))
                assert isinstance(enrolment, mfa.Enrolment)  # what "begin" returns
                typer.echo(f"otpauth URI: {enrolment.otpauth_uri}")
                typer.echo(f"secret:      {enrolment.secret}")
                pending = f"enrolment pending: confirm with `rwa user mfa-enrol --email {stored} --code <code>`"
                if not sys.stdin.isatty():  # scripted: confirm with a second run
                    err.print(pending)
                    return
                try:
                    code = typer.prompt("code from the authenticator app")
                except (typer.Abort, click.exceptions.Abort, EOFError):
                    err.print(pending)
                    return
            stored, codes = asyncio.run(_run("confirm", code))
            assert isinstance(codes, list)  # what "confirm" returns
        except AppError as exc:
            raise fail(exc.message, 2)
        err.print(f"[green]MFA enabled[/] for {stored}. Recovery codes (shown once, each works once):")
        for recovery in codes:
            typer.echo(recovery)
