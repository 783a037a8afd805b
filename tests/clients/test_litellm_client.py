"""LiteLLM as a client of the gateway: `image_generation` and `image_edit` through its OpenAI
provider (`openai/<model>` with `api_base`), as people put pixgate behind LiteLLM.

LiteLLM is imported inside the test (its import takes seconds), with its price list read from
the package (LITELLM_LOCAL_MODEL_COST_MAP) so that it never reaches for the internet. A
recording proxy between LiteLLM and the gateway keeps what LiteLLM received, which is validated
against OpenAI's published schemas.
"""

from __future__ import annotations

import base64
import io
import os
from typing import Any

import pytest
from PIL import Image

from tests.clients.exchanges import validate_exchange
from tests.clients.recorder import recording
from tests.gateway import Gateway
from tests.services import missing
from tests.upstreams.common import png_bytes


def import_litellm() -> Any:
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # before the import, which reads it
    try:
        import litellm
    except ImportError:
        missing("litellm", "pip install -e '.[dev]'")
    litellm.telemetry = False
    return litellm


def decode(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


async def test_litellm_image_generation_and_edit(
    demo_gateway: Gateway, openai_spec: dict[str, Any]
) -> None:
    litellm = import_litellm()
    async with recording(demo_gateway.url) as (base, exchanges):
        options = {"api_base": f"{base}/v1", "api_key": "pixgate-test", "timeout": 60}
        # LiteLLM refuses `response_format` for an `openai/` model it does not know (it checks
        # against gpt-image's parameters); `extra_body` passes it through.
        b64 = {"extra_body": {"response_format": "b64_json"}}
        generated = await litellm.aimage_generation(
            model="openai/demo", prompt="a red fox", size="256x256", **b64, **options
        )
        assert decode(generated.data[0].b64_json).size == (256, 256)

        by_url = await litellm.aimage_generation(
            model="openai/demo", prompt="a red fox", size="256x256", n=2, **options
        )
        assert len(by_url.data) == 2
        assert all(item.url.startswith(f"{demo_gateway.url}/files/") for item in by_url.data)

        source = io.BytesIO(png_bytes(256, 256))
        source.name = "in.png"  # LiteLLM's own transport takes a named file, not a tuple
        edited = await litellm.aimage_edit(
            model="openai/demo",
            image=source,
            prompt="add a hat",
            **b64,
            **options,
        )
        assert decode(edited.data[0].b64_json).format == "PNG"

        with pytest.raises(litellm.NotFoundError, match="does not exist"):
            await litellm.aimage_generation(model="openai/no-such-model", prompt="x", **options)

    paths = [(x["method"], x["url"].removeprefix(demo_gateway.url)) for x in exchanges]
    assert paths == [
        ("POST", "/v1/images/generations"),
        ("POST", "/v1/images/generations"),
        ("POST", "/v1/images/edits"),
        ("POST", "/v1/images/generations"),
    ]
    kinds = [validate_exchange(openai_spec, x) for x in exchanges]
    assert kinds == ["ImagesResponse"] * 3 + ["ErrorResponse"]
