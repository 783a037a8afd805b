"""Read a Responses API request (`POST /v1/responses`) as one image call (docs/responses.md).

Pure functions over the JSON the client sent; nothing here touches the network. The latest
user message in `input` is the request: its text is the prompt, its `input_image` parts are the
images to edit. The `image_generation` tool in `tools` carries the image options (size, quality,
output_format, background, partial_images, model, input_image_mask).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import params
from .chat_messages import FoundImage, tidy
from .errors import bad_request

TOOL_TYPE = "image_generation"
# Tool options that become ImageJob fields under the same name (the job reads them itself).
JOB_OPTIONS = ("size", "quality", "output_format", "background")
# ImageGenTool's properties. The echoed tool in a Response keeps these; any other field of the
# tool goes to the provider's templates, like extra fields on /v1/images.
TOOL_FIELDS = frozenset(
    {
        "type",
        "model",
        "quality",
        "size",
        "output_format",
        "output_compression",
        "moderation",
        "background",
        "input_fidelity",
        "input_image_mask",
        "partial_images",
        "action",
    }
)
# Request fields that ask for something a stateless image gateway cannot do.
UNSUPPORTED = {
    "previous_response_id": "this gateway stores no responses; send the image to edit as an "
    "input_image part instead",
    "conversation": "this gateway stores no conversations; send the image to edit as an "
    "input_image part instead",
    "prompt": "stored prompt templates are not supported; send the prompt in 'input'",
}
TEXT_ONLY = (
    "This gateway makes images: add the image_generation tool to 'tools', or name an image "
    "model in 'model'. It cannot answer with text."
)


@dataclass(slots=True)
class ImageCall:
    """What a Responses request asks for: one image, made from a prompt and its images."""

    prompt: str
    images: list[FoundImage] = field(default_factory=list)
    mask: FoundImage | None = None
    tool: dict[str, Any] | None = None  # the image_generation tool as the client sent it
    tool_model: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # JOB_OPTIONS the tool set
    extra: dict[str, Any] = field(default_factory=dict)  # the tool's non-OpenAI fields
    partial_images: int | None = None


def parse_request(body: dict[str, Any]) -> ImageCall:
    """The image call a CreateResponse body makes; 400s name the offending parameter."""
    for name, why in UNSUPPORTED.items():
        if body.get(name) is not None:
            raise bad_request(f"'{name}' is not supported: {why}.", name)
    if body.get("background") is True:
        raise bad_request(
            "'background' mode is not supported: this gateway answers in the request "
            "(use 'stream': true to see progress).",
            "background",
        )
    prompt, images = read_input(body.get("input"))
    tool = image_tool(body.get("tools"), body.get("tool_choice"))
    call = ImageCall(prompt, images, tool=tool)
    if tool is not None:
        read_tool(tool, call)
    if not call.prompt:
        raise bad_request("The latest user message in 'input' has no text prompt.", "input")
    if len(call.prompt) > params.MAX_PROMPT:
        raise bad_request(
            f"The prompt is too long: at most {params.MAX_PROMPT} characters.", "input"
        )
    return call


def read_input(value: Any) -> tuple[str, list[FoundImage]]:
    """The prompt and images of `input`: a string, or items whose latest user message counts."""
    if value is None:
        raise bad_request(
            "Missing required parameter: 'input'.", "input", "missing_required_parameter"
        )
    if isinstance(value, str):
        return tidy(value), []
    if not isinstance(value, list) or not value:
        raise bad_request("'input' must be a string or a non-empty array of input items.", "input")
    index = None
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise bad_request(f"Invalid type for 'input[{i}]': expected an object.", f"input[{i}]")
        if item.get("role") == "user" and item.get("type", "message") == "message":
            index = i
    if index is None:
        raise bad_request(
            "'input' has no user message: the latest user message is the image request.",
            "input",
        )
    return read_content(value[index].get("content"), f"input[{index}].content")


def read_content(content: Any, param: str) -> tuple[str, list[FoundImage]]:
    """A message's text and its input images, in order."""
    if isinstance(content, str):
        return tidy(content), []
    if not isinstance(content, list):
        raise bad_request(
            f"Invalid type for '{param}': expected a string or an array of content parts.", param
        )
    texts: list[str] = []
    images: list[FoundImage] = []
    for j, part in enumerate(content):
        where = f"{param}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(part, dict) or not isinstance(kind, str):
            raise bad_request(
                f"Invalid content part '{where}': expected an object with a 'type'.", where
            )
        if kind == "input_text":
            text = part.get("text")
            if not isinstance(text, str):
                raise bad_request(f"'{where}.text' must be a string.", f"{where}.text")
            texts.append(text)
        elif kind == "input_image":
            images.append(FoundImage(f"{where}.image_url", image_url(part, where)))
        else:
            raise bad_request(
                f"Content parts of type '{kind}' are not supported here: send input_text and "
                "input_image parts.",
                f"{where}.type",
            )
    return tidy("\n".join(t for t in texts if t)), images


def image_url(part: dict[str, Any], where: str) -> str:
    url = part.get("image_url")
    if isinstance(url, dict):  # Chat Completions' shape, which some clients send here too
        url = url.get("url")
    if isinstance(url, str) and url.strip():
        return url.strip()
    if part.get("file_id") is not None:
        raise bad_request(
            f"'{where}.file_id' is not supported: this gateway has no Files API; send the "
            "image as 'image_url' (a data URI or an http(s) URL).",
            f"{where}.file_id",
        )
    raise bad_request(
        f"'{where}.image_url' must be an image URL or a data URI.", f"{where}.image_url"
    )


def image_tool(tools: Any, tool_choice: Any) -> dict[str, Any] | None:
    """The image_generation tool, unless `tool_choice` rules tools out. Other tools are
    ignored: this gateway only ever calls the image tool."""
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise bad_request("'tools' must be an array of tool objects.", "tools")
    found = None
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise bad_request(f"Invalid type for 'tools[{i}]': expected an object.", f"tools[{i}]")
        if tool.get("type") == TOOL_TYPE and found is None:
            found = tool
    return None if tool_choice == "none" else found


def read_tool(tool: dict[str, Any], call: ImageCall) -> None:
    for name in JOB_OPTIONS:
        value = tool.get(name)
        if value is not None:
            if not isinstance(value, str):
                raise bad_request(f"'tools[].{name}' must be a string.", f"tools.{name}")
            call.options[name] = value
    call.extra = {k: v for k, v in tool.items() if k not in TOOL_FIELDS}
    call.tool_model = params.text(tool, "model")
    partial = tool.get("partial_images")
    if partial is not None and (
        isinstance(partial, bool) or not isinstance(partial, int) or not 0 <= partial <= 3
    ):
        raise bad_request(
            "'partial_images' must be an integer from 0 to 3.", "tools.partial_images"
        )
    call.partial_images = partial
    mask = tool.get("input_image_mask")
    if mask is not None:
        url = mask.get("image_url") if isinstance(mask, dict) else None
        if not isinstance(url, str) or not url.strip():
            raise bad_request(
                "'input_image_mask' needs an 'image_url' (a data URI or an http(s) URL); file "
                "ids are not supported.",
                "tools.input_image_mask",
            )
        call.mask = FoundImage("tools.input_image_mask.image_url", url.strip())
