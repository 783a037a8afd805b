"""Typed keys for what the aiohttp app and requests carry."""

from __future__ import annotations

from aiohttp import web

from ..runtime.reload import Reloader
from ..runtime.state import GatewayState
from ..settings import Settings

STATE = web.AppKey("pixgate_state", GatewayState)
SETTINGS = web.AppKey("pixgate_settings", Settings)
RELOADER = web.AppKey("pixgate_reloader", Reloader)
