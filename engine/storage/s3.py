"""S3-compatible storage through aiobotocore (AWS S3, Cloudflare R2, MinIO, SeaweedFS...).

Images are `<prefix><name>`, metadata `<prefix>.meta/<name>.json` (a prompt can outgrow S3's
2 KB of user metadata). Credentials come only from the standard AWS chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from .base import ByteRange, Meta, NotSatisfiable, Opened, StorageError, is_name
from .config import StorageConfig
from .local import CHUNK, mime_of

# botocore's debug output carries key ids, signatures and even secrets: at most warnings from
# it, whatever PIXGATE_LOG_LEVEL says (secrets never reach logs).
QUIET_LOGGERS = ("botocore", "aiobotocore", "s3transfer", "urllib3")
META = ".meta/"
CACHE_CONTROL = "public, max-age=31536000, immutable"


class S3Storage:
    kind = "s3"

    def __init__(self, config: StorageConfig) -> None:
        for name in QUIET_LOGGERS:
            logger = logging.getLogger(name)
            logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
        self.config = config
        self.bucket = config.bucket
        self.prefix = config.prefix
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def client(self) -> Any:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                cfg = self.config
                boto_config = Config(
                    signature_version="s3v4",
                    s3={"addressing_style": cfg.addressing_style},
                    retries={"total_max_attempts": 1},  # the gateway retries within its deadline
                    connect_timeout=5,
                    read_timeout=30,
                    max_pool_connections=64,
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                )
                stack = contextlib.AsyncExitStack()
                self._client = await stack.enter_async_context(
                    get_session().create_client(
                        "s3",
                        endpoint_url=cfg.endpoint_url,
                        region_name=cfg.region or "us-east-1",
                        config=boto_config,
                    )
                )
                self._stack = stack
        return self._client

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def meta_key(self, name: str) -> str:
        return f"{self.prefix}{META}{name}.json"

    async def put(self, name: str, data: bytes, mime: str, meta: Meta) -> None:
        client = await self.client()
        try:
            await asyncio.gather(
                client.put_object(
                    Bucket=self.bucket,
                    Key=self.key(name),
                    Body=data,
                    ContentType=mime,
                    CacheControl=CACHE_CONTROL,
                ),
                client.put_object(
                    Bucket=self.bucket,
                    Key=self.meta_key(name),
                    Body=json.dumps(meta).encode(),
                    ContentType="application/json",
                ),
            )
        except (BotoCoreError, ClientError, OSError) as exc:
            raise StorageError(describe(exc, self.config)) from None

    async def open(
        self, name: str, byte_range: ByteRange | None = None, if_none_match: str | None = None
    ) -> Opened | None:
        client = await self.client()
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key(name)}
        if byte_range is not None:
            args["Range"] = byte_range.header
        if if_none_match is not None:
            args["IfNoneMatch"] = if_none_match
        try:
            resp = await client.get_object(**args)
        except ClientError as exc:
            status = _status(exc)
            if status == 304:
                return Opened(
                    size=0, etag=if_none_match or "", mime=mime_of(name), not_modified=True
                )
            if status == 416:
                raise NotSatisfiable(_total(exc)) from None
            if status == 404:
                return None
            raise StorageError(describe(exc, self.config)) from None
        except (BotoCoreError, OSError) as exc:
            raise StorageError(describe(exc, self.config)) from None
        body = resp["Body"]
        length = int(resp["ContentLength"])
        first, last, size = 0, length - 1, length
        content_range = resp.get("ContentRange")
        if content_range:  # bytes first-last/size
            span, _, total = content_range.removeprefix("bytes ").partition("/")
            a, _, b = span.partition("-")
            first, last, size = int(a), int(b), int(total)
        opened = Opened(
            size=size,
            etag=resp.get("ETag") or "",
            mime=resp.get("ContentType") or mime_of(name),
            first=first,
            last=last,
        )

        async def close() -> None:
            body.close()

        opened.chunks = _chunks(body)
        opened.close = close
        return opened

    async def read(self, name: str, limit: int) -> bytes | None:
        opened = await self.open(name)
        if opened is None:
            return None
        if opened.size > limit or opened.chunks is None:
            if opened.close:
                await opened.close()
            return None
        parts = [chunk async for chunk in opened.chunks]
        return b"".join(parts)

    async def meta(self, name: str) -> Meta | None:
        if not is_name(name):
            return None
        client = await self.client()
        try:
            resp = await client.get_object(Bucket=self.bucket, Key=self.meta_key(name))
            async with resp["Body"] as body:
                meta: Meta = json.loads(await body.read())
        except ClientError as exc:
            if _status(exc) == 404:
                return None
            raise StorageError(describe(exc, self.config)) from None
        except (BotoCoreError, OSError, ValueError) as exc:
            raise StorageError(describe(exc, self.config)) from None
        return {**meta, "id": name}

    async def page(self, cursor: str | None, limit: int) -> tuple[list[Meta], str | None]:
        client = await self.client()
        base = f"{self.prefix}{META}"
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": base, "MaxKeys": limit}
        if cursor is not None and is_name(cursor):
            args["StartAfter"] = f"{base}{cursor}.json"
        try:
            resp = await client.list_objects_v2(**args)
        except (BotoCoreError, ClientError, OSError) as exc:
            raise StorageError(describe(exc, self.config)) from None
        names = [
            n
            for n in (o["Key"][len(base) :].removesuffix(".json") for o in resp.get("Contents", []))
            if is_name(n)
        ]
        metas = await asyncio.gather(*(self.meta(n) for n in names))
        items = [m for m in metas if m is not None]
        more = bool(resp.get("IsTruncated")) and bool(names)
        return items, (names[-1] if more else None)

    async def delete(self, names: list[str]) -> list[str]:
        names = [n for n in names if is_name(n)]
        if not names:
            return []
        client = await self.client()
        present = await asyncio.gather(*(self._exists(client, n) for n in names))
        gone = [n for n, ok in zip(names, present, strict=True) if ok]
        keys = [k for n in names for k in (self.key(n), self.meta_key(n))]
        await self._delete_keys(client, keys)
        return gone

    async def _exists(self, client: Any, name: str) -> bool:
        try:
            await client.head_object(Bucket=self.bucket, Key=self.key(name))
            return True
        except ClientError as exc:
            if _status(exc) == 404:
                return False
            raise StorageError(describe(exc, self.config)) from None
        except (BotoCoreError, OSError) as exc:
            raise StorageError(describe(exc, self.config)) from None

    async def _delete_keys(self, client: Any, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[i : i + 1000]]
            try:
                await client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            except (BotoCoreError, ClientError, OSError) as exc:
                raise StorageError(describe(exc, self.config)) from None

    async def direct_url(self, name: str) -> str | None:
        cfg = self.config
        if cfg.url_mode == "public" and cfg.public_base_url:
            return f"{cfg.public_base_url}/{self.key(name)}"
        if cfg.url_mode == "presigned":
            client = await self.client()
            url: str = await client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self.key(name)},
                ExpiresIn=int(cfg.presign_expiry),
            )
            return url
        return None

    async def sweep(self, ttl: float) -> int:
        """Delete our objects (images and their metadata) older than `ttl` seconds."""
        client = await self.client()
        cutoff = time.time() - ttl
        old: list[str] = []
        try:
            paginator = client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for obj in page.get("Contents", []):
                    rest = obj["Key"][len(self.prefix) :]
                    ours = is_name(rest) or (
                        rest.startswith(META) and is_name(rest[len(META) :].removesuffix(".json"))
                    )
                    if ours and obj["LastModified"].timestamp() < cutoff:
                        old.append(obj["Key"])
        except (BotoCoreError, ClientError, OSError) as exc:
            raise StorageError(describe(exc, self.config)) from None
        await self._delete_keys(client, old)
        return sum(1 for k in old if is_name(k[len(self.prefix) :]))

    async def check(self, write: bool = False) -> None:
        """The bucket answers (and, with `write`, takes and gives up a small object)."""
        try:
            client = await self.client()
            try:
                await client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if _status(exc) != 403:
                    raise
                # A HEAD answer has no body, so no error code: a listing says why (bad
                # credentials, or no permission).
                await client.list_objects_v2(Bucket=self.bucket, MaxKeys=1)
            if write:
                key = f"{self.prefix}{META}pixgate-doctor-probe"
                await client.put_object(Bucket=self.bucket, Key=key, Body=b"ok")
                await client.delete_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError, OSError) as exc:
            raise StorageError(describe(exc, self.config)) from None

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()


async def _chunks(body: Any) -> AsyncIterator[bytes]:
    try:
        async for chunk in body.iter_chunks(CHUNK):
            yield chunk
    finally:
        body.close()


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _total(exc: ClientError) -> int:
    headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    _, _, total = str(headers.get("content-range", "")).partition("/")
    return int(total) if total.isdigit() else 0


def describe(exc: BaseException, cfg: StorageConfig) -> str:
    """One clear cause per failure, from the error's class and code only: never the raw text
    (it can quote a request, and a request can carry credentials)."""
    where = f"bucket '{cfg.bucket}'" + (f" at {cfg.endpoint_url}" if cfg.endpoint_url else "")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return (
            "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE, or a web identity (credentials never go in the YAML)"
        )
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError) or (
        isinstance(exc, OSError) and not isinstance(exc, TimeoutError)
    ):
        return f"S3 endpoint unreachable for {where}"
    if isinstance(exc, ReadTimeoutError | TimeoutError):
        return f"S3 timed out for {where}"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = _status(exc)
        headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        region = headers.get("x-amz-bucket-region")
        if (
            code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "301")
            or status == 301
            or (region and cfg.region and region != cfg.region)
        ):
            told = f" (the bucket is in {region})" if region else ""
            return f"wrong region '{cfg.region or 'us-east-1'}' for {where}{told}"
        if code in ("NoSuchBucket",) or (code == "404" and exc.operation_name == "HeadBucket"):
            return f"{where} does not exist"
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"):
            return f"S3 rejected the credentials for {where} ({code})"
        if code in ("AccessDenied", "403", "AllAccessDisabled") or status == 403:
            return f"access denied to {where}"
        if (
            code in ("SlowDown", "503", "ServiceUnavailable", "InternalError", "500")
            or status >= 500
        ):
            return f"S3 is failing for {where} (HTTP {status or code})"
        return f"S3 refused the request for {where} ({code or status})"
    return f"S3 error for {where} ({exc.__class__.__name__})"
