"""The admin gallery (PIXGATE_ADMIN_KEY): stored images newest first, one, delete.

GET    /admin/files?limit=50&cursor=<id>   list, newest first; `next_cursor` continues
GET    /admin/files/{id}                   one image's metadata
DELETE /admin/files/{id}                   delete one
POST   /admin/files/delete {"ids": [...]}  delete many (at most 1000)
GET    /admin/storage                      backend, health and counters
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..storage.base import Meta, StorageError, is_name
from .errors import ApiError, bad_request
from .jsonio import json_response
from .keys import STATE
from .params import read_json

MAX_PAGE = 200
MAX_DELETE = 1000


def _public(meta: Meta, request: web.Request) -> dict[str, Any]:
    item = {k: v for k, v in meta.items() if v is not None and k != "pending_upload"}
    item["url"] = f"{request.scheme}://{request.host}/files/{meta['id']}"
    if meta.get("pending_upload"):
        item["pending_upload"] = True
    return item


def _unavailable(exc: StorageError) -> ApiError:
    return ApiError(503, f"storage: {exc}", type="server_error", code="storage_unavailable")


async def list_files(request: web.Request) -> web.Response:
    try:
        limit = int(request.query.get("limit", "50"))
    except ValueError:
        raise bad_request("'limit' must be an integer", "limit") from None
    if not 1 <= limit <= MAX_PAGE:
        raise bad_request(f"'limit' must be between 1 and {MAX_PAGE}", "limit")
    cursor = request.query.get("cursor") or None
    if cursor is not None and not is_name(cursor):
        raise bad_request("'cursor' is not an id from an earlier page", "cursor")
    try:
        items, next_cursor = await request.app[STATE].storage.page(cursor, limit)
    except StorageError as exc:
        raise _unavailable(exc) from None
    return json_response(
        {
            "object": "list",
            "data": [_public(m, request) for m in items],
            "next_cursor": next_cursor,
            "has_more": next_cursor is not None,
        }
    )


async def get_file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    try:
        meta = await request.app[STATE].storage.meta(name) if is_name(name) else None
    except StorageError as exc:
        raise _unavailable(exc) from None
    if meta is None:
        raise ApiError(404, f"No such file: {name}", code="file_not_found")
    return json_response(_public(meta, request))


async def delete_file(request: web.Request) -> web.Response:
    return await _delete(request, [request.match_info["name"]])


async def delete_files(request: web.Request) -> web.Response:
    body = await read_json(request)
    ids = body.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise bad_request("'ids' must be a list of file ids", "ids")
    if len(ids) > MAX_DELETE:
        raise bad_request(f"at most {MAX_DELETE} ids at once", "ids")
    return await _delete(request, ids)


async def _delete(request: web.Request, ids: list[str]) -> web.Response:
    bad = [i for i in ids if not is_name(i)]
    if bad:
        raise bad_request(f"not a file id: {bad[0][:80]}", "ids")
    try:
        deleted = await request.app[STATE].storage.delete(ids)
    except StorageError as exc:
        raise _unavailable(exc) from None
    missing = [i for i in ids if i not in deleted]
    return json_response({"deleted": deleted, "not_found": missing})


async def storage_status(request: web.Request) -> web.Response:
    return json_response(request.app[STATE].storage.status())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/admin/files", list_files)
    app.router.add_post("/admin/files/delete", delete_files)
    app.router.add_get("/admin/files/{name}", get_file)
    app.router.add_delete("/admin/files/{name}", delete_file)
    app.router.add_get("/admin/storage", storage_status)
