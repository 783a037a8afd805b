"""The state interface: what the runtime asks of shared state, and what it gets back.

Two implementations: `memory` (one process, the zero-set-up default) and `redis` (a fleet).
Nothing outside engine/state/ knows which one is live.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..dsl.spec import ProviderPolicy, ProviderSpec

# A settle with this kind gives back what a grant holds and records no verdict (the attempt
# was cancelled, or only used the key, like the prompt optimizer).
RELEASED = "released"


@dataclass(slots=True)
class Grant:
    """Permission for one upstream attempt: a key (None when the provider needs none or the
    client relays its own) leased until settled, and whether this is the breaker's probe."""

    provider: str
    key: str | None
    token: str
    probe: bool = False
    leased: bool = False
    via: str = "memory"  # which backend settles it (redis grants fall back to memory)
    handle: object = None  # the backend's own (the memory breaker's permit)


class Denied(Exception):
    """No attempt now. `why`: circuit_open | no_key | busy; `retry_after` in seconds if known."""

    def __init__(self, provider: str, why: str, retry_after: float | None = None) -> None:
        messages = {
            "circuit_open": "circuit open",
            "no_key": f"every key of {provider} is cooling down or disabled",
            "busy": f"every healthy key of {provider} is at its concurrency limit",
        }
        super().__init__(messages.get(why, why))
        self.provider = provider
        self.why = why
        self.retry_after = retry_after


@dataclass(slots=True)
class StateStats:
    """For metrics and /health: how the backend is doing."""

    backend: str = "memory"
    degraded: bool = False  # redis configured but unreachable: serving on local state
    errors: int = 0  # calls that failed or timed out
    fallbacks: int = 0  # operations served by local state instead
    outages: int = 0  # times it went from reachable to unreachable
    degraded_since: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Counters(Protocol):
    """Counters for rate limits, usage and budgets (engine/usage)."""

    async def hit(self, name: str, window: float, amount: int = 1) -> int:
        """Add to a fixed-window counter; returns the count in the current window."""
        ...

    async def add_usage(
        self, name: str, amounts: dict[str, float], ttl: float | None = None
    ) -> dict[str, float]:
        """Add to named running totals (all or none), which expire `ttl` seconds after the
        last addition (None: never); returns the new totals of the fields added to."""
        ...

    async def get_usage(self, name: str) -> dict[str, float]:
        """The running totals under `name` (empty when none or expired)."""
        ...

    async def reserve(
        self, names: Sequence[str], field: str, amount: float, limits: Sequence[float], ttl: float
    ) -> tuple[bool, list[float]]:
        """Atomically add `amount` to `field` of every named total, but only if none would
        then be over its limit. Returns whether it was added, and the totals before."""
        ...


class Jobs(Protocol):
    """Hook for job records (async jobs shared by the fleet)."""

    async def put_job(self, job_id: str, record: dict[str, Any], ttl: float) -> None: ...

    async def get_job(self, job_id: str) -> dict[str, Any] | None: ...

    async def claim_job(
        self, job_id: str, record: dict[str, Any], ttl: float
    ) -> dict[str, Any] | None:
        """Store `record` only if no record has this id: None when stored, else the one there
        (one winner among concurrent duplicates, e.g. of an Idempotency-Key). With Redis
        unreachable, this replica's memory answers (an Idempotency-Key holds per replica)."""
        ...

    async def claim_first(self, job_id: str, record: dict[str, Any], ttl: float) -> bool | None:
        """Store `record` only if no record has this id: True when stored, False when one was
        there, None when the shared state cannot tell now (Redis unreachable: ask again
        later). Never answered from one replica's memory when the state is shared: two
        replicas would both be first (a job's settlement, docs/jobs.md)."""
        ...

    async def index_job(self, owner: str, job_id: str, created: float, ttl: float) -> None:
        """Add a job to its owner's list (which expires `ttl` after its last addition)."""
        ...

    async def job_ids(
        self, owner: str, before: float | None, limit: int
    ) -> list[tuple[str, float]]:
        """The owner's (job id, created) newest first, created strictly before `before`."""
        ...


class JobLeases(Protocol):
    """Who runs which job: a lease per running job, so another replica takes over a job whose
    replica died (docs/jobs.md, Durability)."""

    # Job records outlive this process (Redis): a job may be handed to another replica.
    durable_jobs: bool

    async def lease_job(self, job_id: str, holder: str, ttl: float) -> bool:
        """Take the job's lease if free, or renew it if `holder` has it; False: another has it."""
        ...

    async def release_job(self, job_id: str, holder: str) -> None:
        """Give the lease back (only if `holder` still has it)."""
        ...

    async def mark_active(self, job_id: str, active: bool) -> None:
        """Add a job to (or remove it from) the set of queued and running jobs."""
        ...

    async def active_jobs(self) -> list[str]:
        """Queued and running jobs of every replica: what a sweeper checks for lost leases."""
        ...

    async def flag_cancel(self, job_id: str, ttl: float) -> None:
        """Ask whichever replica runs the job to cancel it."""
        ...

    async def cancel_flags(self, job_ids: list[str]) -> set[str]:
        """Which of these jobs have been asked to cancel."""
        ...


class JobStore(Jobs, JobLeases, Protocol):
    """What the job manager needs of the state backend."""


class StateBackend(Counters, JobStore, Protocol):
    stats: StateStats

    async def start(self) -> None: ...

    async def close(self) -> None:
        """Give back every lease this process holds."""
        ...

    async def acquire(
        self,
        provider: ProviderSpec,
        policy: ProviderPolicy,
        *,
        pool: bool = True,
        exclude: Collection[str] = (),
    ) -> Grant:
        """Pass the provider's breaker and lease one healthy, free key of its pool (none when
        `pool` is false: a relayed client key). Raises Denied."""
        ...

    async def settle(
        self,
        grant: Grant,
        policy: ProviderPolicy,
        kind: str | None,
        retry_after: float | None = None,
        *,
        wait: bool = True,
    ) -> None:
        """End a grant: kind None is success, RELEASED no verdict, else the failure kind."""
        ...

    # The same two without a coroutine, for the hot path: answered when this backend needs
    # no wait for them (in-process state always; Redis from its fresh cache), else declined
    # so the caller awaits the call above.

    def acquire_nowait(
        self,
        provider: ProviderSpec,
        policy: ProviderPolicy,
        *,
        pool: bool = True,
        exclude: Collection[str] = (),
    ) -> Grant | None:
        """`acquire`'s grant (or its Denied) when no wait is needed; None: await `acquire`."""
        ...

    def settle_nowait(
        self, grant: Grant, policy: ProviderPolicy, kind: str | None, retry_after: float | None
    ) -> bool:
        """`settle(..., wait=False)` done when it needs no wait (True); False: nothing was
        done, await `settle`."""
        ...

    async def report(self, providers: dict[str, ProviderSpec]) -> dict[str, dict[str, Any]]:
        """Per provider: circuit state and per-key rows (keys masked), for /admin/keys."""
        ...

    async def reprobe(self, provider: str, key: str) -> None:
        """An operator's "try this key again now": its cooldown or disabled time ends (its
        last error is kept), so the next request may use it."""
        ...

    def retain(self, providers: dict[str, ProviderSpec]) -> None:
        """After a reload: forget local state of keys no longer configured."""
        ...

    async def ready(self) -> bool:
        """Reachable (memory always is)."""
        ...
