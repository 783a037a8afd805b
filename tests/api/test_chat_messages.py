"""Reading chat messages: prompt, input images, ratio, conversation context, task."""

from __future__ import annotations

from typing import Any

import pytest

from engine.api.chat_messages import (
    ChatInput,
    FoundImage,
    choose_task,
    context_image,
    parse_chat,
    read_content,
    split_markdown_images,
    strip_ratio,
)
from engine.api.errors import ApiError

DATA = "data:image/png;base64,iVBORw0KGgo="


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def error_param(messages: Any) -> str | None:
    with pytest.raises(ApiError) as err:
        parse_chat(messages)
    assert err.value.status == 400
    return err.value.param


# prompt extraction


def test_prompt_from_a_string() -> None:
    chat = parse_chat([user("  a red   fox\n\n\nin snow  ")])
    assert chat.prompt == "a red fox\n\nin snow"
    assert chat.images == [] and chat.ratio is None and chat.context is None


def test_prompt_from_text_parts_ignores_image_parts() -> None:
    chat = parse_chat(
        [
            user(
                [
                    {"type": "text", "text": "a fox"},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
                    {"type": "text", "text": "in snow"},
                ]
            )
        ]
    )
    assert chat.prompt == "a fox\nin snow"
    assert chat.images == [FoundImage("messages[0].content[1].image_url", "https://x.test/a.png")]


def test_image_url_as_a_plain_string_is_accepted() -> None:
    text, images = read_content(
        [{"type": "image_url", "image_url": DATA}], "messages[2]", strict=True
    )
    assert text == "" and images == [FoundImage("messages[2].content[0].image_url", DATA)]


def test_the_latest_user_message_is_the_request() -> None:
    chat = parse_chat([user("first"), assistant("ok"), user("second"), assistant("pending")])
    assert chat.prompt == "second" and chat.index == 2


# markdown images


def test_markdown_images_are_inputs_not_prompt_text() -> None:
    text, images = split_markdown_images(
        f'![a](https://x.test/a.png) make ![b]({DATA} "title") one', "p"
    )
    assert text == "make one"
    assert [i.url for i in images] == ["https://x.test/a.png", DATA]
    assert all(i.param == "p" for i in images)


def test_markdown_links_that_are_not_images_stay() -> None:
    text, images = split_markdown_images("see [here](https://x.test) please", "p")
    assert text == "see [here](https://x.test) please" and images == []


def test_markdown_images_inside_text_parts() -> None:
    chat = parse_chat([user([{"type": "text", "text": "![](https://x.test/i.png) blue sky"}])])
    assert chat.prompt == "blue sky"
    assert chat.images == [FoundImage("messages[0].content[0].text", "https://x.test/i.png")]


# ratios


@pytest.mark.parametrize(
    ("prompt", "rest", "ratio"),
    [
        ("a cat 16:9", "a cat", (16, 9)),
        ("a cat, 9:16.", "a cat", (9, 16)),
        ("a cat --ar 3:2", "a cat", (3, 2)),
        ("a cat --aspect 2:3", "a cat", (2, 3)),
        ("a cat (4:3)", "a cat", (4, 3)),
        ("a cat(3:4)", "a cat", (3, 4)),
        ("a cat [1:1]", "a cat", (1, 1)),
        ("a cat aspect ratio 21:9", "a cat", (21, 9)),
        ("a cat (aspect ratio: 16:9)", "a cat", (16, 9)),
        ("a cat ratio=16:9", "a cat", (16, 9)),
        ("一只猫 16：9", "一只猫", (16, 9)),
        ("16:9", "", (16, 9)),
    ],
)
def test_a_ratio_closing_the_prompt_is_taken_out(
    prompt: str, rest: str, ratio: tuple[int, int]
) -> None:
    assert strip_ratio(prompt) == (rest, ratio)


@pytest.mark.parametrize(
    "prompt",
    [
        "a cat",
        "meet at 10:30",  # not a ratio
        "a 16:9 poster of a cat",  # not at the end
        "a cat 7:5",  # not a standard ratio
        "a cat16:9",  # glued to a word
    ],
)
def test_other_prompts_keep_their_text(prompt: str) -> None:
    assert strip_ratio(prompt) == (prompt, None)


def test_parse_chat_strips_the_ratio_after_markdown_images() -> None:
    chat = parse_chat([user("![](https://x.test/a.png) paint it gold 1:1")])
    assert chat.prompt == "paint it gold" and chat.ratio == (1, 1) and len(chat.images) == 1


# context images


def test_context_is_the_newest_earlier_image() -> None:
    messages = [
        user([{"type": "text", "text": "x"}, {"type": "image_url", "image_url": {"url": "u0"}}]),
        assistant("![image](https://gw.test/files/a.png)\n![image](https://gw.test/files/b.png)"),
        user("nice"),
        assistant("Sure, anything else?"),
        user("make it purple"),
    ]
    found = context_image(messages, 4)
    assert found == FoundImage("messages[1].content", "https://gw.test/files/b.png")
    assert context_image(messages, 1) == FoundImage("messages[0].content[1].image_url", "u0")
    assert context_image(messages, 0) is None


def test_context_skips_other_roles_and_odd_history() -> None:
    messages = [
        assistant("![image](https://gw.test/files/old.png)"),
        {"role": "system", "content": "![image](https://gw.test/files/system.png)"},
        {"role": "tool", "content": "![image](https://gw.test/files/tool.png)"},
        assistant([{"type": "text", "text": "no image"}, "junk", {"type": "weird"}]),
        assistant(42),
        user("again"),
    ]
    assert context_image(messages, 5) == FoundImage(
        "messages[0].content", "https://gw.test/files/old.png"
    )


def test_parse_chat_finds_the_context() -> None:
    chat = parse_chat([user("a fox"), assistant("![image](https://gw.test/f.png)"), user("purple")])
    assert chat.context == FoundImage("messages[1].content", "https://gw.test/f.png")


# task selection


CONTEXT = FoundImage("messages[1].content", "https://gw.test/f.png")
A = FoundImage("messages[2].content[1].image_url", "a")
B = FoundImage("messages[2].content[2].image_url", "b")


@pytest.mark.parametrize(
    ("chat", "context_edit", "task", "inputs"),
    [
        (ChatInput("a fox"), True, "generate", []),
        (ChatInput("purple", context=CONTEXT), True, "edit", [CONTEXT]),
        (ChatInput("purple", context=CONTEXT), False, "generate", []),
        (ChatInput("purple", [A], context=CONTEXT), True, "edit", [A]),
        (ChatInput("", [A]), True, "variation", [A]),
        (ChatInput("mix", [A, B], context=CONTEXT), True, "blend", [A, B]),
    ],
)
def test_choose_task(
    chat: ChatInput, context_edit: bool, task: str, inputs: list[FoundImage]
) -> None:
    assert choose_task(chat, context_edit) == (task, inputs)


def test_blending_without_words_is_a_400() -> None:
    with pytest.raises(ApiError) as err:
        choose_task(ChatInput("", [A, B], index=2), True)
    assert err.value.param == "messages[2].content"


# validation


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        (None, "messages"),
        ("hi", "messages"),
        ([], "messages"),
        ([assistant("hi")], "messages"),
        ([1], "messages[0]"),
        ([{"content": "x"}], "messages[0].role"),
        ([user("")], "messages[0].content"),
        ([user(None)], "messages[0].content"),
        ([user({"text": "x"})], "messages[0].content"),
        ([user([{"text": "x"}])], "messages[0].content[0]"),
        ([user([{"type": "text", "text": 3}])], "messages[0].content[0].text"),
        (
            [user([{"type": "image_url", "image_url": {"url": ""}}])],
            "messages[0].content[0].image_url",
        ),
        ([user([{"type": "file", "file": {}}])], "messages[0].content[0].type"),
        ([user("x" * 32001)], "messages[0].content"),
    ],
)
def test_bad_messages_name_the_parameter(messages: Any, param: str) -> None:
    assert error_param(messages) == param


def test_missing_messages_is_missing_required_parameter() -> None:
    with pytest.raises(ApiError) as err:
        parse_chat(None)
    assert err.value.code == "missing_required_parameter"
