"""Process settings from CLI flags and the environment (config lives in YAML, not here)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .runtime.images.fetch import FetchPolicy

DEFAULT_MAX_BODY = 20 * 1024 * 1024
DEFAULT_MAX_IN_FLIGHT = 10_000
DEFAULT_MAX_BUFFERED = 256 * 1024 * 1024


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    """A whole number >= 0 from the environment (0 is a value, not 'unset')."""
    value = (env.get(name) or "").strip()
    if not value:
        return default
    if not value.isdigit():
        raise ValueError(f"{name} must be a whole number >= 0, not {value!r}")
    return int(value)


def default_storage_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pixgate" / "files"


def _address(value: str | None) -> tuple[str, int] | None:
    """`host:port` (IPv6 as `[::1]:9100`), or None when unset."""
    if not value or not value.strip():
        return None
    host, sep, port = value.strip().rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"expected host:port, got {value!r}")
    return host.strip("[]"), int(port)


@dataclass(frozen=True, slots=True)
class Settings:
    config_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    api_keys: tuple[str, ...] = ()
    admin_key: str | None = None
    metrics_key: str | None = None  # when set, GET /metrics needs it as a Bearer token
    metrics_listen: tuple[str, int] | None = None  # serve /metrics only on this address
    allow_anonymous: bool = False
    public_url: str | None = None
    # Host headers whose value may name the handed-out /files URLs (PIXGATE_ALLOWED_HOSTS)
    allowed_hosts: tuple[str, ...] = ()
    storage_dir: Path = field(default_factory=lambda: default_storage_dir(os.environ))
    max_body: int = DEFAULT_MAX_BODY
    max_large_bodies: int = 4  # requests holding an answer over 1 MB at once (memory bound)
    # API requests served at once, and bytes of request bodies and fetched input images held
    # at once, by this process (0: no bound); beyond them a 503 (runtime/lifecycle/overload.py).
    # A request waits at most overload_wait seconds for its bytes.
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    max_buffered: int = DEFAULT_MAX_BUFFERED
    overload_wait: float = 5.0
    # Open connections to upstreams, in all and to one host (0: no cap). A request beyond
    # the cap waits for a connection, so the per-host cap bounds the requests one provider
    # can have open at once (PIXGATE_UPSTREAM_CONNECTIONS[_PER_HOST]).
    upstream_connections: int = 1024
    upstream_connections_per_host: int = 256
    # A request body that stalls this long, or after it arrives under body_min_rate bytes/s,
    # is cut off with a 408 (engine/api/bodywatch.py). 0 turns the check off.
    body_timeout: float = 30.0
    body_min_rate: float = 1024.0
    # Client image URLs: size cap, timeout; allow_loopback is for tests only.
    fetch_policy: FetchPolicy = field(default_factory=FetchPolicy)
    watch: bool = True  # hot reload on file changes
    watch_polling: bool = False  # poll instead of inotify (network file systems)
    # Multiplies every polling interval; tests set it small. Not for production.
    poll_scale: float = 1.0
    event_loop: str = "auto"  # auto (uvloop when installed) | uvloop | asyncio
    # On SIGTERM: how long in-flight requests (and polling jobs) may take to finish.
    shutdown_grace: float = 30.0
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    # Without Redis, usage and budget totals are kept in this file across restarts (None:
    # beside the storage directory, `<storage_dir>.usage.json`).
    usage_file: Path | None = None

    @property
    def usage_path(self) -> Path:
        if self.usage_file is not None:
            return self.usage_file
        return self.storage_dir.with_name(self.storage_dir.name + ".usage.json")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = dict(os.environ if env is None else env)
        values: dict[str, object] = {
            "config_dir": Path(env.get("PIXGATE_CONFIG") or "."),
            "host": env.get("PIXGATE_HOST") or "127.0.0.1",
            "port": int(env.get("PIXGATE_PORT") or 8080),
            "api_keys": _csv(env.get("PIXGATE_API_KEYS")),
            "admin_key": (env.get("PIXGATE_ADMIN_KEY") or "").strip() or None,
            "metrics_key": (env.get("PIXGATE_METRICS_KEY") or "").strip() or None,
            "metrics_listen": _address(env.get("PIXGATE_METRICS_LISTEN")),
            "public_url": (env.get("PIXGATE_PUBLIC_URL") or "").rstrip("/") or None,
            "allowed_hosts": tuple(h.lower() for h in _csv(env.get("PIXGATE_ALLOWED_HOSTS"))),
            "storage_dir": Path(env["PIXGATE_STORAGE_DIR"])
            if env.get("PIXGATE_STORAGE_DIR")
            else default_storage_dir(env),
            "max_body": int(env.get("PIXGATE_MAX_BODY_BYTES") or DEFAULT_MAX_BODY),
            "max_large_bodies": int(env.get("PIXGATE_MAX_LARGE_BODIES") or 4),
            "max_in_flight": _count(env, "PIXGATE_MAX_IN_FLIGHT", DEFAULT_MAX_IN_FLIGHT),
            "max_buffered": _count(env, "PIXGATE_MAX_BUFFERED_BYTES", DEFAULT_MAX_BUFFERED),
            "overload_wait": float(env.get("PIXGATE_OVERLOAD_WAIT") or 5.0),
            "upstream_connections": _count(env, "PIXGATE_UPSTREAM_CONNECTIONS", 1024),
            "upstream_connections_per_host": _count(
                env, "PIXGATE_UPSTREAM_CONNECTIONS_PER_HOST", 256
            ),
            "body_timeout": float(env.get("PIXGATE_BODY_TIMEOUT") or 30.0),
            "body_min_rate": float(env.get("PIXGATE_BODY_MIN_RATE") or 1024.0),
            "poll_scale": float(env.get("PIXGATE_POLL_INTERVAL_SCALE") or 1.0),
            "event_loop": (env.get("PIXGATE_EVENT_LOOP") or "auto").strip().lower(),
            "shutdown_grace": float(env.get("PIXGATE_SHUTDOWN_GRACE") or 30.0),
            "fetch_policy": FetchPolicy(
                max_bytes=int(env.get("PIXGATE_FETCH_MAX_BYTES") or DEFAULT_MAX_BODY),
                timeout=float(env.get("PIXGATE_FETCH_TIMEOUT") or 20.0),
                allow_loopback=(env.get("PIXGATE_FETCH_ALLOW_LOOPBACK") or "") in ("1", "true"),
            ),
            "watch_polling": (env.get("PIXGATE_WATCH_POLLING") or "") not in ("", "0", "false"),
            "usage_file": Path(env["PIXGATE_USAGE_FILE"])
            if env.get("PIXGATE_USAGE_FILE")
            else None,
            "env": env,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]
        settings.check_buffered()
        return settings

    def check_buffered(self) -> None:
        """The byte budget must fit one request's largest body or fetched image, else such
        a request could never be served."""
        largest = max(self.max_body, self.fetch_policy.max_bytes)
        if self.max_buffered and self.max_buffered < largest:
            raise ValueError(
                f"PIXGATE_MAX_BUFFERED_BYTES ({self.max_buffered}) must be 0 or at least "
                f"PIXGATE_MAX_BODY_BYTES and PIXGATE_FETCH_MAX_BYTES ({largest})"
            )

    def exposure_problem(self, has_clients: bool = False) -> str | None:
        """Why serving would be unsafe (open to the network without client keys), or None.
        `has_clients`: the config declares clients (clients.yaml), so keys are required."""
        if self.api_keys or has_clients or self.allow_anonymous or is_loopback(self.host):
            return None
        return (
            f"refusing to listen on {self.host} without client keys: set PIXGATE_API_KEYS "
            "(comma-separated) or declare clients in clients.yaml, or pass --allow-anonymous "
            "to serve an open gateway on purpose"
        )


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
