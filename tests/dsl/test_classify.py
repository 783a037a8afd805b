"""Classifying upstream answers (calls/executor.py, routing/failures.py): provider error rules,
HTTP status defaults, Retry-After, error messages, and reading result image references
(calls/imagerefs.py)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from engine.dsl.provider import DEFAULT_ERROR_MESSAGE, compile_provider
from engine.dsl.spec import ProviderSpec, StepSpec
from engine.runtime.calls.executor import CallResult, Executor
from engine.runtime.calls.imagerefs import ImageRef, decode_b64, image_ref
from engine.runtime.calls.upstream import MalformedBody, Reply
from engine.runtime.routing import retryafter
from engine.runtime.routing.failures import (
    CLIENT_STATUS,
    FINAL_KINDS,
    UpstreamFailure,
    kind_for_status,
)

RULES = [
    {"when": "status == `200` && body.code != null && body.code != `0`", "kind": "quota",
     "message": "body.msg"},
    {"when": "status == `400` && contains_ci(to_string(body.error.message), 'safety')",
     "kind": "content_policy"},
    {"when": "headers.\"x-error-type\" == 'overloaded'", "kind": "rate_limited"},
    {"when": "status == `400`", "kind": "bad_request", "message": "'rule two'"},
    {"when": "status >= `400`", "kind": "upstream"},
]  # fmt: skip


def make_provider(
    errors: list[dict[str, Any]] | None = None,
    *,
    step_error_message: str | None = None,
    error_message: str | None = None,
) -> ProviderSpec:
    step: dict[str, Any] = {"name": "gen", "request": {"path": "/x"}, "images": "data[].url"}
    if step_error_message:
        step["error_message"] = step_error_message
    doc: dict[str, Any] = {
        "id": "t",
        "base_url": "https://api.test",
        "models": {"m": None},
        "tasks": {"generate": {"steps": [step]}},
        "errors": errors or [],
    }
    if error_message:
        doc["error_message"] = error_message
    reports: list[tuple[object, ...]] = []
    spec = compile_provider(doc, "t.yaml", lambda *a: reports.append(a))
    assert spec is not None, reports
    return spec


def executor(provider: ProviderSpec) -> Executor:
    return Executor(client=None, provider=provider, base_url=provider.base_url, key=None)  # type: ignore[arg-type]


def step_of(provider: ProviderSpec) -> StepSpec:
    return provider.tasks["generate"].steps[0]


def check(provider: ProviderSpec, status: int, body: Any = None, **headers: str) -> None:
    reply = Reply(status, {k.replace("_", "-"): v for k, v in headers.items()}, body,
                  "https://api.test/x")  # fmt: skip
    executor(provider)._check(step_of(provider), reply)


def failure(
    provider: ProviderSpec, status: int, body: Any = None, **headers: str
) -> UpstreamFailure:
    with pytest.raises(UpstreamFailure) as info:
        check(provider, status, body, **headers)
    return info.value


# --- default kinds by HTTP status ----------------------------------------------------------


@pytest.mark.parametrize("status", [100, 200, 201, 202, 204, 299])
def test_below_300_is_not_a_failure(status: int) -> None:
    assert kind_for_status(status) is None


@pytest.mark.parametrize("status", [300, 301, 302, 304, 399])
def test_a_3xx_left_unfollowed_is_an_upstream_failure(status: int) -> None:
    """Redirects are followed before a reply is classified: a 3xx here is not the answer."""
    assert kind_for_status(status) == "upstream"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "bad_request"),
        (413, "bad_request"),
        (422, "bad_request"),
        (401, "bad_key"),
        (403, "bad_key"),
        (402, "quota"),
        (408, "timeout"),
        (429, "rate_limited"),
        (500, "upstream"),
        (502, "upstream"),
        (503, "upstream"),
        (504, "upstream"),
        (418, "upstream"),
        (599, "upstream"),
    ],
)
def test_kind_for_status(status: int, kind: str) -> None:
    assert kind_for_status(status) == kind


def test_every_kind_maps_to_a_client_status() -> None:
    for status in range(400, 600):
        kind = kind_for_status(status)
        assert kind in CLIENT_STATUS
    assert {"bad_request", "content_policy"} == FINAL_KINDS


def test_status_default_applies_without_rules() -> None:
    plain = make_provider()
    assert failure(plain, 429, {"error": {"message": "slow down"}}).kind == "rate_limited"
    assert failure(plain, 401, {"error": {"message": "bad key"}}).kind == "bad_key"
    assert failure(plain, 500, None).kind == "upstream"
    check(plain, 200, {"data": []})  # no failure


# --- provider rules ------------------------------------------------------------------------


def test_rule_classifies_a_200_with_an_error_code_in_the_body() -> None:
    provider = make_provider(RULES)
    err = failure(provider, 200, {"code": 30001, "msg": "account balance is insufficient"})
    assert (err.kind, err.status) == ("quota", 200)
    assert err.message == "account balance is insufficient"  # no HTTP prefix below 400
    check(provider, 200, {"code": 0, "data": [{"url": "https://x"}]})
    check(provider, 200, {"data": [{"url": "https://x"}]})


def test_rules_see_status_body_and_lowercased_headers() -> None:
    provider = make_provider(RULES)
    err = failure(provider, 503, {"error": "busy"}, x_error_type="overloaded")
    assert err.kind == "rate_limited"
    assert err.message == "HTTP 503: busy"


def test_rules_read_aiohttp_headers_by_lower_case_name() -> None:
    """An answer keeps aiohttp's headers (any case): a rule names them lower-cased, and
    Retry-After and x-error-message are read whatever their case."""
    headers = CIMultiDictProxy(
        CIMultiDict({"X-Error-Type": "overloaded", "Retry-After": "7", "X-Error-Message": "m"})
    )
    reply = Reply(503, headers, None, "https://api.test/x")
    provider = make_provider(RULES)
    with pytest.raises(UpstreamFailure) as info:
        executor(provider)._check(step_of(provider), reply)
    assert (info.value.kind, info.value.retry_after) == ("rate_limited", 7.0)
    with pytest.raises(UpstreamFailure) as info:
        executor(make_provider())._check(step_of(provider), reply)
    assert (info.value.message, info.value.retry_after) == ("HTTP 503: m", 7.0)


@pytest.mark.parametrize(
    ("rule", "reads"),
    [
        ({"when": "status == `400`", "kind": "quota", "message": "body.error"}, False),
        ({"when": "body.headers == 'x'", "kind": "quota"}, True),  # a field of that name
        ({"when": "headers.\"x-a\" == 'b'", "kind": "quota"}, True),
        ({"when": "status == `400`", "kind": "quota", "message": "headers.\"x-m\""}, True),
        ({"when": "contains(keys(@), 'x')", "kind": "quota"}, True),  # @ reaches every field
        ({"when": "length(*) > `2`", "kind": "quota"}, True),
    ],
)
def test_headers_are_copied_only_for_rules_that_may_read_them(
    rule: dict[str, Any], reads: bool
) -> None:
    provider = make_provider([rule])
    assert provider.errors_read_headers is reads
    reply = Reply(200, CIMultiDictProxy(CIMultiDict({"X-A": "b"})), None, "u")
    envelope = reply.envelope(provider.errors_read_headers)
    assert envelope["headers"] == ({"x-a": "b"} if reads else {})


def test_first_matching_rule_wins() -> None:
    provider = make_provider(RULES)
    err = failure(provider, 400, {"error": {"message": "Rejected by Safety system"}})
    assert err.kind == "content_policy"
    err = failure(provider, 400, {"error": {"message": "bad size"}})
    assert (err.kind, err.message) == ("bad_request", "HTTP 400: rule two")


def test_rules_override_the_status_default() -> None:
    provider = make_provider([{"when": "status == `404`", "kind": "upstream"},
                              {"when": "status == `403`", "kind": "quota"}])  # fmt: skip
    assert failure(provider, 404).kind == "upstream"
    assert failure(provider, 403).kind == "quota"
    assert failure(provider, 401).kind == "bad_key"  # no rule: status default


def test_catch_all_rule_after_specific_ones() -> None:
    provider = make_provider(RULES)
    assert failure(provider, 401, {"message": "nope"}).kind == "upstream"


def test_rule_that_errors_at_runtime_does_not_match() -> None:
    # contains_ci on a number is a JMESPath type error at run time: "no match", not a crash.
    provider = make_provider([{"when": "contains_ci(body.code, 'x')", "kind": "quota"}])
    assert failure(provider, 500, {"code": 5}).kind == "upstream"
    check(provider, 200, {"code": 5})


def test_malformed_json_on_success_is_an_upstream_failure() -> None:
    err = failure(make_provider(), 200, MalformedBody("<html>oops</html>"))
    assert err.kind == "upstream"
    assert err.message.startswith("malformed answer from upstream: '<html>oops</html>'")


def test_sse_error_event_is_an_upstream_failure() -> None:
    provider = make_provider()
    reply = Reply(200, {}, {"error": {"message": "GPU quota exceeded"}}, "u", error_event=True)
    with pytest.raises(UpstreamFailure) as info:
        executor(provider)._check(step_of(provider), reply)
    assert (info.value.kind, info.value.message) == ("upstream", "GPU quota exceeded")


# --- Retry-After -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # ms is more precise: wins
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
        ({"retry-after": "-3"}, None),  # not delta-seconds: the pool's own backoff applies
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # a date in the past
        ({"retry-after": ""}, None),
        ({}, None),
    ],
)
def test_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    assert retryafter.from_headers(headers) == seconds


def test_retry_after_reaches_the_failure() -> None:
    assert failure(make_provider(), 429, None, retry_after="12").retry_after == 12.0
    err = failure(make_provider(RULES), 503, None, x_error_type="overloaded", retry_after_ms="400")
    assert (err.kind, err.retry_after) == ("rate_limited", 0.4)


# --- error messages ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error": {"message": "Invalid size", "code": "x"}}, "Invalid size"),
        ({"error_description": "token expired"}, "token expired"),
        ({"message": "Model not found"}, "Model not found"),
        ({"errors": {"message": "task failed"}}, "task failed"),
        ({"errors": [{"message": "first"}, {"message": "second"}]}, "first"),
        ({"detail": [{"loc": ["body", "n"], "msg": "field required"}]}, "field required"),
        ({"detail": "Not authenticated"}, "Not authenticated"),
        ({"title": "Unauthorized", "status": 401}, "Unauthorized"),
        ({"error": "quota exceeded"}, "quota exceeded"),
        ({"failReason": "nsfw"}, "nsfw"),
        ({"description": "Bad Request"}, "Bad Request"),
        ({"error": {"message": "", "type": "x"}, "message": "outer"}, "outer"),
        ({"code": 42}, "HTTP 400"),
        ({"error": {"code": "bad"}}, "{'code': 'bad'}"),
        ([{"message": "x"}], "HTTP 400"),
        ("plain text error", "plain text error"),
        (MalformedBody("<h1>Bad Gateway</h1>"), "<h1>Bad Gateway</h1>"),
        (None, "HTTP 400"),
    ],
)
def test_default_error_message(body: Any, message: str) -> None:
    assert failure(make_provider(), 400, body).message == f"HTTP 400: {message}"


def test_default_error_message_expression_is_shared() -> None:
    assert make_provider().error_message.source == DEFAULT_ERROR_MESSAGE


def test_provider_error_message_overrides_the_default() -> None:
    provider = make_provider(error_message="data.reason || 'fallback'")
    assert failure(provider, 500, {"data": {"reason": "r"}}).message == "HTTP 500: r"
    assert failure(provider, 500, {"message": "m"}).message == "HTTP 500: fallback"


def test_step_error_message_comes_first() -> None:
    provider = make_provider(step_error_message="output.error")
    err = failure(provider, 500, {"output": {"error": "step says"}, "message": "generic"})
    assert err.message == "HTTP 500: step says"
    assert failure(provider, 500, {"message": "generic"}).message == "HTTP 500: generic"


def test_rule_message_comes_before_everything() -> None:
    provider = make_provider([{"when": "status == `500`", "kind": "upstream",
                               "message": "headers.\"x-reason\""}],
                             step_error_message="output.error")  # fmt: skip
    err = failure(provider, 500, {"output": {"error": "step says"}}, x_reason="from header")
    assert err.message == "HTTP 500: from header"


def test_error_message_header_fallback() -> None:
    err = failure(make_provider(), 502, None, x_error_message="upstream down")
    assert err.message == "HTTP 502: upstream down"


def test_long_plain_text_is_truncated() -> None:
    assert len(failure(make_provider(), 500, "x" * 5000).message) == len("HTTP 500: ") + 300


# --- image references --------------------------------------------------------------------

B64_PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(64))).decode()
B64_JPEG = base64.b64encode(b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(range(60))).decode()
B64_WRAPPED = B64_PNG[:40] + "\n" + B64_PNG[40:]
REQ = "https://api.test/v1/gradio_api/call/infer/abc"


@pytest.mark.parametrize(
    ("item", "kind", "ref"),
    [
        ("https://cdn.test/a.png", "auto", ImageRef("url", "https://cdn.test/a.png")),
        ("http://cdn.test/a.png?x=1", "auto", ImageRef("url", "http://cdn.test/a.png?x=1")),
        ("data:image/webp;base64,UklGRg==", "auto", ImageRef("b64", "UklGRg==", "image/webp")),
        ("data:image/png,AAAA", "auto", ImageRef("b64", "AAAA", "image/png")),
        ("data:;base64,AAAA", "auto", ImageRef("b64", "AAAA", None)),
        (B64_PNG, "auto", ImageRef("b64", B64_PNG)),
        (B64_JPEG, "auto", ImageRef("b64", B64_JPEG)),  # starts with '/', still base64
        (B64_WRAPPED, "auto", ImageRef("b64", B64_WRAPPED)),  # MIME line breaks
        ("/file=/tmp/gradio/x.webp", "auto", ImageRef("url", "https://api.test/file=/tmp/gradio/x.webp")),
        ("files/x.png", "auto", ImageRef("url", "https://api.test/v1/gradio_api/call/infer/files/x.png")),
        ("AAAA", "auto", ImageRef("url", "https://api.test/v1/gradio_api/call/infer/AAAA")),
        ("AAAA", "base64", ImageRef("b64", "AAAA")),
        ("https://cdn.test/a.png", "base64", ImageRef("b64", "https://cdn.test/a.png")),
        (B64_PNG, "url", ImageRef("url", "https://api.test/v1/gradio_api/call/infer/" + B64_PNG)),
        ({"url": "https://cdn.test/d.png"}, "auto", ImageRef("url", "https://cdn.test/d.png")),
        ({"url": "/file=x.png", "path": "/tmp/x.png"}, "auto",
         ImageRef("url", "https://api.test/file=x.png")),
        ({"path": "/tmp/x.png", "url": None}, "auto", ImageRef("url", "https://api.test/tmp/x.png")),
        ({"b64_json": B64_PNG}, "auto", ImageRef("b64", B64_PNG)),
        ({"url": "", "b64_json": B64_PNG}, "auto", ImageRef("b64", B64_PNG)),
    ],
)  # fmt: skip
def testimage_ref(item: Any, kind: str, ref: ImageRef) -> None:
    assert image_ref(item, kind, REQ) == ref


@pytest.mark.parametrize("item", [None, "", 5, [], {}, {"other": "x"}, {"url": None}])
def test_image_ref_ignores_non_images(item: Any) -> None:
    assert image_ref(item, "auto", REQ) is None


def test_collect_reads_images_revised_prompt_and_usage() -> None:
    doc_step = {"name": "gen", "request": {"path": "/x"}, "images": "data[].[url, b64_json][]",
                "revised_prompt": "data[0].revised_prompt", "usage": "usage"}  # fmt: skip
    spec = compile_provider(
        {"id": "t", "base_url": "https://api.test", "models": {"m": None},
         "tasks": {"generate": {"steps": [doc_step]}}},
        "t.yaml", lambda *a: pytest.fail(str(a)),
    )  # fmt: skip
    assert spec is not None
    body = {
        "data": [
            {"url": "https://cdn.test/1.png", "revised_prompt": "a better fox"},
            {"b64_json": B64_PNG},
            {"url": "rel/3.png"},
        ],
        "usage": {"total_tokens": 10},
    }
    result = CallResult()
    executor(spec)._collect(step_of(spec), Reply(200, {}, body, "https://api.test/x/y"), result)
    assert result.images == [
        ImageRef("url", "https://cdn.test/1.png"),
        ImageRef("b64", B64_PNG),
        ImageRef("url", "https://api.test/x/rel/3.png"),
    ]
    assert result.revised_prompt == "a better fox"
    assert result.usage == {"total_tokens": 10}


def test_collect_raw_bytes_reply() -> None:
    provider = make_provider()
    result = CallResult()
    reply = Reply(200, {}, None, "u", raw=b"\x89PNG...", mime="image/png")
    executor(provider)._collect(step_of(provider), reply, result)
    assert result.images == [ImageRef("bytes", b"\x89PNG...", "image/png")]


def test_decode_b64() -> None:
    assert decode_b64(B64_PNG).startswith(b"\x89PNG\r\n\x1a\n")
    assert decode_b64(B64_JPEG).startswith(b"\xff\xd8\xff")
    with pytest.raises(UpstreamFailure) as info:
        decode_b64("abc")
    assert info.value.kind == "upstream"
