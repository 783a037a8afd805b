"""The panel's objects on the app."""

from __future__ import annotations

from aiohttp import web

from .fleet import Fleet
from .logbuffer import LogBuffer
from .recent import RecentStats
from .session import LoginThrottle, Sessions
from .thumbs import Thumbnails

SESSIONS = web.AppKey("pixgate_panel_sessions", Sessions)
THROTTLE = web.AppKey("pixgate_panel_throttle", LoginThrottle)
RECENT = web.AppKey("pixgate_panel_recent", RecentStats)
FLEET = web.AppKey("pixgate_panel_fleet", Fleet)
LOGS: web.AppKey[LogBuffer | None] = web.AppKey("pixgate_panel_logs")
THUMBS = web.AppKey("pixgate_panel_thumbs", Thumbnails)
