"""Mount the panel on the app (only when PIXGATE_ADMIN_KEY is set)."""

from __future__ import annotations

from aiohttp import web

from ..api.keys import SETTINGS, STATE
from ..state import fleet_board
from . import views
from .fleet import Fleet
from .keys import FLEET, LOGS, RECENT, SESSIONS, THROTTLE, THUMBS
from .recent import RecentStats
from .session import LoginThrottle, Sessions
from .thumbs import Thumbnails


def install(app: web.Application) -> None:
    admin_key = app[SETTINGS].admin_key
    if admin_key is None:
        return  # /admin answers 404 (api/middleware), and nothing is recorded for it
    app[SESSIONS] = Sessions(admin_key)
    app[THROTTLE] = LoginThrottle()
    recent = app[RECENT] = RecentStats()
    name = app[SETTINGS].env.get("PIXGATE_REPLICA_ID", "").strip()
    fleet = app[FLEET] = Fleet(recent, fleet_board(app[STATE].shared), name)
    app[THUMBS] = Thumbnails()
    app[LOGS] = None
    app.cleanup_ctx.append(views.capture_logs)
    app.cleanup_ctx.append(fleet.sharing)
    app.on_shutdown.insert(0, views.end_log_streams)  # before the drain waits for them
    add = app.router
    add.add_get("/admin", views.redirect)
    add.add_get("/admin/", views.page)
    add.add_get("/admin/static/{name}", views.static)
    add.add_post("/admin/login", views.login)
    add.add_post("/admin/logout", views.logout)
    add.add_get("/admin/api/session", views.session_info)
    add.add_get("/admin/api/overview", views.overview)
    add.add_get("/admin/api/logs", views.logs)
    add.add_post("/admin/api/explain", views.explain)
    add.add_post("/admin/api/playground", views.playground)
    add.add_get("/admin/api/thumbs/{name}", views.thumbnail)
