"""Fake Azure OpenAI images API: OpenAI's Images API (tests/upstreams/openai.py does the
validation and the answers) behind Azure's deployment paths.

Routes (gateway base URL ``{base}/openai``):

* ``POST /openai/deployments/{deployment}/images/generations`` (endpoint ``"generations"``)
* ``POST /openai/deployments/{deployment}/images/edits`` (endpoint ``"edits"``)
* ``GET /files/{name}`` (endpoint ``"files"``, no auth)

Azure's own rules on top: ``api-version`` is a required query parameter (a known one), the key
comes in the ``api-key`` header, and the deployment, not a body field, picks the model (the
fake's deployments are named after their models). Errors use Azure's shapes: the content filter
is a 400 ``content_policy_violation`` with ``inner_error.code`` ``ResponsibleAIPolicyViolation``.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from . import openai as fake_openai
from .common import Part, RecordedRequest, ScriptedFailure, json_response, make_app, record_of

API_VERSIONS: Final = frozenset({"2024-10-21", "2025-04-01-preview"})
FILTER_MESSAGE: Final = (
    "Your request was rejected as a result of our safety system. Your prompt may contain text "
    "that is not allowed by our safety system."
)


class AzureState(fake_openai.OpenAIState):
    provider = "azure-openai"

    def presented_key(self, request: web.Request) -> str | None:
        return request.headers.get("api-key")

    def render_failure(
        self, failure: ScriptedFailure, rec: RecordedRequest, request: web.Request
    ) -> web.StreamResponse | None:
        if failure.kind == "bad_key":
            return azure_error(
                401, "401", "Access denied due to invalid subscription key or wrong API "
                "endpoint. Make sure to provide a valid key for an active subscription and use a "
                "correct regional API endpoint for your resource.",
            )  # fmt: skip
        if failure.kind == "server_error":
            return azure_error(500, "InternalServerError", "The service is temporarily unable "
                               "to process your request. Please try again later.")  # fmt: skip
        if failure.kind == "content_policy":
            body = {
                "error": {
                    "code": "content_policy_violation",
                    "message": failure.message or FILTER_MESSAGE,
                    "inner_error": {
                        "code": "ResponsibleAIPolicyViolation",
                        "content_filter_results": {
                            "sexual": {"filtered": True, "severity": "high"},
                            "violence": {"filtered": False, "severity": "safe"},
                        },
                    },
                }
            }
            return json_response(body, 400)
        return super().render_failure(failure, rec, request)


STATE: Final = web.AppKey("pixgate_fake_azure_openai", AzureState)


def state(app: web.Application) -> AzureState:
    return app[STATE]


def create_app(*, expected_key: str | None = None, hang_seconds: float = 30.0) -> web.Application:
    st = AzureState(expected_key=expected_key, hang_seconds=hang_seconds)
    app = make_app(st, STATE)
    app[fake_openai.STATE] = st  # the OpenAI handlers find their state under their own key
    base = "/openai/deployments/{deployment}/images"
    app.router.add_post(f"{base}/generations", _deployment(fake_openai.generations_handler),
                        name="generations")  # fmt: skip
    app.router.add_post(f"{base}/edits", _deployment(fake_openai.edits_handler), name="edits")
    app.router.add_get("/files/{name}", fake_openai.file_handler, name="files")
    return app


def azure_error(status: int, code: str, message: str) -> web.Response:
    return json_response({"error": {"code": code, "message": message}}, status)


def _deployment(handler: fake_openai.Handler) -> fake_openai.Handler:
    async def serve(request: web.Request) -> web.StreamResponse:
        st = state(request.app)
        version = request.query.get("api-version")
        if version not in API_VERSIONS:
            st.reject(f"api-version {version!r}")
            return azure_error(
                404 if version else 400, "404" if version else "MissingApiVersionParameter",
                "Resource not found" if version else "The api-version query parameter "
                "(?api-version=) is required for all requests.",
            )  # fmt: skip
        rec = record_of(request)
        deployment = request.match_info["deployment"]
        if isinstance(rec.json, dict):
            rec.json.setdefault("model", deployment)
        elif rec.parts and rec.field("model") is None:
            rec.parts.append(Part("model", None, None, deployment.encode()))
        return await handler(request)

    return serve
