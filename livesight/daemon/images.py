"""Camera pictures (`ImageSource` of protocols/contract/api.py): the latest frame with the DTD overlay, scene
thumbnails.

- Encoding happens only when someone asks (a viewer, a thumbnail to store, a closed timeline entry's keyframes:
  `submit`), in ONE picture thread, never on the event loop or in the model worker. Each (camera, overlay) keeps
  its last JPEG: viewers of the same sampled frame share one encoding, and a frame is encoded at most once per
  variant. At most `max_pending` encodings wait at once;
  beyond, BusyError (HTTP 503): a crowd of viewers can never queue work behind the pipeline.
- Thumbnails: the first frame of each scene (as the model saw it), written as `DIR/<camera>/<scene>.jpg` beside the
  event log, at most `max_files` kept (the event log's retention, `memory.max_rows`; oldest deleted first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from livesight.daemon.frame_slots import FrameSlots, FrameView
from livesight.errors import ConfigError
from livesight.imaging import encode_jpeg, overlay
from livesight.memory.event_log import EventLog
from livesight.protocols.contract.api import BusyError, JpegImage, UnknownCameraError
from livesight.types import SceneChange

log = logging.getLogger(__name__)

MAX_PENDING = 8
MAX_PENDING_THUMBNAILS = 16


def thumbnail_dir(database: str | None) -> Path | None:
    """`livesight.sqlite` → `livesight.thumbnails/` next to it; no event log (or `:memory:`), no thumbnails."""
    if not database or database == ":memory:":
        return None
    p = Path(database)
    return p.with_name(p.stem + ".thumbnails")


def render(view: FrameView, with_overlay: bool) -> bytes:
    rgb = overlay(view.rgb, view.keep, view.grid_hw, view.token_px) if with_overlay else view.rgb
    return encode_jpeg(rgb)


class ThumbnailStore:
    """JPEG files per (camera, scene), oldest deleted beyond `max_files`. Its methods do file I/O: call them in a
    thread."""

    def __init__(self, directory: Path, max_files: int) -> None:
        self.dir = directory
        self.max_files = max_files
        self._order: deque[Path] = deque()
        self.deleted = 0

    def open(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        files = [p for p in self.dir.glob("*/*.jpg") if p.is_file()]
        files.sort(key=lambda p: p.stat().st_mtime)
        self._order = deque(files)
        self._trim()

    def path(self, camera: str, scene: int) -> Path:
        return self.dir / camera / f"{scene}.jpg"

    def write(self, camera: str, scene: int, data: bytes) -> None:
        p = self.path(camera, scene)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, p)
        with contextlib.suppress(ValueError):
            self._order.remove(p)
        self._order.append(p)
        self._trim()

    def read(self, camera: str, scene: int) -> bytes | None:
        try:
            return self.path(camera, scene).read_bytes()
        except FileNotFoundError:
            return None

    def exists(self, camera: str, scene: int) -> bool:
        return self.path(camera, scene).is_file()

    def _trim(self) -> None:
        while len(self._order) > self.max_files:
            old = self._order.popleft()
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
            self.deleted += 1


class Images:
    def __init__(
        self,
        cameras: list[str],
        slots: FrameSlots,
        *,
        store: ThumbnailStore | None = None,
        event_log: EventLog | None = None,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self._cameras = set(cameras)
        self.slots = slots
        self.store = store
        self.event_log = event_log
        self.max_pending = max_pending
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="livesight-pictures")
        self._cache: dict[tuple[str, bool], JpegImage] = {}
        self._inflight: dict[tuple[str, bool, int], asyncio.Future[bytes]] = {}
        self._writing: dict[tuple[str, int], asyncio.Future[None]] = {}
        self.encoded = 0  # JPEGs encoded for viewers
        self.refused = 0  # requests refused because too many encodings were waiting
        self.thumbnails_written = 0
        self.thumbnails_skipped = 0  # scene starts not written (no frame kept, too many waiting, write failed)

    async def start(self) -> None:
        """Open the thumbnail directory. Raises ConfigError (naming memory.database) when it cannot be used."""
        loop = asyncio.get_running_loop()
        self.slots.on_first_scene = lambda camera, scene: loop.call_soon_threadsafe(self._save, camera, scene)
        if self.store is not None:
            try:
                await self._run(self.store.open)
            except OSError as e:
                raise ConfigError(f"memory.database: thumbnail directory {self.store.dir}: {e.strerror or e}") from None

    async def close(self) -> None:
        pending = list(self._writing.values()) + list(self._inflight.values())
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.to_thread(self._executor.shutdown, True)

    # ---- ImageSource ---------------------------------------------------------------------------------------

    def latest_seq(self, camera: str) -> int | None:
        self._check(camera)
        view = self.slots.latest(camera)
        return view.seq if view is not None else None

    async def latest_jpeg(self, camera: str, *, overlay: bool) -> JpegImage | None:
        self._check(camera)
        view = self.slots.latest(camera)
        if view is None:
            return None
        cached = self._cache.get((camera, overlay))
        if cached is not None and cached.seq >= view.seq:
            return cached
        key = (camera, overlay, view.seq)
        fut = self._inflight.get(key)
        if fut is None:
            if len(self._inflight) >= self.max_pending:
                self.refused += 1
                raise BusyError(f"{len(self._inflight)} pictures are being encoded; try again shortly")
            fut = self._run(render, view, overlay)
            self._inflight[key] = fut
            fut.add_done_callback(lambda _: self._inflight.pop(key, None))
            self.encoded += 1
        data = await asyncio.shield(fut)  # a viewer that goes away does not cancel the others' picture
        img = JpegImage(data, view.seq, view.pts, view.wall_time)
        cached = self._cache.get((camera, overlay))
        if cached is None or cached.seq < img.seq:
            self._cache[(camera, overlay)] = img
        return img

    async def scene_jpeg(self, camera: str, scene: int) -> bytes | None:
        self._check(camera)
        if self.store is None:
            return None
        writing = self._writing.get((camera, scene))
        if writing is not None:
            with contextlib.suppress(OSError, ValueError):
                await asyncio.shield(writing)
        return await self._run(self.store.read, camera, scene)

    async def scenes(self, camera: str, *, limit: int) -> list[dict[str, Any]]:
        self._check(camera)
        if self.event_log is None:
            return []
        return await self._run(self._scene_rows, camera, limit)

    def counters(self) -> dict[str, int]:
        return {
            "encoded": self.encoded,
            "refused": self.refused,
            "thumbnails_written": self.thumbnails_written,
            "thumbnails_skipped": self.thumbnails_skipped,
            "thumbnails_deleted": self.store.deleted if self.store is not None else 0,
        }

    # ---- thumbnails ----------------------------------------------------------------------------------------

    def save_scene(self, change: SceneChange) -> None:
        """Store the thumbnail of a scene that just started (on the event loop; the work goes to the thread)."""
        self._save(change.camera, change.scene)

    def _save(self, camera: str, scene: int) -> None:
        if self.store is None:
            return
        view = self.slots.scene_start(camera, scene)
        if view is None or len(self._writing) >= MAX_PENDING_THUMBNAILS:
            self.thumbnails_skipped += 1
            return
        key = (camera, scene)
        fut = self._run(self._write_thumbnail, view, scene)
        self._writing[key] = fut
        fut.add_done_callback(lambda f: self._thumbnail_done(key, f))

    def _write_thumbnail(self, view: FrameView, scene: int) -> None:
        assert self.store is not None
        self.store.write(view.camera, scene, render(view, False))

    def _thumbnail_done(self, key: tuple[str, int], fut: asyncio.Future[None]) -> None:
        self._writing.pop(key, None)
        if fut.cancelled():
            return
        err = fut.exception()
        if err is None:
            self.thumbnails_written += 1
        else:
            self.thumbnails_skipped += 1
            log.warning("thumbnail of %s scene %d not written: %s", key[0], key[1], err)

    def _scene_rows(self, camera: str, limit: int) -> list[dict[str, Any]]:
        assert self.event_log is not None
        rows = self.event_log.scenes(camera, limit)
        for r in rows:
            r["thumbnail"] = self.store is not None and self.store.exists(camera, r["scene"])
        return rows

    def submit(self, fn: Any, *args: Any) -> asyncio.Future[Any]:
        """Run `fn(*args)` in the picture thread (the timeline's keyframes are encoded and written there too)."""
        return self._run(fn, *args)

    # ---- helpers -------------------------------------------------------------------------------------------

    def _check(self, camera: str) -> None:
        if camera not in self._cameras:
            raise UnknownCameraError(f"unknown camera {camera!r}")

    def _run(self, fn: Any, *args: Any) -> asyncio.Future[Any]:
        fut: Future[Any] = self._executor.submit(fn, *args)
        return asyncio.wrap_future(fut)
