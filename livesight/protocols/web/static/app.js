// livesight chat page: one WebSocket to the daemon (docs/protocol.md), no build step, no dependencies.
// Every server-provided string is inserted with textContent (never as HTML).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  const wsUrl =
    (location.protocol === "https:" ? "wss://" : "ws://") +
    location.host +
    "/ws" +
    (token ? "?token=" + encodeURIComponent(token) : "");

  const state = {
    ws: null,
    cameras: new Map(), // id → {state, reason, stats}
    responses: new Map(), // response_id → {el, textEl, kind, queryId}
    running: new Map(), // query id → response_id | null
    watches: new Map(), // watch id → text
    scenes: [], // {camera, scene, wall_time, thumbnail}
    scenesLoaded: new Set(), // cameras whose earlier scenes were fetched
    nextQuery: 1,
    nextWatch: 1,
    retry: 0,
  };

  // ---- helpers -----------------------------------------------------------------------------------------------

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function clock(t) {
    const d = t ? new Date(t * 1000) : new Date();
    return d.toLocaleTimeString([], { hour12: false });
  }

  function addLog(cls, meta, text) {
    const item = el("li", "msg " + cls);
    item.appendChild(el("div", "meta", meta));
    const body = el("div", "text", text);
    item.appendChild(body);
    const log = $("log");
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.appendChild(item);
    while (log.children.length > 500) log.removeChild(log.firstChild);
    if (atBottom) log.scrollTop = log.scrollHeight;
    return { item, body };
  }

  // Image URLs carry the token as a query parameter (an <img> cannot send a header).
  function withToken(path, extra) {
    const q = new URLSearchParams(extra || {});
    if (token) q.set("token", token);
    const qs = q.toString();
    return path + (qs ? "?" + qs : "");
  }

  function send(obj) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) {
      state.ws.send(JSON.stringify(obj));
      return true;
    }
    addLog("error", "not connected", "the message was not sent");
    return false;
  }

  // ---- rendering ---------------------------------------------------------------------------------------------

  function renderCameras() {
    const ul = $("cameras");
    ul.replaceChildren();
    const select = $("camera");
    const chosen = select.value;
    select.replaceChildren();
    for (const [id, cam] of state.cameras) {
      const li = el("li", "camera");
      const head = el("div", "cam-head");
      head.appendChild(el("span", "cam-id", id));
      head.appendChild(el("span", "badge state-" + (cam.state || "unknown"), cam.state || "?"));
      li.appendChild(head);
      if (cam.reason && cam.state !== "live") li.appendChild(el("div", "reason", cam.reason));
      const s = cam.stats;
      if (s) {
        const dl = el("dl", "stats");
        const rows = [
          ["frames", s.frames_in],
          ["dropped", s.frames_dropped],
          ["tokens kept", `${s.tokens_kept ?? 0} / ${s.tokens_total ?? 0}`],
          ["drop ratio", s.drop_ratio !== undefined ? (100 * s.drop_ratio).toFixed(1) + " %" : "–"],
        ];
        for (const [k, v] of rows) {
          dl.appendChild(el("dt", null, k));
          dl.appendChild(el("dd", null, v ?? "–"));
        }
        li.appendChild(dl);
      }
      ul.appendChild(li);
      const opt = el("option", null, id);
      opt.value = id;
      select.appendChild(opt);
    }
    if (chosen && state.cameras.has(chosen)) select.value = chosen;
  }

  function renderTotals(t) {
    const parts = [];
    if (t.clients !== undefined) parts.push(`${t.clients} client${t.clients === 1 ? "" : "s"}`);
    if (t.drop_ratio !== undefined) parts.push(`tokens dropped ${(100 * t.drop_ratio).toFixed(1)} %`);
    if (t.ttft_ms_median !== undefined && t.ttft_ms_median !== null)
      parts.push(`median first token ${Math.round(t.ttft_ms_median)} ms`);
    $("totals").textContent = parts.join(" · ");
  }

  function renderTimeline() {
    const box = $("timeline");
    box.replaceChildren();
    const now = Date.now() / 1000;
    const span = 300; // seconds shown
    const axis = el("div", "tl-row tl-axis");
    axis.appendChild(el("span", "tl-label", "scenes"));
    const ticks = el("div", "tl-ticks");
    ticks.appendChild(el("span", null, "−5 min"));
    ticks.appendChild(el("span", null, "now"));
    axis.appendChild(ticks);
    box.appendChild(axis);
    for (const id of state.cameras.keys()) {
      const row = el("div", "tl-row");
      row.appendChild(el("span", "tl-label", id));
      const bar = el("div", "tl-bar");
      for (const s of state.scenes) {
        if (s.camera !== id || now - s.wall_time > span) continue;
        const mark = el("span", "tl-mark");
        mark.style.left = (100 * (1 - (now - s.wall_time) / span)).toFixed(2) + "%";
        mark.title = `scene ${s.scene} at ${clock(s.wall_time)}`;
        bar.appendChild(mark);
      }
      row.appendChild(bar);
      box.appendChild(row);
    }
  }

  function renderThumbs() {
    const box = $("thumbs");
    box.replaceChildren();
    const cam = $("camera").value;
    const shown = state.scenes.filter((s) => s.camera === cam && s.thumbnail && hasFrames(cam)).slice(-12);
    for (const s of shown) {
      const fig = el("figure", "thumb");
      const img = el("img");
      img.src = withToken(s.thumbnail);
      img.alt = `scene ${s.scene}`;
      img.loading = "lazy";
      fig.appendChild(img);
      fig.appendChild(el("figcaption", null, `scene ${s.scene} · ${clock(s.wall_time)}`));
      box.appendChild(fig);
    }
  }

  // Scenes from before this page was opened (the event log), with their thumbnails.
  function loadScenes(cam) {
    fetch(withToken(`api/cameras/${encodeURIComponent(cam)}/scenes`, { limit: "12" }))
      .then((r) => (r.ok ? r.json() : { scenes: [] }))
      .then((body) => {
        const known = new Set(state.scenes.filter((s) => s.camera === cam).map((s) => s.scene));
        for (const s of body.scenes.reverse()) {
          if (!known.has(s.scene)) state.scenes.push({ camera: cam, scene: s.scene, wall_time: s.wall_time,
            thumbnail: s.thumbnail });
        }
        state.scenes.sort((a, b) => a.wall_time - b.wall_time);
        renderTimeline();
        renderThumbs();
      })
      .catch(() => {});
  }

  // Live view: poll the latest frame; If-None-Match makes an unchanged frame a bodiless 304.
  const live = { etag: null, url: null, busy: false };
  // Pictures exist once a camera has sampled frames (its stats say so): no requests before that.
  function hasFrames(cam) {
    const c = state.cameras.get(cam);
    return Boolean(c && c.stats && c.stats.frames_sampled > 0);
  }
  function pollLive() {
    const cam = $("camera").value;
    if (!cam || live.busy || document.hidden || !hasFrames(cam)) return;
    live.busy = true;
    const overlay = $("overlay").checked ? "1" : "0";
    const headers = live.etag ? { "If-None-Match": live.etag } : {};
    fetch(withToken(`api/cameras/${encodeURIComponent(cam)}/latest.jpg`, { overlay }), { headers })
      .then((r) => {
        if (r.status !== 200) return null;
        live.etag = r.headers.get("ETag");
        const pts = r.headers.get("X-Frame-Pts");
        $("live-cap").textContent = `${cam} · frame ${r.headers.get("X-Frame-Seq")} · ${Number(pts).toFixed(1)} s`;
        return r.blob();
      })
      .then((blob) => {
        if (!blob) return;
        if (live.url) URL.revokeObjectURL(live.url);
        live.url = URL.createObjectURL(blob);
        $("live-img").src = live.url;
      })
      .catch(() => {})
      .finally(() => {
        live.busy = false;
      });
  }

  function renderWatches() {
    const ul = $("watches");
    ul.replaceChildren();
    for (const [id, text] of state.watches) {
      const li = el("li", "watch");
      li.appendChild(el("span", "watch-text", `${id}: ${text}`));
      const b = el("button", "small", "×");
      b.type = "button";
      b.title = "remove";
      b.addEventListener("click", () => send({ type: "watch.remove", id }));
      li.appendChild(b);
      ul.appendChild(li);
    }
  }

  function updateCancel() {
    $("cancel").disabled = state.running.size === 0;
  }

  // ---- server events -----------------------------------------------------------------------------------------

  function onCreated(ev) {
    let cls, meta;
    if (ev.kind === "query") {
      cls = "answer";
      meta = `${ev.camera} · answer`;
      if (state.running.has(ev.query_id)) state.running.set(ev.query_id, ev.response_id);
    } else if (ev.kind === "proactive") {
      cls = "proactive";
      meta = `${ev.camera} · scene ${ev.scene ?? "?"} · proactive · ${clock()}`;
    } else {
      cls = "watch-hit";
      meta = `${ev.camera} · watch ${ev.watch_id} · ${clock()}`;
    }
    const { item, body } = addLog(cls + " streaming", meta, "");
    state.responses.set(ev.response_id, { item, body, kind: ev.kind, queryId: ev.query_id });
  }

  function onDelta(ev) {
    const r = state.responses.get(ev.response_id);
    if (!r) return;
    r.body.textContent += ev.delta;
    const log = $("log");
    log.scrollTop = log.scrollHeight;
  }

  function onDone(ev) {
    const r = state.responses.get(ev.response_id);
    if (!r) return;
    state.responses.delete(ev.response_id);
    r.item.classList.remove("streaming");
    if (!r.body.textContent && ev.text) r.body.textContent = ev.text;
    let info;
    if (ev.status === "completed") {
      info = `${ev.usage.completion_tokens} tokens` + (ev.ttft_ms ? ` · first token ${Math.round(ev.ttft_ms)} ms` : "");
    } else if (ev.status === "cancelled") {
      info = "cancelled";
      r.item.classList.add("cancelled");
    } else {
      info = "failed: " + (ev.error || "unknown error");
      r.item.classList.add("failed");
    }
    if (Array.isArray(ev.citations) && ev.citations.length) r.item.appendChild(renderCitations(ev.citations));
    r.item.appendChild(el("div", "info", info));
    if (r.queryId) state.running.delete(r.queryId);
    updateCancel();
  }

  // ---- citations: the past moments an answer drew on (response.done `citations`) -------------------------------

  function when(t) {
    const d = new Date(t * 1000);
    const time = d.toLocaleTimeString([], { hour12: false });
    if (d.toDateString() === new Date().toDateString()) return time;
    return d.toLocaleDateString([], { month: "short", day: "numeric" }) + " " + time;
  }

  // `camera` lets a gateway find the node holding the keyframe; a node ignores it.
  function citationSrc(c) {
    return withToken(c.thumbnail, { camera: c.camera });
  }

  function renderCitations(citations) {
    const box = el("div", "citations");
    box.setAttribute("aria-label", "moments this answer drew on");
    for (const c of citations.slice(0, 16)) {
      const label = `${c.camera} · ${when(c.wall_time)}`;
      const fig = el("figure", "citation");
      if (c.thumbnail) {
        const a = el("a");
        a.href = citationSrc(c);
        a.title = `${label} (scene ${c.scene})`;
        const img = el("img");
        img.src = citationSrc(c);
        img.alt = `${c.camera} at ${when(c.wall_time)}`;
        img.loading = "lazy";
        a.appendChild(img);
        a.addEventListener("click", (e) => {
          e.preventDefault();
          openScene(c);
        });
        fig.appendChild(a);
      }
      fig.appendChild(el("figcaption", null, label));
      box.appendChild(fig);
    }
    return box;
  }

  // The scene of a citation, large, over the page (Escape, a click outside or × closes it).
  function openScene(c) {
    closeScene();
    const shade = el("div", "scene-overlay");
    shade.id = "scene-overlay";
    shade.setAttribute("role", "dialog");
    shade.setAttribute("aria-label", `scene ${c.scene} of ${c.camera}`);
    const panel = el("figure", "scene-panel");
    const img = el("img");
    img.src = citationSrc(c);
    img.alt = `${c.camera}, scene ${c.scene}, at ${when(c.wall_time)}`;
    panel.appendChild(img);
    const cap = el("figcaption");
    const where = `${c.camera} · scene ${c.scene} · ${when(c.wall_time)} · ${Number(c.pts).toFixed(1)} s`;
    cap.appendChild(el("span", null, where));
    const full = el("a", null, "open image");
    full.href = citationSrc(c);
    full.target = "_blank";
    full.rel = "noopener";
    cap.appendChild(full);
    const close = el("button", "small", "×");
    close.type = "button";
    close.title = "close";
    close.addEventListener("click", closeScene);
    cap.appendChild(close);
    panel.appendChild(cap);
    shade.appendChild(panel);
    shade.addEventListener("click", (e) => {
      if (e.target === shade) closeScene();
    });
    document.body.appendChild(shade);
  }

  function closeScene() {
    const o = document.getElementById("scene-overlay");
    if (o) o.remove();
  }
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") closeScene();
  });

  // The model loads after the server starts: ask /healthz until it names the model, then say so once when its
  // weights are random (the built-in tiny-random demo model answers with meaningless text).
  function checkModel(attempt) {
    fetch("healthz" + (token ? "?token=" + encodeURIComponent(token) : ""))
      .then((r) => r.json())
      .then((h) => {
        const m = h.model || {};
        if (!m.name) {
          if (attempt < 30) setTimeout(() => checkModel(attempt + 1), 2000);
          return;
        }
        const b = $("model-banner");
        b.hidden = !m.random_weights;
        b.textContent = `model "${m.name}" has random weights: its answers are meaningless text ` +
          "(token dropping, scenes, memory, latency and the protocol are real)";
      })
      .catch(() => {});
  }

  function onEvent(ev) {
    switch (ev.type) {
      case "session.created":
        checkModel(0);
        state.cameras.clear();
        for (const c of ev.cameras) state.cameras.set(c.id, { state: c.state, reason: c.reason, stats: null });
        $("proactive").checked = ev.session.proactive;
        renderCameras();
        $("camera").value = ev.session.camera;
        renderTimeline();
        state.scenesLoaded = new Set();
        break;
      case "session.updated":
        $("proactive").checked = ev.session.proactive;
        break;
      case "response.created":
        onCreated(ev);
        break;
      case "response.delta":
        onDelta(ev);
        break;
      case "response.done":
        onDone(ev);
        break;
      case "scene.change":
        state.scenes.push(ev);
        if (state.scenes.length > 1000) state.scenes.splice(0, state.scenes.length - 1000);
        {
          const { item } = addLog("scene", `${ev.camera} · ${clock(ev.wall_time)}`,
            `scene ${ev.scene} begins (score ${ev.score.toFixed(2)})`);
          if (ev.thumbnail && hasFrames(ev.camera)) {
            const img = el("img");
            img.src = withToken(ev.thumbnail);
            img.alt = `scene ${ev.scene}`;
            item.appendChild(img);
          }
        }
        renderTimeline();
        renderThumbs();
        break;
      case "camera.state": {
        const cam = state.cameras.get(ev.camera) || { stats: null };
        cam.state = ev.state;
        cam.reason = ev.reason;
        state.cameras.set(ev.camera, cam);
        renderCameras();
        addLog("state", `${ev.camera} · ${clock(ev.wall_time)}`, ev.state + (ev.reason ? ` (${ev.reason})` : ""));
        break;
      }
      case "stats":
        for (const [id, s] of Object.entries(ev.cameras || {})) {
          const cam = state.cameras.get(id) || { state: s.state };
          cam.stats = s;
          if (s.state) cam.state = s.state;
          state.cameras.set(id, cam);
          if (hasFrames(id) && !state.scenesLoaded.has(id)) {
            state.scenesLoaded.add(id);
            loadScenes(id);
          }
        }
        renderCameras();
        renderTotals(ev.totals || {});
        renderTimeline();
        break;
      case "watch.added":
        state.watches.set(ev.id, ev.text);
        renderWatches();
        break;
      case "watch.removed":
        state.watches.delete(ev.id);
        renderWatches();
        break;
      case "error":
        addLog("error", `error · ${ev.code}` + (ev.event_id ? ` · ${ev.event_id}` : ""), ev.message);
        if (ev.event_type === "query" && state.running.has(ev.event_id)) {
          state.running.delete(ev.event_id);
          updateCancel();
        }
        if (ev.event_type === "watch.add") {
          state.watches.delete(ev.event_id);
          renderWatches();
        }
        break;
      default:
        break;
    }
  }

  // ---- connection --------------------------------------------------------------------------------------------

  function setConn(cls, text) {
    const c = $("conn");
    c.className = "conn " + cls;
    c.textContent = text;
  }

  function connect() {
    setConn("conn-off", "connecting…");
    const ws = new WebSocket(wsUrl);
    state.ws = ws;
    ws.addEventListener("open", () => {
      state.retry = 0;
      setConn("conn-on", "live");
    });
    ws.addEventListener("message", (m) => {
      let ev;
      try {
        ev = JSON.parse(m.data);
      } catch (e) {
        return;
      }
      onEvent(ev);
    });
    ws.addEventListener("close", (e) => {
      state.ws = null;
      state.running.clear();
      state.watches.clear(); // watches end with the session
      renderWatches();
      updateCancel();
      const delay = Math.min(30, 2 ** state.retry) * (0.8 + 0.4 * Math.random());
      state.retry += 1;
      setConn("conn-off", `disconnected (${e.code}); retrying in ${delay.toFixed(0)} s`);
      setTimeout(connect, delay * 1000);
    });
  }

  // ---- user input --------------------------------------------------------------------------------------------

  $("ask-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("question").value.trim();
    if (!text) return;
    const id = "q" + state.nextQuery++;
    const camera = $("camera").value || undefined;
    if (!send({ type: "query", id, text, camera })) return;
    addLog("question", `you → ${camera || "camera"} · ${clock()}`, text);
    state.running.set(id, null);
    updateCancel();
    $("question").value = "";
  });

  $("cancel").addEventListener("click", () => {
    const ids = [...state.running.keys()];
    if (ids.length) send({ type: "query.cancel", id: ids[ids.length - 1] });
  });

  $("watch-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("watch-text").value.trim();
    if (!text) return;
    const id = "w" + state.nextWatch++;
    if (send({ type: "watch.add", id, text, camera: $("camera").value || undefined })) $("watch-text").value = "";
  });

  $("proactive").addEventListener("change", (e) => send({ type: "session.update", proactive: e.target.checked }));

  $("camera").addEventListener("change", () => {
    live.etag = null;
    renderThumbs();
    pollLive();
  });
  $("overlay").addEventListener("change", () => {
    live.etag = null;
    pollLive();
  });

  setInterval(renderTimeline, 5000);
  setInterval(pollLive, 400);
  connect();
})();
