"""The gateway's directory (pure): retained topics in, camera → node, trusted URL, availability out."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time

import pytest

from livesight.fleet import topics
from livesight.gateway.directory import Directory, Trust

P = "ls"
KEY = "fleet-secret-0123456789"


_SEQ = itertools.count(1)


def info(
    camera: str,
    node: str,
    url: str = "ws://127.0.0.1:1",
    state: str = "live",
    wall: float = 1.0,
    key: str | None = None,
    *,
    issued: float | None = None,
    boot: str = "run1",
    seq: int | None = None,
) -> bytes:
    """An announcement as a node publishes it: issued now (unless given), the next count of its run."""
    ci = topics.CameraInfo(
        camera,
        node,
        url,
        "tiny-random",
        state,
        "",
        wall,
        issued=time.time() if issued is None else issued,
        boot=boot,
        seq=next(_SEQ) if seq is None else seq,
    )
    return json.dumps(topics.encode_camera_info(ci, key=key)).encode()


def test_config_owners_until_nodes_announce() -> None:
    d = Directory({"door": "a", "gate": "b"}, nodes=["a", "b"], trust=Trust(key=KEY))
    assert d.cameras() == ["door", "gate"]
    e = d.entry("door")
    assert (e.node, e.available, e.state, e.url) == ("a", False, "unavailable", None)
    assert d.apply(P, "ls/nodes/a/available", b"online")
    assert d.apply(P, "ls/door/info", info("door", "a", "ws://10.0.0.1:8765", key=KEY))
    e = d.entry("door")
    assert (e.node, e.available, e.state, e.url) == ("a", True, "live", "ws://10.0.0.1:8765")
    assert d.url_source("a") == "announced"
    assert not d.entry("gate").available


def test_info_overrides_the_config_owner_and_newest_url_wins() -> None:
    d = Directory({"door": "a"}, nodes=["a", "b"], trust=Trust(key=KEY))
    d.apply(P, "ls/door/info", info("door", "b", "ws://old:1", wall=1.0, key=KEY))
    d.apply(P, "ls/extra/info", info("extra", "b", "ws://new:2", wall=2.0, key=KEY))
    assert d.owner("door") == "b"
    assert d.url("b") == "ws://new:2"
    assert d.cameras() == ["door", "extra"]  # a camera only the directory knows is listed after the config's
    assert d.cameras_of("b") == {"door", "extra"} and d.cameras_of("a") == set()
    d.apply(P, "ls/extra/info", b"")  # the newest announcement cleared: the older one's URL again
    assert d.url("b") == "ws://old:1" and d.cameras() == ["door"]


def test_a_node_address_comes_from_the_config_never_from_an_unsigned_announcement() -> None:
    """Anyone who can publish on the broker can announce a camera: without the fleet's signature the announcement is
    ignored whole (owner, state, address); with a configured address the announced one is never used."""
    trust = Trust(urls={"a": "ws://node-a.internal:8765"}, template="ws://{node}.nodes:8765", key=KEY)
    d = Directory({"door": "a", "gate": "b"}, nodes=["a", "b"], trust=trust)
    assert d.url("a") == "ws://node-a.internal:8765" and d.url("b") == "ws://b.nodes:8765"
    assert not d.apply(P, "ls/door/info", info("door", "evil", "ws://10.6.6.6:1"))  # unsigned
    assert not d.apply(P, "ls/door/info", info("door", "evil", "ws://10.6.6.6:1", key="another-key-123456"))
    assert d.untrusted == 2 and d.owner("door") == "a" and "evil" not in d.nodes
    assert d.apply(P, "ls/door/info", info("door", "a", "ws://10.6.6.6:1", key=KEY))  # signed: state and owner count…
    assert d.url("a") == "ws://node-a.internal:8765" and d.url_source("a") == "config"  # …the config's address wins


def test_without_a_credential_only_loopback_announcements_give_an_address() -> None:
    d = Directory({"door": "a", "gate": "b"}, nodes=["a", "b"])
    d.apply(P, "ls/door/info", info("door", "a", "ws://127.0.0.1:9000"))
    d.apply(P, "ls/gate/info", info("gate", "b", "ws://10.0.0.2:9000"))
    assert d.url("a") == "ws://127.0.0.1:9000"
    assert d.url("b") is None and d.url_source("b") == "none"  # a single-machine fleet only
    assert d.owner("gate") == "b" and d.infos["gate"].state == "live"


def test_offline_and_cleared_and_garbage() -> None:
    d = Directory({"door": "a"}, nodes=["a"])
    d.apply(P, "ls/nodes/a/available", b"online")
    d.apply(P, "ls/door/info", info("door", "a"))
    v = d.version
    assert not d.apply(P, "ls/nodes/a/available", b"online")  # no change, no new version
    assert d.version == v
    assert d.apply(P, "ls/nodes/a/available", b"offline")
    e = d.entry("door")
    assert not e.available and e.state == "unavailable" and "offline" in e.reason
    for topic, payload in [
        ("ls/door/info", b"{not json"),
        ("ls/door/info", info("yard", "a")),  # names another camera than its topic
        ("ls/door/info", json.dumps({"type": "camera.info", "camera": "door"}).encode()),
        ("ls/door/info", b"x" * 10_000),
    ]:
        assert not d.apply(P, topic, payload)
    assert d.ignored == 4
    assert not d.apply(P, "other/door/info", info("door", "a"))  # another prefix
    assert d.apply(P, "ls/door/info", b"")  # cleared: back to the config's owner, no URL
    assert d.url("a") is None


def test_signature_covers_every_field() -> None:
    ci = topics.CameraInfo("door", "a", "ws://10.0.0.1:1", "m", "live", "", 5.0)
    signed = topics.decode_camera_info(json.dumps(topics.encode_camera_info(ci, key=KEY)).encode())
    assert signed is not None and topics.verify_camera_info(signed, KEY)
    assert not topics.verify_camera_info(signed, "another-key-123456")
    ci = topics.CameraInfo("door", "a", "ws://10.0.0.1:1", "m", "live", "", 5.0, issued=7.0, boot="r1", seq=3)
    fields = (("url", "ws://10.6.6.6:1"), ("node", "b"), ("state", "failed"), ("wall_time", 6.0))
    for field, value in (*fields, ("issued", 1e10), ("boot", "r2"), ("seq", 4)):
        obj = json.loads(json.dumps(topics.encode_camera_info(ci, key=KEY)))
        obj[field] = value  # the signature of the original, a field changed
        forged = topics.decode_camera_info(json.dumps(obj).encode())
        assert forged is not None and not topics.verify_camera_info(forged, KEY), field


def test_lookups_are_indexed() -> None:
    """5,000 cameras on 80 nodes: each lookup touches the camera's node only (entry and url need no scan)."""
    owners = {f"c{i}": f"n{i % 80}" for i in range(5000)}
    d = Directory(owners, nodes=[f"n{i}" for i in range(80)])
    for cam, node in owners.items():
        d.apply(P, f"ls/{cam}/info", info(cam, node, f"ws://127.0.0.1:{1000 + int(node[1:])}"))
    assert len(d.cameras_of("n7")) == 63
    assert d.url("n7") == "ws://127.0.0.1:1007" and d.entry("c7").url == "ws://127.0.0.1:1007"
    assert d.cameras() is d.cameras()  # cached between changes


async def test_wait_changed_wakes_on_a_change() -> None:
    d = Directory({}, nodes=[])
    v = d.version
    waiter = asyncio.create_task(d.wait_changed(v))
    await asyncio.sleep(0)
    assert not waiter.done()
    d.set_node("a", True)
    assert await asyncio.wait_for(waiter, 1) == v + 1


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def fleet(clock: Clock, key: str | None = KEY) -> Directory:
    return Directory({"door": "a"}, nodes=["a", "b"], trust=Trust(key=key, max_age_s=120.0), clock=clock)


def test_a_signed_announcement_must_be_fresh() -> None:
    """Issued within max_age_s (+ the clock skew) of the gateway's clock, and not from the future beyond the skew."""
    c = Clock()
    d = fleet(c)
    skew = topics.CLOCK_SKEW_S
    assert d.apply(P, "ls/door/info", info("door", "a", "ws://10.0.0.1:1", key=KEY, issued=c.t - 120 - skew + 1))
    assert not d.apply(P, "ls/door/info", info("door", "b", "ws://10.0.0.2:1", key=KEY, issued=c.t - 120 - skew - 1))
    assert not d.apply(P, "ls/door/info", info("door", "b", "ws://10.0.0.2:1", key=KEY, issued=c.t + skew + 1))
    assert d.apply(P, "ls/door/info", info("door", "b", "ws://10.0.0.2:1", key=KEY, issued=c.t + skew - 1))
    assert d.refused == {"stale": 1, "future": 1}
    undated = topics.CameraInfo("door", "a", "ws://10.0.0.1:1", "m", "live", "", 1.0, boot="run1", seq=10**6)
    assert math.isnan(undated.issued)
    assert not d.apply(P, "ls/door/info", json.dumps(topics.encode_camera_info(undated, key=KEY)).encode())
    assert d.refused["undated"] == 1 and d.owner("door") == "b"


def test_a_replayed_counter_is_refused_and_a_restart_is_taken() -> None:
    c = Clock()
    d = fleet(c)
    first = info("door", "a", "ws://10.0.0.1:1", key=KEY, issued=c.t, boot="run1", seq=5)
    assert d.apply(P, "ls/door/info", first)
    stopped = info("door", "a", "ws://10.0.0.1:1", "unavailable", key=KEY, issued=c.t + 1, boot="run1", seq=6)
    assert d.apply(P, "ls/door/info", stopped)
    assert not d.apply(P, "ls/door/info", first)  # recorded, replayed within the window: its counter was taken
    again = info("door", "a", "ws://10.0.0.1:1", "live", key=KEY, issued=c.t + 2, boot="run1", seq=6)
    assert not d.apply(P, "ls/door/info", again)  # the same count with other content: a forgery of a replay
    assert d.refused == {"replayed": 2} and d.infos["door"].state == "unavailable"
    assert not d.apply(P, "ls/door/info", stopped)  # the very message taken, again (a retained copy): no change
    assert d.refused == {"replayed": 2}
    # the node restarts (a new run, its counter from 1), maybe elsewhere: taken
    c.t += 30
    moved = info("door", "a", "ws://10.0.0.9:1", key=KEY, issued=c.t, boot="run2", seq=1)
    assert d.apply(P, "ls/door/info", moved) and d.url("a") == "ws://10.0.0.9:1"
    assert not d.apply(P, "ls/door/info", first)  # the run it left: a replay, though not yet stale
    assert d.refused == {"replayed": 3}
    c.t += 200  # later: the old copy is stale as well
    assert not d.apply(P, "ls/door/info", info("door", "a", "ws://10.0.0.1:1", key=KEY, issued=c.t - 230, seq=99))
    assert d.refused["stale"] == 1 and d.url("a") == "ws://10.0.0.9:1"


def test_a_periodic_re_announcement_refreshes_without_a_change() -> None:
    c = Clock()
    d = fleet(c)
    assert d.apply(P, "ls/door/info", info("door", "a", key=KEY, issued=c.t, seq=1))
    v = d.version
    c.t += 60
    assert not d.apply(P, "ls/door/info", info("door", "a", key=KEY, issued=c.t, seq=2))  # nothing new to tell
    assert d.version == v and d.infos["door"].seq == 2 and not d.refused


@pytest.mark.parametrize("key", [None, KEY])
def test_freshness_holds_without_a_credential_too_but_undated_is_taken_there(key: str | None) -> None:
    c = Clock()
    d = fleet(c, key)
    old = topics.CameraInfo("door", "a", "ws://127.0.0.1:1", "m", "live", "", 1.0)  # an older node: no issue time
    taken = d.apply(P, "ls/door/info", json.dumps(topics.encode_camera_info(old, key=key)).encode())
    assert taken == (key is None)
    assert not d.apply(P, "ls/door/info", info("door", "a", key=key, issued=c.t - 1000))
    assert d.refused["stale"] == 1
    if key is None:  # an older node's next state: undated, uncounted, taken as before
        later = topics.CameraInfo("door", "a", "ws://127.0.0.1:1", "m", "failed", "", 2.0)
        assert d.apply(P, "ls/door/info", json.dumps(topics.encode_camera_info(later)).encode())
