"""Validate what a client received from the gateway against OpenAI's published schemas.

An exchange is one HTTP request a client made, as the client saw the answer: method, URL,
status, content type and body text (the Node clients record them with a capturing `fetch`).
Every JSON body, and every event of an event stream, is checked against its component.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from tests.openapi import validate_component

# The Responses API's stream events and their components.
RESPONSE_EVENTS = {
    "response.created": "ResponseCreatedEvent",
    "response.in_progress": "ResponseInProgressEvent",
    "response.output_item.added": "ResponseOutputItemAddedEvent",
    "response.output_item.done": "ResponseOutputItemDoneEvent",
    "response.image_generation_call.in_progress": "ResponseImageGenCallInProgressEvent",
    "response.image_generation_call.generating": "ResponseImageGenCallGeneratingEvent",
    "response.image_generation_call.partial_image": "ResponseImageGenCallPartialImageEvent",
    "response.image_generation_call.completed": "ResponseImageGenCallCompletedEvent",
    "response.completed": "ResponseCompletedEvent",
    "response.failed": "ResponseFailedEvent",
    "error": "ResponseErrorEvent",
}
IMAGE_EVENTS = {
    "image_generation.partial_image": "ImageGenPartialImageEvent",
    "image_generation.completed": "ImageGenCompletedEvent",
    "image_edit.partial_image": "ImageEditPartialImageEvent",
    "image_edit.completed": "ImageEditCompletedEvent",
}
JSON_BODIES = {
    "/v1/images/generations": "ImagesResponse",
    "/v1/images/edits": "ImagesResponse",
    "/v1/images/variations": "ImagesResponse",
    "/v1/responses": "Response",
    "/v1/chat/completions": "CreateChatCompletionResponse",
    "/v1/models": "ListModelsResponse",
}


def parse_sse(text: str) -> list[tuple[str | None, Any]]:
    """(event name, parsed data) per frame with data; `[DONE]` and comments are left out."""
    events: list[tuple[str | None, Any]] = []
    for frame in text.split("\n\n"):
        name: str | None = None
        data: list[str] = []
        for line in frame.split("\n"):
            if line.startswith("event:"):
                name = line[len("event:") :].strip()
            elif line.startswith("data:"):
                data.append(line[len("data:") :].strip())
        if data and data != ["[DONE]"]:
            events.append((name, json.loads("\n".join(data))))
    return events


def validate_exchange(spec: dict[str, Any], exchange: dict[str, Any]) -> str:
    """Validate one exchange; returns what it was checked as (for the test's own asserts)."""
    path = urlsplit(exchange["url"]).path
    body = exchange["body"]
    if exchange["status"] >= 400:
        validate_component(spec, "ErrorResponse", json.loads(body))
        return "ErrorResponse"
    if exchange["content_type"].startswith("text/event-stream"):
        validate_stream(spec, path, parse_sse(body))
        return f"stream {path}"
    name = "Model" if path.startswith("/v1/models/") else JSON_BODIES[path]
    validate_component(spec, name, json.loads(body))
    return name


def validate_stream(spec: dict[str, Any], path: str, events: list[tuple[str | None, Any]]) -> None:
    assert events, f"an empty stream from {path}"
    for number, (name, data) in enumerate(events):
        if path == "/v1/chat/completions":
            validate_component(spec, "CreateChatCompletionStreamResponse", data)
            continue
        assert name == data["type"], (name, data.get("type"))
        if path == "/v1/responses":
            validate_component(spec, RESPONSE_EVENTS[data["type"]], data)
            validate_component(spec, "ResponseStreamEvent", data)
            assert data["sequence_number"] == number
        else:
            validate_component(spec, IMAGE_EVENTS[data["type"]], data)
