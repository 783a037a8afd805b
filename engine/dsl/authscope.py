"""Lint: a `url:` step whose URL may leave the provider's origin says what its key does there.

The runtime sends a key only to `base_url`'s origin and the origins the provider
(`auth.send_to`) or the step (`request.auth: [...]`) lists (engine/dsl/origins.py). A step
that requests a URL the upstream hands back (a polling URL, a presigned upload, a CDN) either
needs the key there, and must list that origin, or does not, and should say `auth: false`;
W406 asks for that decision instead of leaving it to chance; listing origins (`send_to`, or
the request's own list) or `auth: false` is the answer, and silences it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from yarl import URL

from .origins import may_receive_key
from .spec import AuthSpec, FanOutStep, RequestSpec, TaskSpec
from .templates import Const

Path = tuple[str | int, ...]
Report = Callable[[Path, str, str], None]


def _requests(tasks: Mapping[str, TaskSpec]) -> Iterator[tuple[Path, RequestSpec]]:
    """Every step's request with its path, fan-out sub-steps included."""
    for name, task in tasks.items():
        for i, step in enumerate(task.steps):
            path: Path = ("tasks", name, "steps", i)
            if isinstance(step, FanOutStep):
                for j, sub in enumerate(step.steps):
                    yield (*path, "steps", j, "request"), sub.request
            else:
                yield (*path, "request"), step.request


def check_auth_scope(
    base_url: str, auth: AuthSpec, tasks: Mapping[str, TaskSpec], report: Report
) -> None:
    if not (auth.header or auth.query):
        return  # nothing secret to send
    for path, request in _requests(tasks):
        if request.url is None or not request.auth:
            continue
        path = (*path, "url")
        widened = (*auth.send_to, *request.auth_to)
        if isinstance(request.url, Const):
            target = URL(base_url.rstrip("/") + "/").join(URL(str(request.url.value)))
            if not target.is_absolute() or may_receive_key(target, base_url, widened):
                continue
            report(
                path,
                "W406",
                f"{target.origin()} is not base_url's origin: the request goes without "
                "the key. Say `auth: false`, or list the origin in auth.send_to",
            )
        elif not widened:  # listed origins (or none at all) are the author's decision
            report(
                path,
                "W406",
                "this URL comes from a template: the key goes with it only when it names "
                "base_url's origin. Say `auth: false` if it never needs the key, or list "
                "the origins that do in auth.send_to (or this request's `auth:`)",
            )
