"""The fleet's MQTT topics and payloads (pure; documented in docs/protocol.md and docs/fleet.md).

  P/nodes/NODE/available   "online" (retained) while the node's bridge is connected; its last will "offline"
  P/CAM/info               retained JSON `camera.info`: owner node, the node's WebSocket URL, model, camera state

Together they are the fleet's directory: a gateway subscribes to both and knows, for every camera, which node runs it,
where to reach that node, and whether it is up. Liveness is the broker's: a node that dies without saying goodbye is
declared `offline` by its last will after 1.5 x its MQTT keepalive.

Anyone who may publish on the broker can write these topics, so a `camera.info` carries `sig`, an HMAC-SHA256 of its
other fields keyed with the fleet's credential (`fleet.node_token`), when the node has one: a gateway holding the same
credential uses only what it can verify (`verify_camera_info`), and takes node addresses from its config first.

A signed copy recorded on the broker would still verify later (a replay of a node that has gone or moved), so every
announcement also signs its freshness: `issued` (the node's clock when it published), `boot` (a random name of the
node's run) and `seq` (the run's announcement counter, increasing). A node re-announces every camera every
`fleet.announce_interval_s`; a gateway refuses one issued longer ago than `fleet.announce_max_age_s` (default twice the
interval) or later than now, beyond CLOCK_SKEW_S either way, and one whose counter does not move past the last it took
from the same run (gateway/directory.py).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from dataclasses import dataclass
from typing import Any

CAMERA_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # camera and node ids (config.Identifier)

ONLINE = b"online"
OFFLINE = b"offline"
MAX_INFO_BYTES = 4096  # a camera.info payload larger than this is ignored
SIG_PREFIX = "hmac-sha256:"
CLOCK_SKEW_S = 30.0  # the clocks of a node and the gateway may differ this much either way
MAX_SEQ = 2**53  # an announcement counter beyond this is malformed (JSON numbers stay exact below it)
BOOT_PATTERN = re.compile(r"^[A-Za-z0-9]{1,32}$")


def node_available_topic(prefix: str, node: str) -> str:
    return f"{prefix}/nodes/{node}/available"


def camera_info_topic(prefix: str, camera: str) -> str:
    return f"{prefix}/{camera}/info"


def camera_query_topic(prefix: str, camera: str) -> str:
    return f"{prefix}/{camera}/query"


@dataclass(frozen=True, slots=True)
class CameraInfo:
    camera: str
    node: str
    url: str  # the node's WebSocket URL
    model: str
    state: str
    reason: str
    wall_time: float
    random_weights: bool = False  # the node's model has random weights (the tiny test model)
    issued: float = math.nan  # when the node published it (its clock, Unix seconds; NaN: undated, an older node)
    boot: str = ""  # a random name of the node's run (a restart takes a new one)
    seq: int = 0  # the run's announcement counter (increases with every announcement of the node)
    sig: str | None = None  # as received: SIG_PREFIX + hex HMAC of the other fields (None: unsigned)

    def same_news(self, other: CameraInfo) -> bool:
        """The same announcement content, whatever its freshness (a periodic re-announcement of what was known)."""
        return (self.camera, self.node, self.url, self.model, self.state, self.reason, self.random_weights) == (
            other.camera,
            other.node,
            other.url,
            other.model,
            other.state,
            other.reason,
            other.random_weights,
        )


def encode_camera_info(info: CameraInfo, *, key: str | None = None) -> dict[str, Any]:
    """The payload; with `key` (the fleet's credential) signed (`sig`)."""
    out = _unsigned(info)
    if key is not None:
        out["sig"] = _sign(out, key)
    return out


def verify_camera_info(info: CameraInfo, key: str) -> bool:
    """Did a holder of `key` publish exactly this info? (constant-time comparison)"""
    if info.sig is None:
        return False
    return hmac.compare_digest(info.sig.encode(), _sign(_unsigned(info), key).encode())


def _sign(unsigned: dict[str, Any], key: str) -> str:
    body = json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()
    return SIG_PREFIX + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def _unsigned(info: CameraInfo) -> dict[str, Any]:
    return {
        "type": "camera.info",
        "camera": info.camera,
        "node": info.node,
        "url": info.url,
        "model": info.model,
        "random_weights": info.random_weights,
        "state": info.state,
        "reason": info.reason,
        "wall_time": round(info.wall_time, 6) if math.isfinite(info.wall_time) else None,
        "issued": round(info.issued, 6) if math.isfinite(info.issued) else None,
        "boot": info.boot,
        "seq": info.seq,
    }


def decode_camera_info(payload: bytes) -> CameraInfo | None:
    """A retained camera.info payload, or None when it is empty (cleared), too large or malformed."""
    if not payload or len(payload) > MAX_INFO_BYTES:
        return None
    try:
        obj = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if not isinstance(obj, dict) or obj.get("type") != "camera.info":
        return None
    fields = {k: obj.get(k) for k in ("camera", "node", "url", "model", "state", "reason")}
    if not all(isinstance(v, str) for v in fields.values()):
        return None
    if not CAMERA_PATTERN.match(fields["camera"]) or not CAMERA_PATTERN.match(fields["node"]):
        return None
    if not fields["url"].startswith(("ws://", "wss://")):
        return None
    boot, seq = obj.get("boot", ""), obj.get("seq", 0)
    if not isinstance(boot, str) or (boot and not BOOT_PATTERN.match(boot)):
        return None
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < MAX_SEQ:
        return None
    sig = obj.get("sig")
    return CameraInfo(
        wall_time=_time(obj.get("wall_time")),
        random_weights=obj.get("random_weights") is True,
        issued=_time(obj.get("issued")),
        boot=boot,
        seq=seq,
        sig=sig if isinstance(sig, str) and len(sig) <= 128 else None,
        **fields,
    )


def _time(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else math.nan


def parse_topic(prefix: str, topic: str) -> tuple[str, str] | None:
    """('node', NODE) for P/nodes/NODE/available, ('info', CAM) for P/CAM/info, else None."""
    head = prefix + "/"
    if not topic.startswith(head):
        return None
    parts = topic[len(head) :].split("/")
    if len(parts) == 3 and parts[0] == "nodes" and parts[2] == "available" and CAMERA_PATTERN.match(parts[1]):
        return ("node", parts[1])
    if len(parts) == 2 and parts[1] == "info" and CAMERA_PATTERN.match(parts[0]):
        return ("info", parts[0])
    return None


def default_node_url(host: str, port: int, hostname: str) -> str:
    """ws://HOST:PORT where HOST is the listening address, or this machine's name when listening on all of them."""
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = hostname
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"ws://{host}:{port}"
