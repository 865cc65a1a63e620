"""Blob storage for uploaded documents, behind one small interface.

    storage = storage_from_settings(settings)      # LocalStorage under <data dir>/documents by default
    await storage.put("assets/<id>/<doc>", data)
    data = await storage.get("assets/<id>/<doc>")

`S3Storage` speaks the S3 REST API (AWS Signature V4 over httpx) to any S3-compatible endpoint (AWS, MinIO,
R2...); select it with DOCUMENT_STORAGE_URL=s3://bucket/prefix plus S3_ENDPOINT, S3_REGION, S3_ACCESS_KEY_ID,
S3_SECRET_ACCESS_KEY. Integrity is checked by the caller (sha256 recorded at upload), not by the backend.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import os
import re
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, urlparse

import httpx

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


def _sign(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


class S3Storage:
    """Path-style S3 requests signed with SigV4 (no SDK needed)."""

    def __init__(self, endpoint: str, bucket: str, prefix: str, region: str, access_key: str, secret_key: str,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.bucket, self.prefix, self.region = bucket, prefix.strip("/"), region
        self._access, self._secret = access_key, secret_key
        self._client = httpx.AsyncClient(timeout=30.0, transport=transport)

    def _url_path(self, key: str) -> str:
        full = f"{self.prefix}/{check_key(key)}" if self.prefix else check_key(key)
        return f"/{self.bucket}/{quote(full, safe='/-_.~')}"

    def _headers(self, method: str, path: str, payload: bytes, extra: dict[str, str]) -> dict[str, str]:
        now = dt.datetime.now(dt.timezone.utc)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        host = urlparse(self.endpoint).netloc
        payload_hash = hashlib.sha256(payload).hexdigest()
        headers = {"host": host, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date,
                   **{k.lower(): v for k, v in extra.items()}}
        signed = ";".join(sorted(headers))
        canonical = "\n".join([method, path, "", *(f"{k}:{headers[k].strip()}" for k in sorted(headers)), "",
                               signed, payload_hash])
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        k = _sign(_sign(_sign(_sign(f"AWS4{self._secret}".encode(), day), self.region), "s3"), "aws4_request")
        signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={self._access}/{scope}, SignedHeaders={signed}, "
                                    f"Signature={signature}")
        del headers["host"]
        return headers

    async def _request(self, method: str, key: str, payload: bytes = b"", **extra: str) -> httpx.Response:
        path = self._url_path(key)
        try:
            resp = await self._client.request(method, self.endpoint + path, content=payload or None,
                                              headers=self._headers(method, path, payload, extra))
        except httpx.HTTPError as exc:
            raise StorageError(f"{method} {key}: {exc}") from exc
        if resp.status_code == 404:
            raise ObjectMissing(key)
        if resp.status_code >= 300:
            raise StorageError(f"{method} {key}: HTTP {resp.status_code}")
        return resp

    async def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        await self._request("PUT", key, data, **{"content-type": content_type})

    async def get(self, key: str) -> bytes:
        return (await self._request("GET", key)).content

    async def delete(self, key: str) -> None:
        try:
            await self._request("DELETE", key)
        except ObjectMissing:
            pass


def storage_from_settings(settings: Settings) -> Storage:
    url = os.environ.get("DOCUMENT_STORAGE_URL", "")
    if url.startswith("s3://"):
        parsed = urlparse(url)
        return S3Storage(os.environ["S3_ENDPOINT"], parsed.netloc, parsed.path, os.environ.get("S3_REGION", "us-east-1"),
                         os.environ["S3_ACCESS_KEY_ID"], os.environ["S3_SECRET_ACCESS_KEY"])
    if url:
        return LocalStorage(Path(url.removeprefix("file://")).expanduser().resolve())
    return LocalStorage(settings.data_path() / "documents")
