"""S3-compatible storage (Aliyun OSS, AWS S3, MinIO, R2) through aioboto3.

With ``SHENGTU_S3_PUBLIC_BASE_URL`` a picture's URL is the bucket's own public URL.
Without it, the URL is ours (``/files/<key>``, permanent) and answers with a redirect
to a freshly signed URL, so ``resultUrl`` never expires even though signatures do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import aioboto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from shengtu.config import Settings
from shengtu.gates import Gate
from shengtu.storage.base import Check, Stored
from shengtu.storage.images import ImageInfo
from shengtu.storage.local import valid_key


class S3Storage:
    def __init__(self, settings: Settings) -> None:
        self.bucket = settings.s3_bucket
        self.expire = settings.s3_url_expire_seconds
        self.public_base = settings.s3_public_base_url.rstrip("/")
        self.files_prefix = settings.resolved_public_base_url + "/files/"
        self._session = aioboto3.Session(
            aws_access_key_id=settings.s3_access_key or None,
            aws_secret_access_key=settings.s3_secret_key or None,
            region_name=settings.s3_region or None,
        )
        self._client_options: dict[str, Any] = {
            "endpoint_url": settings.s3_endpoint or None,
            "config": Config(
                signature_version="s3v4",
                s3={"addressing_style": settings.s3_addressing_style},
                retries={"max_attempts": 3, "mode": "standard"},
            ),
        }
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None

    async def start(self) -> None:
        self._stack = contextlib.AsyncExitStack()
        self._client = await self._stack.enter_async_context(
            self._session.client("s3", **self._client_options)
        )

    async def aclose(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await self._client.put_object(
            Bucket=self.bucket, Key=key, Body=data, ContentType=content_type
        )

    async def put_checked(
        self, data: bytes, check: Check, key_for: Callable[[ImageInfo], str], gate: Gate
    ) -> Stored:
        stored, info = await gate.run(check, data)
        key = key_for(info)
        await self.put(key, stored, info.content_type)
        return Stored(key, info, len(stored))

    async def get(self, key: str) -> bytes | None:
        try:
            response = await self._client.get_object(Bucket=self.bucket, Key=key)
            async with response["Body"] as body:
                data: bytes = await body.read()
                return data
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise

    async def delete(self, key: str) -> None:
        with contextlib.suppress(ClientError, BotoCoreError):
            await self._client.delete_object(Bucket=self.bucket, Key=key)

    def url(self, key: str) -> str:
        if self.public_base:
            return f"{self.public_base}/{key}"
        return self.files_prefix + key

    def key_from_url(self, url: str) -> str | None:
        for prefix in (self.files_prefix, self.public_base + "/" if self.public_base else None):
            if prefix and url.startswith(prefix):
                key = url[len(prefix) :].split("?", 1)[0]
                return key if valid_key(key) else None
        return None

    async def locate(self, key: str) -> str | None:
        """Where a client fetches ``key``: a signed (or public) URL."""
        if not valid_key(key):
            return None
        if self.public_base:
            return f"{self.public_base}/{key}"
        url: str = await self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.expire
        )
        return url
