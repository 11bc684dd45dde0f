"""One client of the gateway: the daemon's own WebSocket session (protocols/web/ws_session.py, around the session core
of protocols/contract/session.py) over a `FleetService` (fleet_service.py) that carries its requests to the cameras'
nodes over the gateway's shared links (hub.py).

What the gateway adds to the protocol (docs/fleet.md): `session.created` lists every camera of the fleet with its
`node` (a camera whose node is not connected has state `unavailable`); `query` / `watch.add` for such a camera get an
`error` `camera_unavailable` at once; a query running on a node that goes away ends `response.done` `failed` with
code `camera_unavailable` (or `error camera_unavailable` if it had not started); when a node goes away its cameras
get a `camera.state` `unavailable`, when it comes back their real state, and the session's watches on it are added
again (the client does nothing); `stats` is the fleet's (stats.py).

Tasks: the session's own (reader, writer, events, queries: protocols/web/ws_session.py); the links are the gateway's,
not the session's. Overflow policy `disconnect_client`, as in the daemon: nothing a node sends ever waits for a client.
"""

from __future__ import annotations

import logging
from typing import Protocol

from prometheus_client import Counter

from livesight.gateway.fleet_service import FleetService
from livesight.gateway.hub import UpstreamHub
from livesight.protocols.contract.session import ClientLimits, SessionHooks
from livesight.protocols.web.metrics import ServerMetrics
from livesight.protocols.web.ws_endpoint import WSConn
from livesight.protocols.web.ws_session import ClientSession

log = logging.getLogger(__name__)

FIRST_CONNECT_WAIT_S = 3.0  # a session opened while the gateway starts waits this long at most for the links


class SessionMetrics(Protocol):
    """What a session counts into (server.py's GatewayMetrics is the one there is): the server sits above its
    sessions and the session knows its metrics only by this, so the two modules import one way."""

    @property
    def server(self) -> ServerMetrics: ...

    @property
    def response_id_clashes(self) -> Counter: ...


class GatewaySession:
    def __init__(
        self,
        *,
        hub: UpstreamHub,
        conn: WSConn,
        session_id: str,
        queue_size: int,
        limits: ClientLimits,
        metrics: SessionMetrics,
        max_message_bytes: int,
    ) -> None:
        self.hub = hub
        self.session_id = session_id
        self.fleet = FleetService(hub, session_id=session_id, on_response_id_clash=metrics.response_id_clashes.inc)
        self.client = ClientSession(
            service=self.fleet,  # type: ignore[arg-type]
            conn=conn,
            session_id=session_id,
            queue_size=queue_size,
            limits=limits,
            metrics=metrics.server,
            max_message_bytes=max_message_bytes,
            hooks=SessionHooks(camera_views=self.fleet.camera_views, on_proactive=self.fleet.set_proactive),
        )

    @property
    def dropped_slow(self) -> bool:
        return self.client.dropped_slow

    async def run(self) -> None:
        await self.hub.first_attempts(FIRST_CONNECT_WAIT_S)  # then the slow nodes' cameras start as unavailable
        self.hub.register(self.fleet)
        try:
            await self.client.run()
        finally:
            self.hub.unregister(self.fleet)
