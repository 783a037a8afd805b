"""Chat replies: markdown images, the revised prompt line, chunks, usage and progress lines."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from engine.api.chat_reply import (
    Chunks,
    ProgressFeed,
    completion,
    content_parts,
    escape_markdown,
    image_markdown,
    progress_text,
    rough_tokens,
    start_line,
    usage,
)
from engine.runtime.request import Outcome

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 32


def outcome(data: list[dict[str, str]], revised: str | None = None) -> Outcome:
    return Outcome(data, "demo", "demo", "demo-v1", 1, revised_prompt=revised)


def test_one_image_per_line() -> None:
    parts = content_parts(outcome([{"url": "https://gw/files/a.png"}, {"url": "https://gw/b"}]))
    assert "".join(parts) == "![image](https://gw/files/a.png)\n![image](https://gw/b)"


def test_base64_results_become_data_uris_of_their_type() -> None:
    b64 = base64.b64encode(JPEG).decode()
    assert image_markdown({"b64_json": b64}) == f"![image](data:image/jpeg;base64,{b64})"
    png = base64.b64encode(PNG).decode()
    assert image_markdown({"b64_json": png}) == f"![image](data:image/png;base64,{png})"
    assert image_markdown({}) is None


def test_revised_prompt_is_an_italic_line_first() -> None:
    parts = content_parts(outcome([{"url": "u"}], revised="A *bold*\nfox_cub [1]"))
    assert parts[0] == "*A \\*bold\\* fox\\_cub \\[1\\]*\n\n"
    assert parts[1] == "![image](u)"
    assert content_parts(outcome([{"url": "u"}], revised="  ")) == ["![image](u)"]


def test_escape_markdown_is_one_line() -> None:
    assert escape_markdown("a\n\n<b>`c`") == "a \\<b\\>\\`c\\`"


def test_usage_counts_roughly_and_ignores_data_uri_payloads() -> None:
    assert rough_tokens("") == 0
    assert rough_tokens("abcd") == 1
    big = "![image](data:image/png;base64," + "A" * 100_000 + ")"
    assert rough_tokens(big) < 20
    u = usage("a red fox", "![image](u)")
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] > 0


def test_completion_shape() -> None:
    body = completion("chatcmpl-1", 5, "demo", "x", {"prompt_tokens": 1})
    assert body["object"] == "chat.completion"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "x", "refusal": None},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ]


def test_chunks_share_id_and_carry_usage_only_when_asked() -> None:
    plain = Chunks("chatcmpl-1", 5, "demo")
    chunk = plain.delta({"content": "x"})
    assert chunk["id"] == "chatcmpl-1" and chunk["object"] == "chat.completion.chunk"
    assert "usage" not in chunk
    counted = Chunks("chatcmpl-1", 5, "demo", include_usage=True)
    assert counted.delta({}, "stop")["usage"] is None
    assert counted.delta({}, "stop")["choices"][0]["finish_reason"] == "stop"
    last = counted.usage({"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3})
    assert last["choices"] == [] and last["usage"]["total_tokens"] == 3


@pytest.mark.parametrize(
    ("task", "context", "line"),
    [
        ("generate", False, "Generating with demo…"),
        ("edit", True, "Editing the last image with demo…"),
        ("edit", False, "Editing the image with demo…"),
        ("blend", False, "Blending 3 images with demo…"),
        ("variation", False, "Making a variation of the image with demo…"),
    ],
)
def test_start_line(task: str, context: bool, line: str) -> None:
    assert start_line(task, "demo", 3, context) == line


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, None),
        (True, None),
        ("", None),
        ({"a": 1}, None),
        (0, "Progress: 0%"),
        (35, "Progress: 35%"),
        (0.355, "Progress: 36%"),
        (140, "Progress: 100%"),
        ("35%", "Progress: 35%"),
        ("PENDING", "Queued…"),
        ("in queue", "Queued…"),
        ("RUNNING", "Running…"),
        ("PROCESSING", "Running…"),
        ("SUCCEED", "Finishing…"),
        ("Loading model weights", "Loading model weights"),
        ("x" * 500, "x" * 200),
    ],
)
def test_progress_text(value: Any, text: str | None) -> None:
    assert progress_text(value) == text


def test_progress_feed_passes_each_new_line_once() -> None:
    lines: list[str] = []
    feed = ProgressFeed(lines.append)
    for value in ("PENDING", "PENDING", None, "RUNNING", "RUNNING", 10, 10, 20, "RUNNING"):
        feed(value)
    assert lines == ["Queued…\n", "Running…\n", "Progress: 10%\n", "Progress: 20%\n", "Running…\n"]
