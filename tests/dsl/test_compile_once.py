"""Templates and JMESPath are compiled once, when the config is built, and never per request.

Build the shipped config, then make every Jinja2 / JMESPath compile entry point raise, and
render every step request of every shipped provider and run every compiled expression.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jinja2
import jmespath
import jmespath.parser
import pytest

from engine.config.loader import ConfigSnapshot, build_snapshot
from engine.dsl.expressions import Expr
from engine.dsl.spec import ProviderSpec, StepSpec
from engine.dsl.templates import compile_text
from engine.runtime.calls.executor import CallResult, Executor
from engine.runtime.calls.upstream import MalformedBody, Reply, build_request
from engine.runtime.job import InputImage
from engine.runtime.routing.failures import UpstreamFailure
from tests.dsl.shipped_steps import fan_out_items, plain_steps

REPO = Path(__file__).resolve().parents[2]

COMPILERS: list[tuple[Any, str]] = [
    (jinja2.Environment, "from_string"),
    (jinja2.Environment, "compile_expression"),
    (jinja2.Environment, "parse"),
    (jinja2.Environment, "_parse"),
    (jinja2.Environment, "compile"),
    (jmespath, "compile"),
    (jmespath, "search"),
    (jmespath.parser.Parser, "parse"),
]

PNG = InputImage(b"\x89PNG\r\n\x1a\n-png-", "image/png")
JPG = InputImage(b"\xff\xd8\xff-jpg-", "image/jpeg", public_url="https://gw.test/files/b.jpg")

BODIES: list[Any] = [
    None,
    {},
    [],
    "plain text",
    MalformedBody("<html>"),
    {"data": [{"url": "https://cdn.test/1.png", "b64_json": "AAAA", "revised_prompt": "p"}],
     "usage": {"total_tokens": 3}, "created": 1},
    {"task_id": "t1", "event_id": "e1", "id": "i1", "status": "succeeded",
     "task_status": "SUCCEED", "images": ["https://cdn.test/2.png"], "progress": 50,
     "output_images": ["https://cdn.test/3.png"], "output": {"results": [{"url": "u"}]}},
    {"error": {"message": "bad", "code": "content_policy_violation", "type": "x"},
     "errors": {"message": "m"}, "message": "m", "code": 1, "msg": "m", "detail": [{"msg": "d"}]},
    ["https://cdn.test/4.png"],
    [{"url": "https://cdn.test/5.png", "path": "/tmp/5.png"}],
    {"status": "FAILED", "task_status": "FAILED", "data": None, "images": None},
]  # fmt: skip
STATUSES = [200, 400, 401, 402, 403, 404, 422, 429, 500, 503]


@pytest.fixture(scope="module")
def snapshot() -> ConfigSnapshot:
    result = build_snapshot(REPO, env={})
    assert result.ok, [d.format() for d in result.diagnostics.errors]
    assert result.snapshot is not None
    return result.snapshot


@pytest.fixture
def compile_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every compile entry point raises, and is recorded in case something swallows that."""
    calls: list[str] = []

    def forbid(name: str) -> Callable[..., Any]:
        def boom(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            raise AssertionError(f"{name} called at request time")

        return boom

    for owner, attr in COMPILERS:
        monkeypatch.setattr(owner, attr, forbid(f"{getattr(owner, '__name__', owner)}.{attr}"))
    yield calls
    assert calls == [], f"compiled during a request: {calls}"


def test_the_guard_bites(compile_calls: list[str]) -> None:
    """Without this the test below could pass by not reaching the patched functions."""
    with pytest.raises(AssertionError):
        compile_text("{{ prompt }}")
    with pytest.raises(AssertionError):
        Expr("a.b")
    assert compile_calls
    compile_calls.clear()


def _context(
    provider: ProviderSpec, model: str, task: str, steps: tuple[StepSpec, ...]
) -> dict[str, Any]:
    step_values: dict[str, dict[str, Any]] = {}
    for step in steps:
        step_values[step.name] = {
            var: "https://poll.test/t/1?sig=a%2Fb" if "url" in var else f"{step.name}-{var}-1"
            for var, _ in step.extract
        }
    return {
        "task": task,
        "prompt": "a fox / in the snow? #1 é",
        "negative_prompt": "blurry",
        "model": model,
        "n": 2,
        "total_n": 3,
        "call_index": 1,
        "size": {"width": 1024, "height": 768, "text": "1024x768", "aspect": "4:3"},
        "quality": "hd",
        "style": "vivid",
        "seed": 42,
        "random_seed": 7,
        "response_format": "b64_json",
        "output_format": "png",
        "background": "transparent",
        "user": "u1",
        "images": [PNG, JPG],
        "image": PNG,
        "mask": PNG,
        "extra": {"steps": 4, "guidance": 3.5, "enhance": True},
        "params": provider.models[model].params,
        "key": "sk-test",
        "request_id": "req-1",
        "steps": step_values,
    }


def _expressions(provider: ProviderSpec) -> list[Expr]:
    out = [provider.error_message]
    for rule in provider.errors:
        out.append(rule.when)
        if rule.message is not None:
            out.append(rule.message)
    for task in provider.tasks.values():
        for step in plain_steps(task):
            out.extend(expr for _, expr in step.extract)
            for name in ("until", "fail_if", "error_message", "images", "revised_prompt",
                         "usage", "progress"):  # fmt: skip
                expr = getattr(step, name)
                if expr is not None:
                    out.append(expr)
    return out


def test_shipped_providers_render_and_extract_without_compiling(
    snapshot: ConfigSnapshot, compile_calls: list[str]
) -> None:
    rendered = 0
    for provider in snapshot.providers.values():
        base_url = (
            "https://gw.test" + provider.base_url if provider.on_gateway else provider.base_url
        )
        for task_name, task in provider.tasks.items():
            for model_name, model in provider.models.items():
                if task_name not in model.tasks:
                    continue
                ctx = _context(provider, model_name, task_name, tuple(plain_steps(task)))
                ctx.update(fan_out_items(task, 1))
                for step in plain_steps(task):
                    for key in ("sk-test", None):
                        out = build_request(step.request, ctx, base_url, provider.auth, key)
                        assert out.url.is_absolute(), (provider.id, step.name, out.url)
                        rendered += 1
        if provider.auth.value is not None:
            assert "sk-x" in str(provider.auth.value.render({"key": "sk-x"}))

        searched = 0
        for expr in _expressions(provider):
            for body in BODIES:
                expr.search(body)
                expr.truthy(body)
                for status in STATUSES:
                    expr.search({"status": status, "headers": {"retry-after": "1"}, "body": body})
                searched += 1
        assert searched

        executor = Executor(None, provider, base_url, "sk-test")  # type: ignore[arg-type]
        for task in provider.tasks.values():
            for step in plain_steps(task):
                for body in BODIES:
                    for status in STATUSES:
                        reply = Reply(status, {"retry-after": "2"}, body, base_url + "/x")
                        with contextlib.suppress(UpstreamFailure):
                            executor._check(step, reply)
                    executor._collect(step, Reply(200, {}, body, base_url + "/x"), CallResult())
    assert rendered >= 2 * len(snapshot.providers)


def test_a_fresh_build_compiles_again(snapshot: ConfigSnapshot) -> None:
    """The guard is about requests: building a snapshot (load, reload) may compile freely."""
    again = build_snapshot(REPO, env={})
    assert again.ok and again.snapshot is not None
    assert again.snapshot.providers.keys() == snapshot.providers.keys()
