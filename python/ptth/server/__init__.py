"""``ptth.server``: the aggregation server behind ``ptth serve`` (extra ``ptth[server]``).

A Starlette app served by uvicorn. Clients post PTTH updates (raw or the iOS
SDK's JSON) to ``POST /v1/updates``; an update answered 200 is in the
write-ahead log of ``--state`` and survives ``kill -9``; ``POST
/v1/rounds/close`` (admin token) publishes the round's FedAvg model. See
``docs/server.md``.
"""

from __future__ import annotations

from .app import ServerConfig, add_batch, create_app
from .parsing import BadRequest, JsonUpdate, parse_json_update
from .state import State, StateError

__all__ = [
    "BadRequest",
    "JsonUpdate",
    "ServerConfig",
    "State",
    "StateError",
    "add_batch",
    "create_app",
    "parse_json_update",
]
