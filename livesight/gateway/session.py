"""One client of the gateway: the daemon's own WebSocket session (web/ws_session.py, around the session core of
contract/session.py) over a `FleetService` (fleet_service.py) that carries its requests to the cameras' nodes.

What the gateway adds to the protocol (docs/fleet.md): `session.created` lists every camera of the fleet with its
`node` (a camera whose node is not connected has state `unavailable`); `query` / `watch.add` for such a camera get an
`error` `camera_unavailable` at once; a query running on a node that goes away ends like any failed answer
(`response.done` status `failed`, or `error camera_unavailable` if it had not started); when a node goes away its
cameras get a `camera.state` `unavailable`, when it comes back their real state, and the session's watches on it are
added again (the client does nothing); `stats` from the nodes are merged into one fleet-wide `stats` event.

Tasks (one TaskGroup per client, all named): one link per node (`gw:<session>:link:<node>`), a follower that opens
links to nodes that appear later (`gw:<session>:nodes`), and the session's own (reader, writer, events, queries).
Overflow policy `disconnect_client`, as in the daemon: nothing a node sends ever waits for a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from livesight.contract.session import ClientLimits, SessionHooks
from livesight.gateway.directory import Directory
from livesight.gateway.fleet_service import FleetService
from livesight.gateway.upstream import NodeLink
from livesight.web.ws_endpoint import WSConn
from livesight.web.ws_session import ClientSession

if TYPE_CHECKING:
    from livesight.gateway.server import GatewayMetrics

log = logging.getLogger(__name__)

FIRST_CONNECT_WAIT_S = 3.0  # session.created waits this long at most for the links to the online nodes


class GatewaySession:
    def __init__(
        self,
        *,
        directory: Directory,
        conn: WSConn,
        session_id: str,
        queue_size: int,
        limits: ClientLimits,
        metrics: GatewayMetrics,
        max_message_bytes: int,
        token: str | None,
    ) -> None:
        self.directory = directory
        self.session_id = session_id
        self.metrics = metrics
        self.fleet = FleetService(
            directory,
            session_id=session_id,
            token=token,
            on_link_up=lambda node: metrics.upstream_connects.labels(node).inc(),
            on_unavailable=metrics.unavailable.inc,
            on_response_id_clash=metrics.response_id_clashes.inc,
        )
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
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def dropped_slow(self) -> bool:
        return self.client.dropped_slow

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            for node in self.directory.node_names():
                self._start_link(node)
            with contextlib.suppress(TimeoutError):  # then the slow nodes' cameras start as unavailable
                async with asyncio.timeout(FIRST_CONNECT_WAIT_S):
                    for link in list(self.fleet.links.values()):
                        await link.attempted.wait()
            self._tasks.append(tg.create_task(self._follow_nodes(), name=f"gw:{self.session_id}:nodes"))
            try:
                await self.client.run()
            finally:
                for t in self._tasks:
                    t.cancel()

    def _start_link(self, node: str) -> None:
        if node in self.fleet.links or self._tg is None:
            return
        link = NodeLink(node, self.directory, self.fleet, token=self.fleet.token)
        self.fleet.links[node] = link
        self._tasks.append(self._tg.create_task(link.run(), name=f"gw:{self.session_id}:link:{node}"))

    async def _follow_nodes(self) -> None:
        """Nodes that appear in the directory later (not in the config) get a link too."""
        version = self.directory.version
        while True:
            version = await self.directory.wait_changed(version)
            for node in self.directory.node_names():
                self._start_link(node)
