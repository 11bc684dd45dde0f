"""One gateway client never sees two live responses share an id, whatever the nodes send.

Daemons mint response ids unique across the fleet (`livesight/ids.py`), so a clash means an old or buggy node. The
guard keeps, per client session, the live response ids (created, not yet done) and the node each came from. When a
node announces a response whose id another node's live response already holds, the second response gets a fresh id
on its way to the client (its created, deltas and done alike), and `on_clash` is told (the session logs the clash
with both nodes and counts it).

    guard = ResponseIdGuard(on_clash=...)
    out_id = guard.outgoing(node, event_type, response_id)   # the id the client must see

Bounded: at most `max_live` live ids per client (the oldest are forgotten first; a response that never ends — its
node died mid-answer — is forgotten with its node, `forget_node`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from livesight.ids import new_id

MAX_LIVE = 4096


class ResponseIdGuard:
    def __init__(self, *, max_live: int = MAX_LIVE, on_clash: Callable[[str, str, str], None] | None = None) -> None:
        self.max_live = max_live
        self._on_clash = on_clash  # (response id, node holding it, node that sent it again)
        self._live: OrderedDict[str, str] = OrderedDict()  # id the client sees → node
        self._renamed: dict[tuple[str, str], str] = {}  # (node, node's id) → id the client sees
        self._origin: dict[str, tuple[str, str]] = {}  # the other way round
        self.clashes = 0

    def __len__(self) -> int:
        return len(self._live)

    def outgoing(self, node: str, event_type: str, response_id: str) -> str:
        """The id under which the client sees this event of `node`'s response `response_id`."""
        key = (node, response_id)
        out = self._renamed.get(key, response_id)
        if event_type == "response.created" and out == response_id:
            holder = self._live.get(response_id)
            if holder is not None and holder != node:
                out = new_id("resp_")
                self._renamed[key] = out
                self._origin[out] = key
                self.clashes += 1
                if self._on_clash is not None:
                    self._on_clash(response_id, holder, node)
            self._remember(out, node)
        elif event_type == "response.done":
            if self._live.get(out) == node:
                del self._live[out]
            if self._renamed.pop(key, None) is not None:
                del self._origin[out]
        return out

    def forget_node(self, node: str) -> None:
        """The node's link went down: its responses will never end here."""
        for rid in [r for r, n in self._live.items() if n == node]:
            del self._live[rid]
        for key in [k for k in self._renamed if k[0] == node]:
            del self._origin[self._renamed.pop(key)]

    def _remember(self, out: str, node: str) -> None:
        self._live[out] = node
        self._live.move_to_end(out)
        while len(self._live) > self.max_live:
            old, _ = self._live.popitem(last=False)
            key = self._origin.pop(old, None)
            if key is not None:
                del self._renamed[key]
