"""Documents on S3 through boto3, against moto's standalone S3 server (a real S3 API over HTTP on 127.0.0.1):
static keys, the default credential chain (AWS_* variables, and an IAM role assumed with a web identity token
as on EKS/IRSA), the API's upload/download through S3, and typed errors when the store fails."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from core.settings import ConfigError, Settings
from core.storage import LocalStorage, ObjectMissing, S3Storage, StorageError, storage_from_settings
from tests.assets.conftest import make_asset  # noqa: F401  (fixture)
from tests.assets.test_documents import DOWNLOAD, PDF, upload, uploaded

KEYS = {"access_key_id": "AKIAMOTOTESTKEY00001", "secret_access_key": "moto-secret-access-key-0123456789abcdef"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    """moto's standalone server on 127.0.0.1 and a random port, stopped after the module."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/moto-api/", timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto server did not start: {proc.stderr.read() if proc.stderr else ''}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def bucket(moto_server: str) -> str:
    name = f"rwa-docs-{os.urandom(4).hex()}"
    boto3.client(
        "s3",
        endpoint_url=moto_server,
        region_name="us-east-1",
        aws_access_key_id=KEYS["access_key_id"],
        aws_secret_access_key=KEYS["secret_access_key"],
    ).create_bucket(Bucket=name)
    return name


@pytest.fixture
def no_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only what a test sets may count as credentials (no ~/.aws, no instance metadata lookups)."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def settings_for(moto_server: str, bucket: str, **extra: str) -> Settings:
    return Settings(
        DOCUMENT_STORAGE_URL=f"s3://{bucket}/docs/prod",
        S3_ENDPOINT=moto_server,  # type: ignore[call-arg]
        S3_REGION="eu-west-1",
        **extra,
    )


def raw_object(moto_server: str, bucket: str, key: str) -> bytes:
    client = boto3.client(
        "s3",
        endpoint_url=moto_server,
        region_name="us-east-1",
        aws_access_key_id=KEYS["access_key_id"],
        aws_secret_access_key=KEYS["secret_access_key"],
    )
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


async def test_round_trip_with_static_keys(moto_server: str, bucket: str, no_aws_env: None) -> None:
    settings = settings_for(
        moto_server, bucket, S3_ACCESS_KEY_ID=KEYS["access_key_id"], S3_SECRET_ACCESS_KEY=KEYS["secret_access_key"]
    )
    store = storage_from_settings(settings)
    assert isinstance(store, S3Storage) and "secret" not in repr(store)
    body = os.urandom(256 * 1024)  # binary, larger than one read
    await store.put("assets/a1/d1", body, "application/pdf")
    assert await store.get("assets/a1/d1") == body
    assert raw_object(moto_server, bucket, "docs/prod/assets/a1/d1") == body  # under the URL's prefix
    await asyncio.gather(*(store.put(f"assets/a1/c{i}", bytes([i]) * 10) for i in range(8)))  # concurrent puts
    assert [await store.get(f"assets/a1/c{i}") for i in range(8)] == [bytes([i]) * 10 for i in range(8)]
    await store.delete("assets/a1/d1")
    with pytest.raises(ObjectMissing):
        await store.get("assets/a1/d1")
    await store.delete("assets/a1/d1")  # deleting what is gone is fine
    with pytest.raises(ValueError):
        await store.get("../escape")


async def test_default_credential_chain_from_the_environment(
    moto_server: str, bucket: str, no_aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No S3_* keys in the settings: boto3's chain finds AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY."""
    store = storage_from_settings(settings_for(moto_server, bucket))
    with pytest.raises(StorageError, match="credentials"):  # nothing in the chain yet: a typed error
        await store.put("assets/x/y", b"data")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEYS["access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", KEYS["secret_access_key"])
    store = storage_from_settings(settings_for(moto_server, bucket))
    await store.put("assets/x/y", b"data")
    assert await store.get("assets/x/y") == b"data"


async def test_iam_role_through_web_identity(
    moto_server: str, bucket: str, no_aws_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The EKS/IRSA shape: a role ARN and a projected token file; boto3 calls STS AssumeRoleWithWebIdentity (moto's
    STS here) and signs with the temporary credentials. No key anywhere in the configuration."""
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6cndhOnJ3YS1hcGkifQ.sig")
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/rwa-documents")
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token))
    monkeypatch.setenv("AWS_ROLE_SESSION_NAME", "rwa-api")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", moto_server)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    store = storage_from_settings(settings_for(moto_server, bucket))
    await store.put("assets/irsa/doc", PDF, "application/pdf")
    assert raw_object(moto_server, bucket, "docs/prod/assets/irsa/doc") == PDF
    creds = store._client._request_signer._credentials  # the signer uses the assumed role's temporary keys
    assert creds.method == "assume-role-with-web-identity"


async def test_unreachable_store_is_a_storage_error(no_aws_env: None) -> None:
    port = _free_port()  # nothing listens there
    store = S3Storage("bucket", endpoint_url=f"http://127.0.0.1:{port}", region="us-east-1", **KEYS)
    started = time.monotonic()
    with pytest.raises(StorageError):
        await store.get("assets/a/b")
    assert time.monotonic() - started < 30


async def test_api_upload_and_download_through_s3(
    app_client,
    make_user,
    make_asset,
    moto_server: str,  # type: ignore[no-untyped-def]
    bucket: str,
    no_aws_env: None,
) -> None:
    from models.assets import AssetStatus

    env = {
        "DOCUMENT_STORAGE_URL": f"s3://{bucket}/api",
        "S3_ENDPOINT": moto_server,
        "S3_REGION": "us-east-1",
        "S3_ACCESS_KEY_ID": KEYS["access_key_id"],
        "S3_SECRET_ACCESS_KEY": KEYS["secret_access_key"],
    }
    issuer = await make_user(roles=["ISSUER"])
    asset_id = await make_asset(issuer.id, status=AssetStatus.DRAFT)
    async with app_client(**env) as client:
        resp = await upload(client, issuer.token, asset_id, PDF)
        doc = uploaded(resp)
        assert raw_object(moto_server, bucket, f"api/assets/{asset_id}/{doc['id']}") == PDF
        r = (
            await client.post(
                "/graphql",
                json={"query": DOWNLOAD, "variables": {"id": doc["id"]}},
                headers={"Authorization": f"Bearer {issuer.token}"},
            )
        ).json()
        assert base64.b64decode(r["data"]["documentContent"]["contentBase64"]) == PDF
        assert r["data"]["documentContent"]["document"]["sha256"] == hashlib.sha256(PDF).hexdigest()


def test_local_storage_stays_the_default(tmp_path: Path) -> None:
    store = storage_from_settings(Settings(RWA_DATA_DIR=str(tmp_path)))  # type: ignore[call-arg]
    assert isinstance(store, LocalStorage) and store.root == tmp_path.resolve() / "documents"


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"DOCUMENT_STORAGE_URL": "s3:///no-bucket"}, "names no bucket"),
        ({"DOCUMENT_STORAGE_URL": "ftp://host/x"}, "DOCUMENT_STORAGE_URL"),
        ({"S3_ACCESS_KEY_ID": "AKIAREALKEY000000001"}, "go together"),
        (
            {"S3_ACCESS_KEY_ID": "AKIAREALKEY000000001", "S3_SECRET_ACCESS_KEY": "change-me-please-0123456789"},
            "S3_SECRET_ACCESS_KEY looks like a placeholder",
        ),
    ],
)
def test_production_refuses_a_broken_storage_configuration(extra: dict[str, str], match: str) -> None:
    from tests.platform.test_settings import production_env

    env = {**production_env(), "DOCUMENT_STORAGE_URL": "s3://rwa-docs/prod", **extra}
    with pytest.raises(ConfigError, match=match):
        Settings(**env).check_production()  # type: ignore[arg-type]
    Settings(**{**production_env(), "DOCUMENT_STORAGE_URL": "s3://rwa-docs/prod"}).check_production()  # type: ignore[arg-type]
