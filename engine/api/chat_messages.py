"""Read a chat completion's `messages`: the prompt, its input images, the conversation's last image.

Pure functions over the JSON the client sent; nothing here touches the network. The latest user
message is the request: its text is the prompt, its `image_url` parts and markdown images
(`![alt](url)`) are the input images, and an aspect ratio at the end of its text (`16:9`,
`--ar 16:9`, `(16:9)`) sets the size. Earlier messages only matter as context: the most recent
image in them is what a follow-up like "make the sky purple" edits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..dsl.sizes import STANDARD_RATIOS, parse_ratio
from . import params
from .errors import bad_request

# `![alt](url)` and `![alt](<url> "title")`; URLs (data URIs included) have no spaces or parens.
MARKDOWN_IMAGE = re.compile(
    r"!\[(?P<alt>[^\]\n]*)\]\(\s*<?(?P<url>[^\s()<>]+)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)"
)
# An aspect ratio closing the prompt, alone or as `--ar 16:9`, `(16:9)`, `ratio: 16:9`, `16：9`.
_RATIO_TAIL = re.compile(
    r"""(?:^|(?<=[\s,;，；])|(?=[(\[（]))
        [(\[（]?\s*
        (?:(?:--?(?:ar|aspect)|aspect[\s_-]*ratio|ratio)\s*[:=]?\s*)?
        [(\[（]?\s*
        (?P<w>\d{1,2})\s*[:：]\s*(?P<h>\d{1,2})
        \s*[)\]）]?
        [\s.,;!。，；！]*$""",
    re.IGNORECASE | re.VERBOSE,
)
_TRAILING_SEPARATORS = " \t\r\n,;:-–—，；、"
IMAGE_PART_TYPES = ("image_url", "input_image")
TEXT_PART_TYPES = ("text", "input_text")
# Part types chat clients send that carry nothing for an image model; they are ignored.
IGNORED_PART_TYPES = ("refusal",)


@dataclass(frozen=True, slots=True)
class FoundImage:
    """An image named in the conversation; `param` says where, for a 400 about it."""

    param: str
    url: str  # an http(s) URL, a data URI, or bare base64 (resolve() tells them apart)


@dataclass(slots=True)
class ChatInput:
    prompt: str  # the latest user message's text: markdown images and the ratio removed
    images: list[FoundImage] = field(default_factory=list)  # that message's images, in order
    ratio: tuple[int, int] | None = None
    context: FoundImage | None = None  # the most recent image in earlier messages
    index: int = 0  # position of the latest user message in `messages`

    @property
    def param(self) -> str:
        return f"messages[{self.index}].content"


def parse_chat(messages: Any) -> ChatInput:
    """The request a chat conversation makes; 400s name the offending parameter."""
    if messages is None:
        raise bad_request(
            "Missing required parameter: 'messages'.", "messages", "missing_required_parameter"
        )
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array of message objects.", "messages")
    roles: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise bad_request(
                f"Invalid type for 'messages[{i}]': expected an object.", f"messages[{i}]"
            )
        role = message.get("role")
        if not isinstance(role, str) or not role:
            raise bad_request(
                f"Missing required parameter: 'messages[{i}].role'.",
                f"messages[{i}].role",
                "missing_required_parameter",
            )
        roles.append(role)
    index = next((i for i in range(len(roles) - 1, -1, -1) if roles[i] == "user"), None)
    if index is None:
        raise bad_request(
            "'messages' has no user message: the latest user message is the image request.",
            "messages",
        )
    text, images = read_content(messages[index].get("content"), f"messages[{index}]", strict=True)
    prompt, ratio = strip_ratio(text)
    chat = ChatInput(prompt, images, ratio, context_image(messages, index), index)
    if not prompt and not images:
        raise bad_request("The latest user message has neither a prompt nor an image.", chat.param)
    if len(prompt) > params.MAX_PROMPT:
        raise bad_request(
            f"The prompt is too long: at most {params.MAX_PROMPT} characters.", chat.param
        )
    return chat


def read_content(content: Any, where: str, *, strict: bool) -> tuple[str, list[FoundImage]]:
    """A message's text (markdown images taken out) and its images, in order of appearance.

    `strict` (the latest user message) turns shapes that cannot be read into 400s; earlier
    messages are read leniently, since clients store all sorts of things in the history."""
    param = f"{where}.content"
    if content is None:
        return "", []
    if isinstance(content, str):
        return split_markdown_images(content, param)
    if not isinstance(content, list):
        if strict:
            raise bad_request(
                f"Invalid type for '{param}': expected a string or an array of content parts.",
                param,
            )
        return "", []
    texts: list[str] = []
    images: list[FoundImage] = []
    for j, part in enumerate(content):
        part_param = f"{param}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(part, dict) or not isinstance(kind, str):
            if strict:
                raise bad_request(
                    f"Invalid content part '{part_param}': expected an object with a 'type'.",
                    part_param,
                )
            continue
        if kind in TEXT_PART_TYPES:
            value = part.get("text")
            if not isinstance(value, str):
                if strict:
                    raise bad_request(
                        f"'{part_param}.text' must be a string.", f"{part_param}.text"
                    )
                continue
            text, found = split_markdown_images(value, f"{part_param}.text")
            texts.append(text)
            images.extend(found)
        elif kind in IMAGE_PART_TYPES:
            url = _part_url(part, kind)
            if url is None:
                if strict:
                    raise bad_request(
                        f'\'{part_param}.{kind}\' must be {{"url": "..."}} with an image URL '
                        "or a data URI.",
                        f"{part_param}.{kind}",
                    )
                continue
            images.append(FoundImage(f"{part_param}.{kind}", url))
        elif strict and kind not in IGNORED_PART_TYPES:
            raise bad_request(
                f"Content parts of type '{kind}' are not supported here: send text and "
                "image_url parts.",
                f"{part_param}.type",
            )
    return tidy("\n".join(t for t in texts if t)), images


def _part_url(part: dict[str, Any], kind: str) -> str | None:
    """`{"image_url": {"url": ...}}`, as OpenAI documents it, or `{"image_url": "..."}`."""
    value = part.get(kind)
    if isinstance(value, dict):
        value = value.get("url")
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def split_markdown_images(text: str, param: str) -> tuple[str, list[FoundImage]]:
    """Take `![alt](url)` images out of a text: (the text without them, the images)."""
    images = [FoundImage(param, m.group("url")) for m in MARKDOWN_IMAGE.finditer(text)]
    return tidy(MARKDOWN_IMAGE.sub(" ", text)) if images else tidy(text), images


def tidy(text: str) -> str:
    """Collapse runs of spaces within lines and blank lines between them; strip the ends."""
    lines = [" ".join(line.split()) for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


def strip_ratio(prompt: str) -> tuple[str, tuple[int, int] | None]:
    """An aspect ratio closing the prompt (one of STANDARD_RATIOS) is a size, not prompt text."""
    match = _RATIO_TAIL.search(prompt)
    if match is None:
        return prompt, None
    ratio_text = f"{int(match.group('w'))}:{int(match.group('h'))}"
    ratio = parse_ratio(ratio_text)
    if ratio is None or ratio_text not in STANDARD_RATIOS:
        return prompt, None
    rest = prompt[: match.start()].rstrip(_TRAILING_SEPARATORS)
    # An unmatched opening bracket left by `(aspect 16:9)`-like tails.
    return rest.rstrip("([（" + _TRAILING_SEPARATORS), ratio


def context_image(messages: list[Any], before: int) -> FoundImage | None:
    """The most recent image in the messages before `before`: the newest message that has one
    (an assistant reply's markdown image or a user's image part), and its last image."""
    for i in range(before - 1, -1, -1):
        message = messages[i]
        if not isinstance(message, dict) or message.get("role") not in ("assistant", "user"):
            continue
        _text, images = read_content(message.get("content"), f"messages[{i}]", strict=False)
        if images:
            return images[-1]
    return None


def choose_task(chat: ChatInput, context_edit: bool) -> tuple[str, list[FoundImage]]:
    """The image task and its inputs: no image generates, one edits (or, with no prompt,
    makes a variation), several blend. Without an image of its own, a message edits the
    conversation's last image when `context_edit` allows it."""
    if len(chat.images) > 1:
        if not chat.prompt:
            raise bad_request("Say how to combine the images: blending needs a prompt.", chat.param)
        return "blend", list(chat.images)
    if chat.images:
        return ("edit" if chat.prompt else "variation"), list(chat.images)
    if context_edit and chat.context is not None:
        return "edit", [chat.context]
    return "generate", []
