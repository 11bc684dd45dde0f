"""The gateway's directory (pure): retained topics in, camera → node, URL, availability out."""

from __future__ import annotations

import asyncio
import json

from livesight.fleet import topics
from livesight.gateway.directory import Directory

P = "ls"


def info(camera: str, node: str, url: str = "ws://n:1", state: str = "live", wall: float = 1.0) -> bytes:
    return json.dumps(
        topics.encode_camera_info(topics.CameraInfo(camera, node, url, "tiny-random", state, "", wall))
    ).encode()


def test_config_owners_until_nodes_announce() -> None:
    d = Directory({"door": "a", "gate": "b"}, nodes=["a", "b"])
    assert d.cameras() == ["door", "gate"]
    e = d.entry("door")
    assert (e.node, e.available, e.state, e.url) == ("a", False, "unavailable", None)
    assert d.apply(P, "ls/nodes/a/available", b"online")
    assert d.apply(P, "ls/door/info", info("door", "a", "ws://10.0.0.1:8765"))
    e = d.entry("door")
    assert (e.node, e.available, e.state, e.url) == ("a", True, "live", "ws://10.0.0.1:8765")
    assert not d.entry("gate").available


def test_info_overrides_the_config_owner_and_newest_url_wins() -> None:
    d = Directory({"door": "a"}, nodes=["a", "b"])
    d.apply(P, "ls/door/info", info("door", "b", "ws://old:1", wall=1.0))
    d.apply(P, "ls/extra/info", info("extra", "b", "ws://new:2", wall=2.0))
    assert d.owner("door") == "b"
    assert d.url("b") == "ws://new:2"
    assert d.cameras() == ["door", "extra"]  # a camera only the directory knows is listed after the config's


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


async def test_wait_changed_wakes_on_a_change() -> None:
    d = Directory({}, nodes=[])
    v = d.version
    waiter = asyncio.create_task(d.wait_changed(v))
    await asyncio.sleep(0)
    assert not waiter.done()
    d.set_node("a", True)
    assert await asyncio.wait_for(waiter, 1) == v + 1
