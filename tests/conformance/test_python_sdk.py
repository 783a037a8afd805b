"""Client conformance: the official openai Python SDK drives every endpoint, and every
response and stream event is validated strictly against OpenAI's published spec
(tests/openapi.py). The gateway runs the shipped config (the offline demo upstream)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from tests.gateway import Gateway
from tests.openapi import validate_component


@pytest.fixture
async def client(demo_gateway: Gateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=demo_gateway.v1, api_key="unused", max_retries=0, timeout=30
    ) as sdk:
        yield sdk


def check(spec: dict[str, Any], name: str, raw: Any) -> Any:
    """Validate a with_raw_response result's JSON body, then parse it as the SDK does."""
    validate_component(spec, name, raw.http_response.json())
    return raw.parse()


# ---------------------------------------------------------------------------------------------
# Models


async def test_models_list_and_retrieve(
    client: openai.AsyncOpenAI, openai_spec: dict[str, Any]
) -> None:
    listed = check(openai_spec, "ListModelsResponse", await client.models.with_raw_response.list())
    ids = [m.id for m in listed.data]
    assert {"demo", "demo-async", "demo/demo-v1"} <= set(ids)
    for model_id in ids:  # every listed id, including `provider/model` ones, can be retrieved
        raw = await client.models.with_raw_response.retrieve(model_id)
        model = check(openai_spec, "Model", raw)
        assert (model.id, model.object) == (model_id, "model")


async def test_retrieve_unknown_model_is_a_404_openai_error(
    client: openai.AsyncOpenAI, openai_spec: dict[str, Any]
) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        await client.models.retrieve("no-such/model")
    body = err.value.response.json()
    validate_component(openai_spec, "ErrorResponse", body)
    assert body["error"]["code"] == "model_not_found"
    assert "no-such/model" in body["error"]["message"]
