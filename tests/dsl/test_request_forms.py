"""Rendering a step's request with `build_request` (runtime/calls/upstream.py): every body form,
query, auth, and URL resolution. Pure: nothing is sent."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest

from engine.dsl.provider import compile_provider
from engine.dsl.spec import ProviderSpec, RequestSpec
from engine.runtime.calls.upstream import Outgoing, build_request
from engine.runtime.job import InputImage

PNG = InputImage(b"\x89PNG\r\n\x1a\n-png-", "image/png")
JPG = InputImage(b"\xff\xd8\xff-jpg-", "image/jpeg")
WEBP = InputImage(b"RIFF\x00\x00\x00\x00WEBP-webp-", "image/webp")

BASE_CTX: dict[str, Any] = {
    "prompt": "a red fox",
    "negative_prompt": None,
    "model": "m1",
    "n": 2,
    "seed": None,
    "size": {"width": 1024, "height": 768, "text": "1024x768", "aspect": "4:3"},
    "quality": "",
    "images": [PNG, JPG],
    "image": PNG,
    "mask": None,
    "extra": {"steps": 4},
    "params": {"flag": True},
    "steps": {"submit": {"task_id": "t 1/2", "poll_url": "https://poll.test/t/1?sig=a%2Fb"}},
}


def provider(request: dict[str, Any], *, auth: dict[str, Any] | None = None) -> ProviderSpec:
    """A one-step provider around `request`, compiled like a provider file."""
    doc = {
        "id": "t",
        "base_url": "https://api.test/v1/",
        "auth": auth if auth is not None else {"required": False},
        "models": {"m1": None},
        "tasks": {
            "generate": {
                "steps": [
                    {"name": "submit", "request": {"path": "/s"}, "extract": {
                        "task_id": "id", "poll_url": "url"}},
                    {"name": "main", "request": request},
                ]
            }
        },
    }  # fmt: skip
    reports: list[tuple[object, ...]] = []
    spec = compile_provider(doc, "t.yaml", lambda *a: reports.append(a))
    assert spec is not None and not reports, reports
    return spec


def render(
    request: dict[str, Any],
    ctx: dict[str, Any] | None = None,
    *,
    auth: dict[str, Any] | None = None,
    key: str | None = None,
) -> Outgoing:
    spec = provider(request, auth=auth)
    step: RequestSpec = spec.tasks["generate"].steps[1].request
    return build_request(step, {**BASE_CTX, **(ctx or {})}, spec.base_url, spec.auth, key)


def fields(form: aiohttp.FormData) -> list[tuple[str, str | None, str | None, Any]]:
    """(name, filename, content type, value) per part. FormData has no public accessor."""
    out = []
    for options, headers, value in form._fields:
        out.append((options["name"], options.get("filename"), headers.get("Content-Type"), value))
    return out


# --- JSON --------------------------------------------------------------------------------


def test_json_body_is_orjson_bytes_without_empty_optionals() -> None:
    out = render(
        {
            "path": "/images/generations",
            "json": {
                "model": "{{ model }}",
                "prompt": "{{ prompt }}",
                "n": "{{ n }}",
                "seed": "{{ seed }}",
                "negative_prompt": "{{ negative_prompt }}",
                "quality": "{{ quality }}",
                "size": "{{ size.width }}x{{ size.height }}",
                "steps": "{{ extra.steps }}",
                "flag": "{{ params.flag }}",
                "loras": "{{ extra.loras }}",
                "data": ["{{ prompt }}", "{{ seed }}", "{{ seed is none }}"],
                "nested": {"only_empty": "{{ seed }}"},
                "const": 0,
            },
        }
    )
    assert out.method == "POST"
    assert str(out.url) == "https://api.test/v1/images/generations"
    assert isinstance(out.data, bytes)
    assert out.headers["Content-Type"] == "application/json"
    assert orjson.loads(out.data) == {
        "model": "m1",
        "prompt": "a red fox",
        "n": 2,
        "size": "1024x768",
        "steps": 4,
        "flag": True,
        "data": ["a red fox", None, True],
        "nested": {},
        "const": 0,
    }
    assert out.timeout == 60.0


def test_json_body_keeps_unicode_and_an_explicit_content_type() -> None:
    out = render(
        {
            "path": "/x",
            "timeout": "2m",
            "headers": {"Content-Type": "application/vnd.test+json"},
            "json": {"prompt": "{{ prompt }}"},
        },
        {"prompt": "狐狸 é"},
    )
    assert out.data == '{"prompt":"狐狸 é"}'.encode()
    assert out.headers["Content-Type"] == "application/vnd.test+json"
    assert out.timeout == 120.0


def test_json_body_can_be_a_whole_expression() -> None:
    out = render({"path": "/x", "json": "{{ extra }}"})
    assert orjson.loads(out.data) == {"steps": 4}


# --- form-urlencoded ---------------------------------------------------------------------


def test_form_body_is_a_dict_of_strings() -> None:
    out = render(
        {
            "path": "/form",
            "form": {
                "prompt": "{{ prompt }}",
                "n": "{{ n }}",
                "seed": "{{ seed }}",
                "quality": "{{ quality }}",
                "on": True,
                "off": False,
                "ratio": 1.5,
                "const": "x",
            },
        }
    )
    assert out.data == {
        "prompt": "a red fox",
        "n": "2",
        "on": "true",
        "off": "false",
        "ratio": "1.5",
        "const": "x",
    }
    assert "Content-Type" not in out.headers  # aiohttp sets it for a dict body


# --- multipart ---------------------------------------------------------------------------


MULTIPART = {
    "path": "/images/edits",
    "multipart": [
        {"name": "model", "value": "{{ model }}"},
        {"name": "prompt", "value": "{{ prompt }}"},
        {"name": "n", "value": "{{ n }}"},
        {"name": "seed", "value": "{{ seed }}"},
        {"name": "flag", "value": "{{ params.flag }}"},
        {"name": "image[]", "file": "{{ images }}"},
        {"name": "mask", "file": "{{ mask }}"},
        {"name": "first", "file": "{{ image }}", "filename": "in-{{ n }}.png",
         "content_type": "image/x-custom"},
    ],
}  # fmt: skip


def test_multipart_parts_in_order_with_files() -> None:
    out = render(MULTIPART, {"images": [PNG, JPG, WEBP]})
    assert isinstance(out.data, aiohttp.FormData)
    assert "Content-Type" not in out.headers  # aiohttp adds it with the boundary
    assert fields(out.data) == [
        ("model", None, None, "m1"),
        ("prompt", None, None, "a red fox"),
        ("n", None, None, "2"),
        ("flag", None, None, "true"),
        ("image[]", "image.png", "image/png", PNG.data),
        ("image[]", "image.jpg", "image/jpeg", JPG.data),
        ("image[]", "image.webp", "image/webp", WEBP.data),
        ("first", "in-2.png", "image/x-custom", PNG.data),
    ]


def test_multipart_mask_and_single_image_parts() -> None:
    out = render(MULTIPART, {"images": [JPG], "image": JPG, "mask": PNG, "seed": 7})
    parts = fields(out.data)
    assert ("seed", None, None, "7") in parts
    assert [p for p in parts if p[0] == "image[]"] == [
        ("image[]", "image.jpg", "image/jpeg", JPG.data)
    ]
    assert ("mask", "image.png", "image/png", PNG.data) in parts


def test_multipart_skips_values_that_are_not_images() -> None:
    out = render(
        {"path": "/x", "multipart": [
            {"name": "f", "file": "{{ extra.steps }}"},
            {"name": "g", "file": "{{ [image, 'not an image', none] }}"},
            {"name": "h", "file": "{{ images[5] }}"},
        ]},
    )  # fmt: skip
    assert fields(out.data) == [("g", "image.png", "image/png", PNG.data)]


async def test_multipart_wire_format() -> None:
    out = render(MULTIPART, {"mask": JPG})
    writer = out.data()
    assert writer.content_type.startswith("multipart/form-data; boundary=")
    body = await writer.as_bytes()
    assert b'Content-Disposition: form-data; name="prompt"\r\n\r\na red fox\r\n' in body
    assert b'name="image[]"; filename="image.png"' in body
    assert b"Content-Type: image/png\r\n" in body
    assert b'name="mask"; filename="image.jpg"' in body
    assert b"Content-Type: image/x-custom\r\n" in body
    assert PNG.data in body and JPG.data in body


async def test_multipart_without_a_file_is_still_multipart_form_data() -> None:
    """aiohttp's FormData sends text-only fields urlencoded unless told otherwise; a provider
    that asked for multipart (and may reject anything else) gets multipart."""
    out = render({"path": "/x", "multipart": [{"name": "prompt", "value": "{{ prompt }}"}]})
    writer = out.data()
    assert writer.content_type.startswith("multipart/form-data; boundary=")
    assert b'name="prompt"\r\n\r\na red fox\r\n' in await writer.as_bytes()


# --- raw body ----------------------------------------------------------------------------


def test_raw_body_with_content_type() -> None:
    out = render(
        {"path": "/raw", "body": "prompt={{ prompt }}&n={{ n }}", "content_type": "text/plain"},
        {"prompt": "é"},
    )
    assert out.data == "prompt=é&n=2".encode()
    assert out.headers["Content-Type"] == "text/plain"


def test_raw_body_without_content_type() -> None:
    out = render({"path": "/raw", "body": "{{ prompt }}"})
    assert out.data == b"a red fox"
    assert "Content-Type" not in out.headers


def test_no_body() -> None:
    out = render({"method": "GET", "path": "/status"})
    assert out.method == "GET"
    assert out.data is None
    assert out.headers == {}


# --- query and headers -------------------------------------------------------------------


def test_query_values_are_strings_with_empties_dropped() -> None:
    out = render(
        {
            "method": "GET",
            "path": "/image/{{ prompt }}",
            "query": {
                "model": "{{ model }}",
                "width": "{{ size.width }}",
                "seed": "{{ seed }}",
                "neg": "{{ negative_prompt }}",
                "empty": "",
                "nologo": True,
                "private": False,
                "enhance": "{{ params.flag }}",
                "scale": 0.5,
                "text": "a&b=c d",
            },
        }
    )
    assert out.url.path == "/v1/image/a red fox"
    assert out.url.raw_path == "/v1/image/a%20red%20fox"
    assert dict(out.url.query) == {
        "model": "m1",
        "width": "1024",
        "nologo": "true",
        "private": "false",
        "enhance": "true",
        "scale": "0.5",
        "text": "a&b=c d",
    }
    assert out.describe() == "GET https://api.test/v1/image/a%20red%20fox"


def test_headers_are_rendered_strings_with_empties_dropped() -> None:
    out = render(
        {
            "path": "/x",
            "headers": {
                "X-Async": "true",
                "X-N": "{{ n }}",
                "X-Seed": "{{ seed }}",
                "X-Trace": "req-{{ steps.submit.task_id }}",
            },
        }
    )
    assert out.headers == {"X-Async": "true", "X-N": "2", "X-Trace": "req-t 1/2"}


# --- auth --------------------------------------------------------------------------------


def test_auth_header_from_the_value_template() -> None:
    auth = {"header": "Authorization", "value": "Bearer {{ key }}", "keys": ["k1"]}
    out = render({"path": "/x", "headers": {"X-A": "1"}}, auth=auth, key="sk-123")
    assert out.headers == {"X-A": "1", "Authorization": "Bearer sk-123"}
    assert out.url.query_string == ""


def test_auth_header_default_value_is_the_key() -> None:
    out = render({"path": "/x"}, auth={"header": "X-Api-Key", "keys": ["k"]}, key="abc")
    assert out.headers == {"X-Api-Key": "abc"}


def test_auth_header_overrides_a_request_header() -> None:
    auth = {"header": "Authorization", "value": "Bearer {{ key }}", "keys": ["k"]}
    out = render({"path": "/x", "headers": {"Authorization": "nope"}}, auth=auth, key="k")
    assert out.headers == {"Authorization": "Bearer k"}


def test_auth_query_key_is_encoded_and_kept_with_other_params() -> None:
    out = render(
        {"method": "GET", "path": "/x", "query": {"a": "1"}},
        auth={"query": "key", "keys": ["k"]},
        key="k&=/ 1",
    )
    assert dict(out.url.query) == {"a": "1", "key": "k&=/ 1"}
    assert out.url.raw_query_string == "a=1&key=k%26%3D/+1"
    assert "Authorization" not in out.headers


def test_no_key_no_auth() -> None:
    auth = {"header": "Authorization", "value": "Bearer {{ key }}", "query": "key", "keys": ["k"]}
    out = render({"path": "/x"}, auth=auth, key=None)
    assert out.headers == {}
    assert out.url.query_string == ""


# --- URLs --------------------------------------------------------------------------------


def test_path_is_appended_to_base_url() -> None:
    assert str(render({"path": "/a/b"}).url) == "https://api.test/v1/a/b"
    assert str(render({"path": "a/b"}).url) == "https://api.test/v1/a/b"
    out = render({"path": "/tasks/{{ steps.submit.task_id }}"})
    assert str(out.url) == "https://api.test/v1/tasks/t%201%2F2"


@pytest.mark.parametrize(
    "poll_url",
    [
        "https://poll.test/t/1?sig=a%2Fb",
        "https://cdn.test/r/a%20b/c%2Fd.png?X-Sig=AbC%2B%3D&exp=1",
        "https://poll.test/t/%E2%9C%93",
    ],
)
def test_absolute_url_from_an_earlier_step_is_kept_verbatim(poll_url: str) -> None:
    out = render({"method": "GET", "url": "{{ steps.submit.poll_url }}"}, {
        "steps": {"submit": {"poll_url": poll_url}}})  # fmt: skip
    assert str(out.url) == poll_url
    assert out.data is None


@pytest.mark.parametrize(
    ("request_extra", "auth"),
    [
        ({}, {"query": "key", "keys": ["k"], "send_to": ["https://poll.test"]}),
        ({"query": {"key": "k"}}, None),
    ],
    ids=["auth-query", "step-query"],
)
def test_added_query_params_keep_the_upstream_query_verbatim(
    request_extra: dict[str, Any], auth: dict[str, Any] | None
) -> None:
    out = render(
        {"method": "GET", "url": "{{ steps.submit.poll_url }}", **request_extra},
        {"steps": {"submit": {"poll_url": "https://poll.test/t/1?sig=a%2Fb%20c"}}},
        auth=auth,
        key="k",
    )
    assert str(out.url) == "https://poll.test/t/1?sig=a%2Fb%20c&key=k"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("tasks/{{ steps.submit.task_id }}", "https://api.test/v1/tasks/t%201%2F2"),
        ("status?id=1", "https://api.test/v1/status?id=1"),
        # An absolute path replaces the base URL's path, as a browser resolves a link.
        ("/other/x", "https://api.test/other/x"),
        ("{{ '/v2/jobs/' ~ steps.submit.task_id }}", "https://api.test/v2/jobs/t 1/2"),
    ],
)
def test_relative_url_is_resolved_against_base_url(url: str, expected: str) -> None:
    assert str(render({"method": "GET", "url": url}).url) == expected


def test_line_breaks_in_header_values_become_spaces() -> None:
    """HTTP forbids them (aiohttp would refuse to send the request at all)."""
    out = render({"path": "/x", "headers": {"X-Prompt": "{{ prompt }}"}}, {"prompt": "a\nb\r\nc"})
    assert out.headers["X-Prompt"] == "a b c"
