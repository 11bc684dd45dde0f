"""A camera's memory when a remote model server answers (`model.backend: openai`): what the server will be shown.

    recent images   the newest kept frames as the server gets them (whole frames, or crops of the regions DTD kept:
                    remote_images.py), JPEG-encoded once: bounded by count (model.keep_images) and bytes
                    (model.keep_bytes), oldest dropped first; the newest whole frame is always kept (it is what the
                    crops after it change)
    captions        one line per closed scene, asked of the server at the boundary from that scene's images
                    (bounded by memory.max_captions: older lines are merged pairwise, as the local memory does)

A request is built in a stable order so servers' prefix caches hit: the system prompt (the same for every request),
the camera's captions timeline (oldest first), then the images (oldest first, each after a text part with its time),
then the question. Only the newest `model.images_per_request` images go in; when the oldest of them is a crop, the
whole frame it belongs on goes first.

Threads: frames and scene changes arrive in the model worker's thread; requests are built on the event loop. One lock
guards the state; a request holds references to immutable images, so it is built without copying pixels.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from livesight.config import MemoryConfig, ModelConfig
from livesight.memory.event_log import EventLog
from livesight.memory.remote_images import FeedGate, RemoteImage, data_url, image_tokens, render_images
from livesight.model.backend import GenerationResult, Recalled, RecallRoom
from livesight.types import DTDStep, SceneChange

log = logging.getLogger(__name__)

GUIDE = (
    "You are shown a live camera: captions of its earlier scenes (oldest first), then its latest frames, oldest first. "
    "Each image follows a line with its stream time t in seconds; an image is either the whole view or a crop of a "
    "region that changed, with its position in the whole view. Answer about the latest state unless asked otherwise."
)
CAPTION_PROMPT = "Describe what happened in this scene in one short sentence."
CAPTION_CHARS = 240
TIMELINE_CHARS = 1200  # captions text in one request (the newest lines that fit, ~10): bounds request size over time
RECALL_IMAGE_TOKENS = 400  # what a recalled keyframe (≤ 640 px, memory.timeline.keyframe_px) costs a server, about
RECALL_TEXT_TOKENS = 600  # the recalled lines' share of a question's request
PENDING_CAPTIONS = 8  # closed scenes waiting for their caption (more: the oldest is given up, counted)


def jpeg_tokens(jpeg: bytes, token_px: int) -> int:
    """Estimated image tokens of a JPEG (its size from the header)."""
    with Image.open(io.BytesIO(jpeg)) as im:
        w, h = im.size
    return image_tokens(w, h, token_px)


@dataclass(frozen=True, slots=True)
class RemoteRequest:
    """A chat request for the server, with what it costs (for counters)."""

    messages: list[dict[str, Any]]
    images: int
    image_bytes: int
    image_tokens: int
    new_image_tokens: int = 0  # of images in no earlier request of this camera (the rest a prefix cache may hold)


@dataclass
class Caption:
    scene: int
    start_pts: float
    end_pts: float
    start_wall: float
    text: str

    def line(self) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(self.start_wall))
        return f"[scene {self.scene}, {when}, t={self.start_pts:.0f}-{self.end_pts:.0f}s] {self.text}"


@dataclass(eq=False)
class ClosedScene:
    """A scene that ended and waits for its caption."""

    scene: int
    start_pts: float
    end_pts: float
    start_wall: float
    images: list[RemoteImage]
    attempts: int = 0
    not_before: float = 0.0  # monotonic: retried after a failure no sooner than this


@dataclass
class _Scene:
    scene: int
    start_pts: float
    start_wall: float
    end_pts: float
    started: bool = False
    images: int = 0  # images kept in this scene (captions pick from those still held)


@dataclass
class RemoteCounters:
    frames_kept: int = 0  # frames with news (at least one region kept)
    whole_frames: int = 0
    crops: int = 0
    images_evicted: int = 0
    captions: int = 0
    captions_given_up: int = 0  # failed for good, or the pending list overflowed
    image_tokens_kept: int = 0


class RemoteMemory:
    def __init__(
        self,
        camera: str,
        model: ModelConfig,
        memory: MemoryConfig,
        event_log: EventLog | None = None,
        *,
        start_scene: int = 1,
        token_px: int = 28,
    ) -> None:
        self.camera = camera
        self.cfg = model
        self.max_captions = memory.max_captions
        self.event_log = event_log
        self.token_px = token_px
        self.system_prompt = f"{model.system_prompt.strip()}\n{GUIDE}"
        self._lock = threading.Lock()
        self._recent: deque[RemoteImage] = deque()
        self._recent_bytes = 0
        self._anchor: RemoteImage | None = None  # the newest whole frame
        self._scene = _Scene(start_scene, 0.0, time.time(), 0.0)
        self._gate = FeedGate(model.full_frame_fraction, model.max_crops, model.image_tokens_per_min)
        self._captions: list[Caption] = []
        self._pending: deque[ClosedScene] = deque()
        self._sent: set[int] = set()  # seqs of images already in a request (bounded: pruned to those held)
        self.latest_seq = 0  # the newest image's seq (watch checks run when it moved)
        self.counters = RemoteCounters()
        self.on_pending: Callable[[], None] | None = None  # called (any thread) when a caption is waiting

    # ---- frames and scenes (model worker thread) ---------------------------------------------------------

    def add_step(self, step: DTDStep, tokens: Any = None, prepared: np.ndarray | None = None) -> None:
        """A decided frame: a frame with kept regions becomes images (tokens are not used: no local model)."""
        sc = self._scene
        if not sc.started:
            sc.start_pts = sc.end_pts = step.pts
            sc.start_wall = step.wall_time
            sc.started = True
        sc.end_pts = max(sc.end_pts, step.pts)
        plan = self._gate.plan(step.keep, step.grid_hw, step.pts, whole=step.full)
        if plan is False:
            return
        if prepared is None:
            raise ValueError("the remote memory needs the prepared frame of a step it sends")
        images = render_images(
            prepared,
            plan,  # type: ignore[arg-type]
            scene=sc.scene,
            pts=step.pts,
            wall_time=step.wall_time,
            quality=self.cfg.jpeg_quality,
            token_px=self.token_px,
        )
        k = self.counters
        k.frames_kept += 1
        with self._lock:
            for img in images:
                self._recent.append(img)
                self._recent_bytes += len(img.jpeg)
                k.image_tokens_kept += img.tokens
                if img.whole:
                    self._anchor = img
                    k.whole_frames += 1
                else:
                    k.crops += 1
                sc.images += 1
            while len(self._recent) > self.cfg.keep_images or (
                self._recent_bytes > self.cfg.keep_bytes and len(self._recent) > 1
            ):
                old = self._recent.popleft()
                self._recent_bytes -= len(old.jpeg)
                k.images_evicted += 1
            self.latest_seq = images[-1].seq

    def on_scene_change(self, change: SceneChange) -> bool:
        """Close the current scene (its caption is asked of the server, off this thread) and start the next. False:
        the worker schedules no caption job (the remote responder asks for this memory's captions itself)."""
        sc = self._scene
        notify = False
        with self._lock:
            if sc.started and sc.images:
                held = [i for i in self._recent if i.scene == sc.scene]
                if self._anchor is not None and self._anchor.scene == sc.scene and self._anchor not in held:
                    held.insert(0, self._anchor)
                if held:
                    self._pending.append(
                        ClosedScene(sc.scene, sc.start_pts, max(sc.end_pts, change.pts), sc.start_wall, held)
                    )
                    notify = True
                while len(self._pending) > PENDING_CAPTIONS:
                    given_up = self._pending.popleft()
                    self.counters.captions_given_up += 1
                    n = self.counters.captions_given_up
                    if n <= 3 or n % 100 == 0:
                        log.warning(
                            "camera %s: scene %d not captioned (captions backed up; %d so far)",
                            self.camera,
                            given_up.scene,
                            n,
                        )
            self._scene = _Scene(change.scene, change.pts, change.wall_time, change.pts, started=True)
            self._gate.scene_started()
        if notify and self.on_pending is not None:
            self.on_pending()
        return False

    def answer(self, question: str, **_: Any) -> GenerationResult:
        raise RuntimeError(
            "a remote memory answers through the remote responder (daemon/generation/remote_responder.py)"
        )

    def maintenance_step(self) -> bool:
        return False  # nothing to rebuild: the server holds no state of ours

    # ---- requests (event loop) ---------------------------------------------------------------------------

    def question_request(self, question: str, recalled: Recalled | None = None) -> RemoteRequest:
        """The question's request; `recalled` past moments (timeline/recall.py) go after the live content and before
        the question — their lines, then each keyframe after a text part with its time — and take the places of the
        oldest live images (the request stays within model.images_per_request)."""
        extra = list(recalled.images[: self.cfg.images_per_request - 1]) if recalled is not None else []
        with self._lock:
            images = self._window(list(self._recent), self.cfg.images_per_request - len(extra))
            timeline = self._timeline()
        intro = f"Camera {self.camera}."
        if timeline:
            intro += " Earlier scenes, oldest first:\n" + timeline
        after: list[dict[str, Any]] = []
        if recalled is not None:
            after.append({"type": "text", "text": recalled.text})
            for img in extra:
                after.append({"type": "text", "text": img.label})
                after.append({"type": "image_url", "image_url": {"url": data_url(img.jpeg)}})
        req = self._request(intro, images, f"Question: {question}", after=after)
        if not extra:
            return req
        tokens = sum(jpeg_tokens(i.jpeg, self.token_px) for i in extra)
        return RemoteRequest(
            req.messages,
            images=req.images + len(extra),
            image_bytes=req.image_bytes + sum(len(i.jpeg) for i in extra),
            image_tokens=req.image_tokens + tokens,
            new_image_tokens=req.new_image_tokens + tokens,
        )

    def recall_room(self) -> RecallRoom:
        """Where the live window starts (the oldest image held) and what a recall may add: up to half a request's
        images (model.images_per_request) with their lines."""
        with self._lock:
            held = [*self._recent, *([self._anchor] if self._anchor is not None else [])]
            live = min((i.wall_time for i in held), default=self._scene.start_wall)
        images = max(1, self.cfg.images_per_request // 2)
        return RecallRoom(live, images * RECALL_IMAGE_TOKENS + RECALL_TEXT_TOKENS, RECALL_IMAGE_TOKENS)

    def caption_request(self, closed: ClosedScene) -> RemoteRequest:
        images = self._window(closed.images, self.cfg.images_per_request, spread=True)
        intro = (
            f"Camera {self.camera}, scene {closed.scene}, t={closed.start_pts:.1f}-{closed.end_pts:.1f}s. "
            "Its frames, oldest first:"
        )
        return self._request(intro, images, CAPTION_PROMPT)

    def _request(
        self, intro: str, images: list[RemoteImage], last: str, *, after: list[dict[str, Any]] | None = None
    ) -> RemoteRequest:
        content: list[dict[str, Any]] = [{"type": "text", "text": intro}]
        for img in images:
            content.append({"type": "text", "text": img.label()})
            content.append({"type": "image_url", "image_url": {"url": img.data_url}})
        content.extend(after or [])
        content.append({"type": "text", "text": last})
        messages = [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": content}]
        with self._lock:
            new = [i for i in images if i.seq not in self._sent]
            self._sent.update(i.seq for i in new)
            if len(self._sent) > 4 * self.cfg.keep_images:  # bounded: forget images no longer held
                held = {i.seq for i in self._recent} | ({self._anchor.seq} if self._anchor else set())
                self._sent &= held
        return RemoteRequest(
            messages,
            images=len(images),
            image_bytes=sum(len(i.jpeg) for i in images),
            image_tokens=sum(i.tokens for i in images),
            new_image_tokens=sum(i.tokens for i in new),
        )

    def _window(self, images: list[RemoteImage], n: int, *, spread: bool = False) -> list[RemoteImage]:
        """At most n images, oldest first: the newest ones (or, `spread`, evenly over the list), and when the first
        is a crop, the whole frame before it first (the crops change that view)."""
        if not images:
            return []
        if spread and len(images) > n:
            idx = np.linspace(0, len(images) - 1, n).round().astype(int)
            chosen = [images[i] for i in sorted(set(idx.tolist()))]
        else:
            chosen = images[-n:]
        if chosen[0].whole:
            return chosen
        base = next((i for i in reversed(images) if i.whole and i.seq < chosen[0].seq), None)
        if base is None and self._anchor is not None and self._anchor.seq < chosen[0].seq:
            base = self._anchor
        if base is None:
            return chosen
        return [base, *chosen[1:]] if len(chosen) >= n else [base, *chosen]

    def _timeline(self) -> str:
        lines: list[str] = []
        size = 0
        for c in reversed(self._captions):
            line = c.line()
            if size + len(line) + 1 > TIMELINE_CHARS:
                break
            lines.append(line)
            size += len(line) + 1
        return "\n".join(reversed(lines))

    # ---- captions (event loop) ---------------------------------------------------------------------------

    def next_caption(self, now: float) -> ClosedScene | None:
        """The oldest closed scene waiting for its caption whose retry time has come (it stays listed)."""
        with self._lock:
            for c in self._pending:
                if c.not_before <= now:
                    return c
        return None

    @property
    def captions_pending(self) -> int:
        return len(self._pending)

    def caption_done(self, closed: ClosedScene, text: str) -> None:
        text = " ".join(text.split())[:CAPTION_CHARS] or "(no caption)"
        with self._lock:
            if closed in self._pending:
                self._pending.remove(closed)
            self._captions.append(Caption(closed.scene, closed.start_pts, closed.end_pts, closed.start_wall, text))
            self._captions.sort(key=lambda c: c.start_pts)
            while len(self._captions) > self.max_captions:  # merge the two oldest lines
                a, b = self._captions[0], self._captions[1]
                merged = f"{a.text} / {b.text}"[-CAPTION_CHARS:]
                self._captions[:2] = [Caption(a.scene, a.start_pts, b.end_pts, a.start_wall, merged)]
            self.counters.captions += 1
        if self.event_log is not None:
            self.event_log.caption(self.camera, closed.scene, text)

    def caption_failed(self, closed: ClosedScene, *, retry_at: float | None) -> None:
        """A caption request failed: retried at `retry_at` (monotonic), or given up (None)."""
        with self._lock:
            closed.attempts += 1
            if retry_at is not None:
                closed.not_before = retry_at
                return
            if closed in self._pending:
                self._pending.remove(closed)
            self.counters.captions_given_up += 1

    def captions(self) -> list[str]:
        with self._lock:
            return [c.line() for c in self._captions]

    # ---- stats -------------------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        k = self.counters
        with self._lock:
            held = len(self._recent)
            held_bytes = self._recent_bytes
            if self._anchor is not None and self._anchor not in self._recent:
                held += 1
                held_bytes += len(self._anchor.jpeg)
            return {
                "scene": self._scene.scene,
                "remote_images": held,
                "remote_image_bytes": held_bytes,
                "remote_captions": len(self._captions),
                "captions_pending": len(self._pending),
                "frames_with_news": k.frames_kept,
                "whole_frames": k.whole_frames,
                "crops": k.crops,
                "images_evicted": k.images_evicted,
                "captions_given_up": k.captions_given_up,
                "image_tokens_kept": k.image_tokens_kept,
            }
