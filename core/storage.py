"""Blob storage for uploaded documents, behind one small interface.

    storage = storage_from_settings(settings)      # LocalStorage under <data dir>/documents by default
    await storage.put("assets/<id>/<doc>", data)
    data = await storage.get("assets/<id>/<doc>")

`S3Storage` talks to any S3-compatible store (AWS, MinIO, R2...) through boto3; select it with
DOCUMENT_STORAGE_URL=s3://bucket/prefix, plus S3_ENDPOINT (not for AWS), S3_REGION and optionally static keys
S3_ACCESS_KEY_ID/S3_SECRET_ACCESS_KEY (without them boto3's default chain: IAM role, IRSA, instance profile).
All of it comes from the settings object. Integrity is checked by the caller (sha256 recorded at upload).
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from core.settings import Settings

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9/_.-]{0,250}$")


class StorageError(Exception):
    """The backend failed or the object is missing."""


class ObjectMissing(StorageError):
    pass


def check_key(key: str) -> str:
    if not _KEY.match(key) or ".." in key or "//" in key:
        raise ValueError(f"invalid storage key {key!r}")
    return key


class Storage(Protocol):
    async def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None: ...

    async def get(self, key: str) -> bytes: ...

    async def delete(self, key: str) -> None: ...


class LocalStorage:
    """Files under `root`; writes go to a temp file then rename, so readers never see half a file."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _put(self, key: str, data: bytes) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)

    async def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        await asyncio.to_thread(self._put, key, data)

    async def get(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(self.path(key).read_bytes)
        except FileNotFoundError as exc:
            raise ObjectMissing(key) from exc

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path(key).unlink, True)


class S3Storage:
    """An S3 bucket (AWS, MinIO, R2, Ceph...) through boto3; blocking calls run in a thread.

    Credentials: the static pair when both are given, else boto3's default chain (environment, web identity /
    IRSA, ECS task role, EC2 instance profile, shared config), so an IAM role needs no key in the settings.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        addressing_style: str | None = None,
    ) -> None:
        import boto3  # only when S3 is configured: ~0.2 s and ~20 MB that a local-disk process does not need
        from botocore.config import Config

        self.bucket, self.prefix = bucket, prefix.strip("/")
        config = Config(
            region_name=region or None,
            signature_version="s3v4",
            connect_timeout=5,
            read_timeout=30,
            retries={"max_attempts": 4, "mode": "standard"},
            max_pool_connections=32,
            s3={"addressing_style": addressing_style or ("path" if endpoint_url else "auto")},
        )
        static = (
            {"aws_access_key_id": access_key_id, "aws_secret_access_key": secret_access_key}
            if access_key_id and secret_access_key
            else {}
        )
        self._client = boto3.session.Session().client("s3", endpoint_url=endpoint_url or None, config=config, **static)

    def __repr__(self) -> str:
        return f"S3Storage(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{check_key(key)}" if self.prefix else check_key(key)

    async def _call(self, op: str, key: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        full = self._key(key)
        try:
            return await asyncio.to_thread(getattr(self._client, op), Bucket=self.bucket, Key=full, **kwargs)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            if err.get("Code") in ("NoSuchKey", "404", "NotFound"):
                raise ObjectMissing(key) from exc
            raise StorageError(
                f"{op} {key}: {err.get('Code', 'error')}: {err.get('Message', '')}".rstrip(": ")
            ) from exc
        except BotoCoreError as exc:  # no credentials, endpoint unreachable, timeouts (after boto3's retries)
            raise StorageError(f"{op} {key}: {exc}") from exc

    async def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        await self._call("put_object", key, Body=data, ContentType=content_type)

    async def get(self, key: str) -> bytes:
        resp = await self._call("get_object", key)
        return await asyncio.to_thread(resp["Body"].read)

    async def delete(self, key: str) -> None:
        await self._call("delete_object", key)  # S3 answers 204 for a missing key too


def storage_from_settings(settings: Settings) -> Storage:
    url = settings.document_storage_url or ""
    if url.startswith("s3://"):
        parsed = urlparse(url)
        return S3Storage(
            parsed.netloc,
            parsed.path,
            endpoint_url=settings.s3_endpoint,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id.get_secret_value() if settings.s3_access_key_id else None,
            secret_access_key=settings.s3_secret_access_key.get_secret_value()
            if settings.s3_secret_access_key
            else None,
            addressing_style=settings.s3_addressing_style,
        )
    if url:
        return LocalStorage(Path(url.removeprefix("file://")).expanduser().resolve())
    return LocalStorage(settings.data_path() / "documents")
