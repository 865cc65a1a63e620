"""`rwa kyc rekey`: re-encrypt personal data under the current KYC_ENCRYPTION_KEY while the API keeps serving
(docs/runbooks/rotate-kyc-key.md)."""

from __future__ import annotations

import asyncio

import typer

from cli.runtime import err, fail, runtime

app = typer.Typer(no_args_is_help=True, help="Personal data at rest (KYC key rotation).")


@app.command("rekey")
def rekey(
    batch: int = typer.Option(500, min=1, max=10_000, help="Rows per transaction."),
    status: bool = typer.Option(
        False, "--status", help="Only count the rows not yet under the current key; exit 1 when some are left."
    ),
) -> None:
    """Re-wrap every personal-data key (per user; they encrypt the KYC cases) and MFA secret not yet under KYC_ENCRYPTION_KEY (old keys in
    KYC_RETIRED_ENCRYPTION_KEYS). Resumable and idempotent; safe next to running API processes."""
    from core.db import create_engine, create_session_factory
    from core.services import build_cipher
    from resolvers.identity.rekey import rekey_all, remaining

    with runtime(quiet_logs=True) as settings:
        try:
            cipher = build_cipher(settings)
        except ValueError as exc:
            raise fail(f"invalid configuration: KYC_ENCRYPTION_KEY / KYC_RETIRED_ENCRYPTION_KEYS: {exc}", 2)

        async def _run() -> tuple[dict[str, int], dict[str, int]]:
            engine = create_engine(settings.database_url or "", pool_size=2)
            factory = create_session_factory(engine)
            try:
                done: dict[str, int] = {}
                if not status:
                    done = await rekey_all(factory, cipher, batch, lambda col, n: err.print(f"{col}: {n} re-encrypted"))
                async with factory() as session:
                    return done, await remaining(session, cipher)
            finally:
                await engine.dispose()

        from cryptography.exceptions import InvalidTag

        try:
            done, left = asyncio.run(_run())
        except (InvalidTag, ValueError) as exc:
            raise fail(
                "a row is encrypted under a key that is neither KYC_ENCRYPTION_KEY nor in "
                f"KYC_RETIRED_ENCRYPTION_KEYS ({type(exc).__name__}); its batch was rolled back",
                3,
            )
        for col in left:
            line = f"{col}: {left[col]} left under an old key"
            if not status:
                line = f"{col}: {done.get(col, 0)} re-encrypted, {left[col]} left"
            err.print(line)
        print(f"current key id {cipher.key_id.hex()}; rows left under old keys: {sum(left.values())}")
        if any(left.values()):
            raise typer.Exit(1)
