"""The `storage:` section of routes.yaml and the PIXGATE_STORAGE shortcut over it, compiled once."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..dsl.durations import parse_duration

Path = tuple[str | int, ...]
Report = Callable[[Path, str, str], None]
DAY = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class StorageConfig:
    backend: str = "local"  # local | s3
    bucket: str = ""
    prefix: str = ""  # "" or ends with "/"
    endpoint_url: str | None = None  # R2, MinIO, SeaweedFS...; None: AWS
    region: str | None = None
    addressing_style: str = "auto"  # auto | path | virtual
    url_mode: str = "proxy"  # proxy (/files) | public (public_base_url) | presigned
    public_base_url: str | None = None
    presign_expiry: float = 3600.0
    ttl: float | None = DAY  # None: kept until a lifecycle rule or a person deletes them
    sweep: bool = True  # the gateway deletes objects past the TTL itself
    max_object_bytes: int = 50 * 1024 * 1024
    store_prompts: bool = False
    retry_every: float = 30.0  # background re-upload of objects kept locally after a failure
    upload_attempts: int = 3

    @property
    def location(self) -> str:
        """Where objects go, for logs and admin output (never credentials)."""
        if self.backend == "local":
            return "local disk"
        return f"s3://{self.bucket}/{self.prefix}" + (
            f" at {self.endpoint_url}" if self.endpoint_url else ""
        )


def env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """PIXGATE_STORAGE=s3://bucket/prefix (or `local`) and PIXGATE_S3_ENDPOINT as section
    fields. The environment wins over the file, as it does for `state:`: an operator can point
    a replica elsewhere (a staging bucket, a local MinIO) without editing the config in git."""
    fields: dict[str, Any] = {}
    raw = (env.get("PIXGATE_STORAGE") or "").strip()
    if raw == "local":
        fields["backend"] = "local"
    elif raw:
        parts = urlsplit(raw)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"PIXGATE_STORAGE must be 'local' or s3://bucket/prefix, not {raw!r}")
        fields.update(backend="s3", bucket=parts.netloc, prefix=parts.path)
    endpoint = (env.get("PIXGATE_S3_ENDPOINT") or "").strip()
    if endpoint:
        fields["endpoint_url"] = endpoint
    return fields


def compile_storage(
    raw: dict[str, Any] | None, env: Mapping[str, str], report: Report
) -> StorageConfig:
    """The section as validated by the schema, with the environment's overrides on top;
    cross-field rules are reported here."""
    try:
        overrides = env_overrides(env)
    except ValueError as exc:
        report((), "E601", str(exc))
        overrides = {}
    if raw is None and not overrides.get("backend"):
        return StorageConfig()
    raw = {**(raw or {}), **overrides}
    path: Path = ("storage",)

    def duration(name: str, default: float | None) -> float | None:
        value = raw.get(name)
        if value is None:
            return default
        if value in ("none", "never", 0, "0"):
            return None
        try:
            return parse_duration(value)
        except ValueError as exc:
            report((*path, name), "E231", str(exc))
            return default

    backend = raw.get("backend", "local")
    url_mode = raw.get("url_mode", "proxy")
    public_base = (raw.get("public_base_url") or "").rstrip("/") or None
    if url_mode == "public" and public_base is None:
        report((*path, "url_mode"), "E601", "url_mode 'public' needs public_base_url")
    if url_mode == "presigned" and backend != "s3":
        report((*path, "url_mode"), "E601", "url_mode 'presigned' needs backend 's3'")
    if backend == "s3" and not raw.get("bucket"):
        report((*path, "backend"), "E601", "backend 's3' needs a bucket")
    expiry = duration("presign_expiry", 3600.0) or 3600.0
    if expiry > 7 * DAY:
        report((*path, "presign_expiry"), "E601", "presigned URLs live at most 7 days (SigV4)")
    endpoint = raw.get("endpoint_url") or None
    return StorageConfig(
        backend=backend,
        bucket=raw.get("bucket", ""),
        prefix=_prefix(raw.get("prefix", "")),
        endpoint_url=endpoint,
        region=raw.get("region")
        or (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "").strip()
        or None,
        addressing_style=raw.get("addressing_style", "path" if endpoint else "auto"),
        url_mode=url_mode,
        public_base_url=public_base,
        presign_expiry=expiry,
        ttl=duration("ttl", DAY),
        sweep=bool(raw.get("sweep", True)),
        max_object_bytes=int(raw.get("max_object_bytes", 50 * 1024 * 1024)),
        store_prompts=bool(raw.get("store_prompts", False)),
        retry_every=duration("retry_every", 30.0) or 30.0,
        upload_attempts=int(raw.get("upload_attempts", 3)),
    )


def _prefix(text: str) -> str:
    text = text.strip("/")
    return f"{text}/" if text else ""
