"""clients.yaml -> Clients, with positioned diagnostics (duplicate names and keys, models
that nothing routes)."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Collection
from typing import Any

from ..dsl.spec import ProviderSpec, RoutesSpec
from .spec import DIGEST_PREFIX, Budget, Clients, ClientSpec, Limits, digest

Report = Callable[[tuple[str | int, ...], str, str], None]


def compile_clients(
    data: dict[str, Any],
    raw: dict[str, Any],
    model_names: Collection[str],
    report: Report,
    unpriced: Collection[str] = (),
) -> Clients:
    """`data` is the interpolated document, `raw` the one as written (to tell a digest
    written in the file from a clear key an ${ENV} reference brought in). `unpriced`: the
    names among `model_names` that may be served by a target without a price."""
    entries: list[tuple[bytes, ClientSpec]] = []
    names: dict[str, int] = {}
    owners: dict[str, str] = {}
    for i, item in enumerate(data.get("clients") or []):
        name = item["name"]
        if name in names:
            report(("clients", i, "name"), "E501", f"client '{name}' is also entry {names[name]}")
            continue
        names[name] = i
        models = tuple(item["models"]) if "models" in item else None
        for j, pattern in enumerate(models or ()):
            if not any(fnmatch.fnmatchcase(m, pattern) for m in model_names):
                report(
                    ("clients", i, "models", j),
                    "W502",
                    f"'{pattern}' matches no route, alias or provider/model name",
                )
        budget = Budget(**item.get("budget", {}))
        if budget:
            _check_budget(budget, models, unpriced, ("clients", i, "budget"), report)
        client = ClientSpec.build(
            name,
            models,
            Limits(**item.get("limits", {})),
            tuple(item.get("tags", ())),
            budget,
        )
        for j, value in enumerate(item["keys"]):
            written = raw["clients"][i]["keys"][j]
            key_digest = _digest_of(value, written, (("clients", i, "keys", j)), report)
            if key_digest is None:
                continue
            if key_digest in owners:
                report(
                    ("clients", i, "keys", j),
                    "E503",
                    f"this key is also a key of client '{owners[key_digest]}'",
                )
                continue
            owners[key_digest] = name
            entries.append((bytes.fromhex(key_digest), client))
    return Clients(tuple(entries))


def _check_budget(
    budget: Budget,
    models: tuple[str, ...] | None,
    unpriced: Collection[str],
    path: tuple[str | int, ...],
    report: Report,
) -> None:
    day, month = budget.usd_per_day, budget.usd_per_month
    if day is not None and month is not None and day > month:
        report(path, "W506", f"usd_per_day {day:g} is more than usd_per_month {month:g}")
    free = sorted(
        n for n in unpriced if models is None or any(fnmatch.fnmatchcase(n, m) for m in models)
    )
    if free:
        shown = ", ".join(free[:3]) + (f" and {len(free) - 3} more" if len(free) > 3 else "")
        report(
            path,
            "W505",
            f"this client may use models without a price ({shown}): they count as free "
            "against its budget",
        )


def _digest_of(value: str, written: str, path: tuple[str | int, ...], report: Report) -> str | None:
    if value.startswith(DIGEST_PREFIX):
        hexpart = value[len(DIGEST_PREFIX) :]
        if len(hexpart) == 64 and all(c in "0123456789abcdef" for c in hexpart):
            return hexpart
        report(path, "E504", "a digest is 'sha256:' and 64 lowercase hex digits")
        return None
    if written.startswith("${"):
        if not value.strip():
            report(path, "E504", f"{written} is empty")
            return None
        return digest(value.strip())  # a clear key from a secret: digested, never kept
    report(path, "E504", "write a digest ('sha256:...'), never a clear key")
    return None


def unpriced_names(routes: RoutesSpec, providers: dict[str, ProviderSpec]) -> set[str]:
    """Route and alias names with a target that has no price (budgets count it as free)."""

    def priced(provider: str, model: str) -> bool:
        p = providers.get(provider)
        m = p.models.get(model) if p is not None else None
        return m is not None and m.pricing is not None

    def usable(provider: str) -> bool:  # as W407: a provider without keys serves nothing
        p = providers.get(provider)
        return p is not None and (p.available or p.on_gateway)

    names = {
        name
        for name, r in routes.routes.items()
        if r.pricing is None
        and any(
            t.pricing is None and usable(t.provider) and not priced(t.provider, t.model)
            for t in r.targets
        )
    }
    return names | {alias for alias, route in routes.aliases.items() if route in names}
