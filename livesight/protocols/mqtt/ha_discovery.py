"""Home Assistant MQTT discovery payloads: pure functions (no I/O). The publisher: ha_publisher.py.

Per camera, one HA device with (topics: `D` = discovery prefix, `N` = node id, `P` = mqtt.prefix, `CAM` = camera):

- `image`  (`D/image/N/CAM_scene/config`): `P/CAM/image` holds the JPEG bytes of the latest scene's first frame
- `sensor` (`D/sensor/N/CAM_message/config`): `P/CAM/text` holds the JSON of the last answer or proactive message;
  the state is its text cut to 255 characters, the whole JSON goes in the attributes
- `event`  (`D/event/N/CAM_scene_change/config`): `P/CAM/scene` (`scene.change`) → event type `scene_change`
- `text`   (`D/text/N/CAM_ask/config`): command topic `P/CAM/query`, the question typed in HA
- `binary_sensor` per watch (`D/binary_sensor/N/CAM_watch_K/config`): `P/CAM/watch/K/state` is ON while the watch
  holds (its last answer was yes), else OFF

Every payload has a `unique_id`, the camera's `device` block and the daemon's availability topic (`P/available`;
`P/nodes/NODE/available` in a fleet, where N also names the node). An empty
retained payload on a config topic removes the entity (a removed watch, a camera no longer configured).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from livesight import __version__

STATE_MAX = 255  # HA refuses longer sensor states: the whole text goes in the attributes
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")

# The keys HA needs per component to set an entity up (beyond name/unique_id/device/availability).
REQUIRED = {
    "image": ("image_topic", "content_type"),
    "sensor": ("state_topic",),
    "event": ("state_topic", "event_types"),
    "text": ("command_topic",),
    "binary_sensor": ("state_topic", "payload_on", "payload_off"),
}


@dataclass(frozen=True, slots=True)
class Naming:
    discovery_prefix: str  # "homeassistant"
    base: str  # mqtt.prefix, e.g. "livesight"
    node_id: str  # one per daemon: identifies its entities (from the prefix, and the fleet node when in a fleet)
    availability: str = ""  # the daemon's availability topic (default `P/available`)

    @classmethod
    def of(
        cls, discovery_prefix: str, base: str, *, node: str | None = None, availability: str | None = None
    ) -> Naming:
        """In a fleet every node has its own entity ids (so one node never clears another's as leftovers)
        and its own availability topic (`P/nodes/NODE/available`)."""
        base = base.rstrip("/")
        node_id = safe_id(base if node is None else f"{base}_{node}")
        return cls(discovery_prefix.rstrip("/"), base, node_id, availability or f"{base}/available")

    @property
    def status_topic(self) -> str:
        """HA's birth/last will: `online` when HA (re)starts → discovery is published again."""
        return f"{self.discovery_prefix}/status"

    @property
    def config_filter(self) -> str:
        """Every config topic of this node (to find and clear retained leftovers of earlier runs)."""
        return f"{self.discovery_prefix}/+/{self.node_id}/+/config"

    def config_topic(self, component: str, object_id: str) -> str:
        return f"{self.discovery_prefix}/{component}/{self.node_id}/{object_id}/config"

    def image_topic(self, camera: str) -> str:
        return f"{self.base}/{camera}/image"

    def text_topic(self, camera: str) -> str:
        return f"{self.base}/{camera}/text"

    def watch_state_topic(self, camera: str, watch_id: str) -> str:
        return f"{self.base}/{camera}/watch/{watch_key(watch_id)}/state"

    def is_own_config(self, topic: str) -> bool:
        parts = topic.split("/")
        return (
            len(parts) == 5 and parts[0] == self.discovery_prefix and parts[2] == self.node_id and parts[4] == "config"
        )


def safe_id(s: str) -> str:
    return _UNSAFE.sub("_", s).strip("_") or "livesight"


def watch_key(watch_id: str) -> str:
    """A watch id (e.g. `sess_1a2b3:w1`) as a topic/object-id-safe, stable key."""
    return "w" + hashlib.sha1(watch_id.encode()).hexdigest()[:12]


def device(n: Naming, camera: str) -> dict[str, Any]:
    return {
        "identifiers": [f"livesight_{n.node_id}_{camera}"],
        "name": f"livesight {camera}",
        "manufacturer": "livesight",
        "model": "live video assistant (Qwen2.5-VL + DTD)",
        "sw_version": __version__,
    }


def _common(n: Naming, camera: str, object_id: str, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "unique_id": f"livesight_{n.node_id}_{object_id}",
        "device": device(n, camera),
        "availability": [{"topic": n.availability, "payload_available": "online", "payload_not_available": "offline"}],
    }


def camera_configs(n: Naming, camera: str) -> dict[str, dict[str, Any]]:
    """Config topic → payload of the camera's image, sensor, event and text entities."""
    cam = safe_id(camera)
    out: dict[str, dict[str, Any]] = {}
    oid = f"{cam}_scene"
    out[n.config_topic("image", oid)] = {
        **_common(n, camera, oid, "Scene"),
        "image_topic": n.image_topic(camera),
        "content_type": "image/jpeg",
    }
    oid = f"{cam}_message"
    out[n.config_topic("sensor", oid)] = {
        **_common(n, camera, oid, "Last message"),
        "state_topic": n.text_topic(camera),
        "value_template": f"{{{{ value_json.text[:{STATE_MAX}] }}}}",
        "json_attributes_topic": n.text_topic(camera),
        "icon": "mdi:message-text",
    }
    oid = f"{cam}_scene_change"
    out[n.config_topic("event", oid)] = {
        **_common(n, camera, oid, "Scene change"),
        "state_topic": f"{n.base}/{camera}/scene",
        "event_types": ["scene_change"],
        "value_template": (
            '{{ {"event_type": "scene_change", "scene": value_json.scene, "pts": value_json.pts, '
            '"thumbnail": value_json.thumbnail} | tojson }}'
        ),
    }
    oid = f"{cam}_ask"
    out[n.config_topic("text", oid)] = {
        **_common(n, camera, oid, "Ask"),
        "command_topic": f"{n.base}/{camera}/query",
        "max": STATE_MAX,
        "mode": "text",
        "icon": "mdi:chat-question",
    }
    return out


def watch_config(n: Naming, camera: str, watch_id: str, text: str) -> tuple[str, dict[str, Any]]:
    oid = f"{safe_id(camera)}_watch_{watch_key(watch_id)}"
    label = text if len(text) <= 60 else text[:59] + "…"
    return n.config_topic("binary_sensor", oid), {
        **_common(n, camera, oid, f"Watch: {label}"),
        "state_topic": n.watch_state_topic(camera, watch_id),
        "payload_on": "ON",
        "payload_off": "OFF",
        "icon": "mdi:eye",
    }


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def text_payload(*, text: str, kind: str, camera: str, question: str | None, wall_time: float) -> bytes:
    """The sensor's state topic: the whole message (attributes) whose `text` HA shows cut to 255 characters."""
    return encode(
        {"text": text, "kind": kind, "camera": camera, "question": question, "wall_time": round(wall_time, 3)}
    )
