"""POST /v1/responses: the image part of OpenAI's Responses API (docs/responses.md).

The request's latest user message is the prompt (its `input_image` parts mean an edit) and the
`image_generation` tool carries the image options. The answer is a Response whose `output` holds
one `image_generation_call` item per image, its `result` the image as base64. With
`stream: true` it is the Responses event stream (responses_stream.py).
"""

from __future__ import annotations

from aiohttp import web

from ..config.loader import ConfigSnapshot
from ..runtime.images.inputs import InputError, Source, resolve
from ..runtime.job import ImageJob
from ..runtime.lifecycle.overload import Overloaded
from . import params, responses_stream
from .context import context
from .errors import ApiError, bad_request, overloaded
from .images import check_counts, input_context, job_from, outcome_headers, run_job
from .jsonio import json_response
from .responses_input import TEXT_ONLY, ImageCall, parse_request
from .responses_output import Shape, generation_call


async def create(request: web.Request) -> web.StreamResponse:
    body = await params.read_json(request)
    streaming = params.flag(body, "stream")
    call = parse_request(body)
    ctx = context(request)
    model = choose_model(ctx.snapshot, params.text(body, "model"), call)
    ctx.model = model or "auto"
    job = await make_job(request, call, model, params.text(body, "user"))
    shape = Shape(body, call, model)
    if streaming:
        return await responses_stream.respond(request, job, shape, call.partial_images)
    outcome = await run_job(request, job)
    items = [await generation_call(shape, item["b64_json"], outcome) for item in outcome.data]
    answer = shape.response("completed", items, outcome)
    return json_response(answer, headers=outcome_headers(outcome))


def choose_model(snapshot: ConfigSnapshot, model: str | None, call: ImageCall) -> str | None:
    """The pixgate model that makes the image. The tool's own `model` wins; else the request's
    `model` when it names an image model here; else (with the tool, whose request `model` is a
    chat model this gateway does not have) the default route. None means the default."""
    if call.tool_model is not None:
        if snapshot.resolve_model(call.tool_model) is None:
            raise ApiError(
                404,
                f"The model '{call.tool_model}' does not exist",
                param="tools.model",
                code="model_not_found",
            )
        return call.tool_model
    if model and model != "auto" and snapshot.resolve_model(model) is not None:
        return model
    if call.tool is None:
        raise bad_request(TEXT_ONLY, "tools", "image_generation_tool_required")
    return None


async def make_job(
    request: web.Request, call: ImageCall, model: str | None, user: str | None
) -> ImageJob:
    fields = {**call.extra, **call.options, "model": model, "user": user}
    fields["response_format"] = "b64_json"
    job = job_from(fields, "edit" if call.images else "generate", prompt=call.prompt)
    sources: list[tuple[str, Source]] = [(f.param, f.url) for f in call.images]
    if call.mask is not None:
        sources.append((call.mask.param, call.mask.url))
    if sources:
        check_counts(request, job, len(call.images))
        try:
            images = await resolve(sources, input_context(request))
        except InputError as exc:
            raise bad_request(str(exc), exc.param) from None
        except Overloaded as exc:  # no bytes free for a fetched image
            raise overloaded(exc) from None
        if call.mask is not None:
            job.mask = images.pop()
        job.images = images
    return job
