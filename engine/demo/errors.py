"""The demo upstream's OpenAI-style errors: the exception its code raises, the JSON answers."""

from __future__ import annotations

import orjson
from aiohttp import web


class ApiError(Exception):
    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        status: int = 400,
        type_: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status
        self.type = type_


def json_response(payload: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


def error_response(
    message: str, *, status: int, param: str | None = None, type_: str = "invalid_request_error"
) -> web.Response:
    return json_response(
        {"error": {"message": message, "type": type_, "param": param, "code": None}},
        status=status,
    )
