"""Reading an image request's fields: sizes (parse_size remembers the short ones), the
fields OpenAI does not define kept in the client's order for templates."""

from __future__ import annotations

from typing import Any

import pytest

from engine.api import params
from engine.api.errors import ApiError
from engine.api.images import job_from
from engine.dsl.sizes import parse_size


def test_a_size_is_read_the_same_the_first_time_and_after() -> None:
    for _ in range(2):
        assert params.size({"size": "1024x1536"}) == (1024, 1536)
        assert params.size({"size": " 64 X 64 "}) == (64, 64)
        assert params.size({"size": "auto"}) is None
        assert params.size({}) is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("big", "Invalid 'size' 'big': use WIDTHxHEIGHT like '1024x1024', or 'auto'."),
        ("8x8", "Invalid 'size' '8x8': each side must be between 16 and 8192."),
        (1024, "'size' must be a string like '1024x1024' or 'auto'."),
    ],
)
def test_a_refused_size_is_refused_every_time(value: Any, message: str) -> None:
    for _ in range(2):  # a refusal is not remembered as an answer
        with pytest.raises(ApiError) as refused:
            params.size({"size": value})
        assert refused.value.status == 400 and refused.value.message == message


def test_a_long_size_string_is_read_but_not_kept() -> None:
    """A valid size may be padded with whitespace up to the body limit: 256 of them must not
    stay in parse_size's cache."""
    kept = parse_size.cache_info().currsize
    padded = " " * 100_000 + "512x512"
    assert params.size({"size": padded}) == (512, 512)
    assert parse_size.cache_info().currsize == kept


def test_fields_openai_does_not_define_go_to_extra_in_order() -> None:
    body = {"prompt": "p", "model": "m", "steps": 30, "size": "64x64", "guidance": 2.5}
    assert list(job_from(body, "generate", prompt="p").extra.items()) == [
        ("steps", 30),
        ("guidance", 2.5),
    ]
    assert job_from({"prompt": "p", "n": 2}, "generate", prompt="p").extra == {}
