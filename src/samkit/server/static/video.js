// samkit web app, video mode: open a clip, click objects on any frame (or, with SAM 3, find every
// instance of a phrase), track, scrub, play, download. Plain JS, no build step; talks to the /api/videos routes (samkit/server/video_routes.py).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const frameLayer = $("v-frame");
  const maskLayer = $("v-masks");
  const promptLayer = $("v-prompts");
  const ALPHA = 140;

  const style = document.createElement("style");
  style.textContent = `
    body:not(.video-on) > #video-mode { display: none; }
    body.video-on > nav.toolbar, body.video-on > #candidates-row, body.video-on > #find-row,
    body.video-on > #status, body.video-on > #stage { display: none; }
    #video-mode [hidden] { display: none !important; }
    .modes { display: inline-flex; gap: 0; margin-left: 12px; }
    .modes button { border-radius: 0; }
    .modes button:first-child { border-radius: 6px 0 0 6px; }
    .modes button:last-child { border-radius: 0 6px 6px 0; }
    .modes button.selected { background: var(--accent); border-color: var(--accent); color: #fff; }
    .v-objects { display: inline-flex; gap: 6px; flex-wrap: wrap; }
    .v-objects button.selected { box-shadow: 0 0 0 2px var(--accent) inset; border-color: var(--accent); }
    .v-objects .swatch { display: inline-block; width: 12px; height: 12px; border-radius: 3px; margin-right: 4px; vertical-align: -1px; }
    .v-objects .remove { margin-left: 6px; color: var(--muted); }
    .scrubber { display: flex; align-items: center; gap: 10px; padding: 0 16px 8px; }
    .scrubber input { flex: 1; }
    #v-frame-label { font-variant-numeric: tabular-nums; min-width: 110px; }
    #v-prompts { cursor: crosshair; touch-action: none; }
    #v-layers canvas { image-rendering: pixelated; }
    #v-frame { height: auto; }
    a.button[aria-disabled="true"] { opacity: .45; pointer-events: none; }
    #v-status[data-phase="error"] #v-status-text { color: var(--warn); font-weight: 600; }
  `;
  document.head.append(style);

  // The DAVIS / PASCAL VOC palette: the colours of the palette PNGs and of overlay.mp4.
  function davisColour(id) {
    let r = 0, g = 0, b = 0;
    for (let j = 0; j < 8; j++) {
      r |= ((id >> (3 * j)) & 1) << (7 - j);
      g |= ((id >> (3 * j + 1)) & 1) << (7 - j);
      b |= ((id >> (3 * j + 2)) & 1) << (7 - j);
    }
    return [r, g, b];
  }
  const css = (id) => `rgb(${davisColour(id).join(",")})`;

  const vs = {
    phase: "empty", // empty | uploading | opening | ready | prompting | tracking | playing | error
    videoId: null,
    name: "",
    numFrames: 0,
    width: 0,
    height: 0,
    fps: null,
    current: 0,
    objects: [], // object ids, in creation order
    active: 1,
    nextId: 1,
    prompts: {}, // "frame:obj" -> {points: [[x, y, label]], box}
    results: new Map(), // frame -> Uint8Array(h * w) object ids
    images: new Map(), // frame -> HTMLImageElement
    job: null,
    pending: 0,
    error: null,
    lastResponse: null,
    findsConcepts: false, // the model finds phrases (SAM 3): the Find box
    finds: [], // [{frame, text, found: [ids]}]
    found: new Set(), // objects started by a find or by tracking (not clicked)
  };

  function setStatus(phase, text, progress) {
    vs.phase = phase;
    $("v-status").dataset.phase = phase;
    $("v-status-text").textContent = text;
    const bar = $("v-progress");
    bar.hidden = progress === undefined;
    if (progress === null) bar.removeAttribute("value");
    else if (progress !== undefined) bar.value = progress;
    updateButtons();
  }

  function updateButtons() {
    const open = vs.videoId !== null;
    const tracking = vs.phase === "tracking";
    const idle = open && !["uploading", "opening", "tracking"].includes(vs.phase);
    $("v-new-object").disabled = !idle;
    $("v-find-box").hidden = !vs.findsConcepts;
    $("v-find").disabled = !(idle && $("v-find-text").value.trim());
    $("v-track").disabled = !(idle && (Object.keys(vs.prompts).length || vs.finds.length));
    $("v-cancel").hidden = !tracking;
    $("v-play").disabled = !(open && vs.results.size && !tracking);
    $("v-play").textContent = vs.phase === "playing" ? "Stop" : "Play";
    $("v-scrub").disabled = !open;
    const canDownload = idle && vs.results.size > 0;
    for (const [id, file] of [["v-dl-zip", "masks.zip"], ["v-dl-json", "annotations.json"], ["v-dl-mp4", "overlay.mp4"]]) {
      const a = $(id);
      a.setAttribute("aria-disabled", String(!canDownload));
      a.href = canDownload ? `/api/videos/${vs.videoId}/download/${file}` : "#";
    }
  }

  async function errorText(resp) {
    try {
      const body = await resp.json();
      return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    } catch (e) {
      return `${resp.status} ${resp.statusText}`;
    }
  }

  async function api(path, options) {
    const resp = await fetch(`/api/videos/${vs.videoId}${path}`, options);
    if (!resp.ok) throw new Error(await errorText(resp));
    return resp.json();
  }

  // objects of one frame (server records with COCO RLE) -> id map; smaller ids win, as in the PNGs
  function labelsOf(objects) {
    const labels = new Uint8Array(vs.width * vs.height);
    const sorted = [...objects].sort((a, b) => b.obj_id - a.obj_id);
    for (const o of sorted) {
      const m = window.samkit.decodeRle(o.segmentation);
      for (let j = 0; j < m.length; j++) if (m[j]) labels[j] = o.obj_id;
    }
    return labels;
  }

  // ------------------------------------------------------------------ drawing

  function frameImage(t) {
    let img = vs.images.get(t);
    if (!img) {
      img = new Image();
      img.src = `/api/videos/${vs.videoId}/frames/${t}`;
      vs.images.set(t, img);
    }
    return img;
  }

  function show(t) {
    vs.current = t;
    $("v-scrub").value = String(t);
    $("v-frame-label").textContent = `frame ${t} / ${vs.numFrames - 1}`;
    const img = frameImage(t);
    const draw = () => {
      if (vs.current !== t) return;
      frameLayer.getContext("2d").drawImage(img, 0, 0, vs.width, vs.height);
      drawMasks();
      drawPrompts();
    };
    if (img.complete && img.naturalWidth) draw();
    else img.addEventListener("load", draw, { once: true });
    drawMasks();
    drawPrompts();
  }

  function drawMasks() {
    const ctx = maskLayer.getContext("2d");
    ctx.clearRect(0, 0, maskLayer.width, maskLayer.height);
    const labels = vs.results.get(vs.current);
    if (!labels) return;
    const img = ctx.createImageData(vs.width, vs.height);
    const px = img.data;
    const colours = new Map();
    for (let j = 0; j < labels.length; j++) {
      const id = labels[j];
      if (!id) continue;
      let c = colours.get(id);
      if (!c) { c = davisColour(id); colours.set(id, c); }
      px[4 * j] = c[0]; px[4 * j + 1] = c[1]; px[4 * j + 2] = c[2]; px[4 * j + 3] = ALPHA;
    }
    ctx.putImageData(img, 0, 0);
  }

  function drawPrompts(preview) {
    const ctx = promptLayer.getContext("2d");
    ctx.clearRect(0, 0, promptLayer.width, promptLayer.height);
    // line widths in screen pixels, but at least one video pixel (small clips are enlarged)
    const scale = Math.max(0.5, vs.width / (promptLayer.getBoundingClientRect().width || vs.width));
    const r = Math.max(2, 5 * scale);
    const boxes = [];
    for (const [key, p] of Object.entries(vs.prompts)) {
      const [t, obj] = key.split(":").map(Number);
      if (t !== vs.current) continue;
      if (p.box) boxes.push([obj, p.box]);
      for (const [x, y, label] of p.points) {
        ctx.beginPath();
        ctx.arc(x, y, r, 0, 2 * Math.PI);
        ctx.fillStyle = label === 1 ? css(obj) : "#000";
        ctx.fill();
        ctx.lineWidth = 2 * scale; ctx.strokeStyle = label === 1 ? "#fff" : css(obj);
        ctx.stroke();
      }
    }
    if (preview) boxes.push([vs.active, preview]);
    for (const [obj, [x0, y0, x1, y1]] of boxes) {
      ctx.lineWidth = 4 * scale; ctx.strokeStyle = "#fff";
      ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
      ctx.lineWidth = 2 * scale; ctx.strokeStyle = css(obj);
      ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    }
  }

  function renderObjects() {
    const box = $("v-objects");
    box.replaceChildren();
    for (const id of vs.objects) {
      const b = document.createElement("button");
      b.dataset.obj = String(id);
      b.className = id === vs.active ? "selected" : "";
      b.innerHTML = `<span class="swatch" style="background:${css(id)}"></span>object ${id}<span class="remove" title="remove object ${id}">×</span>`;
      b.addEventListener("click", (e) => {
        if (e.target.classList.contains("remove")) removeObject(id);
        else { vs.active = id; renderObjects(); }
      });
      box.append(b);
    }
  }

  // ------------------------------------------------------------------ server calls

  function upload(file) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", `/api/videos?name=${encodeURIComponent(file.name || "video")}`);
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) setStatus("uploading", `Uploading ${vs.name}…`, e.loaded / e.total);
      };
      xhr.upload.onload = () => setStatus("opening", `Decoding ${vs.name}…`, null);
      xhr.onload = () => {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
        if (xhr.status === 200) resolve(body);
        else reject(new Error((body && (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail))) || `HTTP ${xhr.status}`));
      };
      xhr.onerror = () => reject(new Error("the server cannot be reached"));
      xhr.send(file);
    });
  }

  async function openFile(file) {
    if (!file) return;
    stopPlaying();
    if (vs.videoId) fetch(`/api/videos/${vs.videoId}`, { method: "DELETE" }).catch(() => {});
    Object.assign(vs, {
      videoId: null, name: file.name || "video", prompts: {}, results: new Map(), images: new Map(),
      objects: [], active: 1, nextId: 1, job: null, lastResponse: null,
      findsConcepts: false, finds: [], found: new Set(),
    });
    renderObjects();
    setStatus("uploading", `Uploading ${vs.name}…`, 0);
    try {
      const info = await upload(file);
      Object.assign(vs, {
        videoId: info.video_id, numFrames: info.num_frames, width: info.width, height: info.height,
        fps: info.fps, nextId: info.next_obj_id, findsConcepts: Boolean(info.finds_concepts),
      });
      for (const c of [frameLayer, maskLayer, promptLayer]) { c.width = info.width; c.height = info.height; }
      // small clips are shown enlarged (pixelated), large ones fit the window
      const scale = Math.min(960 / info.width, Math.max(240, window.innerHeight - 260) / info.height);
      frameLayer.style.width = `${Math.round(info.width * scale)}px`;
      const scrub = $("v-scrub");
      scrub.max = String(info.num_frames - 1);
      $("v-layers").hidden = false;
      $("v-drop-hint").hidden = true;
      $("v-stage").classList.remove("empty");
      newObject();
      show(0);
      const secs = info.fps ? `, ${(info.num_frames / info.fps).toFixed(1)} s` : "";
      const how = vs.findsConcepts ? "Find a phrase or click an object" : "Click an object";
      setStatus("ready", `${vs.name}: ${info.width}×${info.height}, ${info.num_frames} frames${secs}. ${how} on any frame, then Track.`);
    } catch (e) {
      setStatus("error", `Could not open ${vs.name}: ${e.message}`);
    }
  }

  function newObject() {
    const id = vs.nextId;
    vs.nextId += 1;
    vs.objects.push(id);
    vs.active = id;
    renderObjects();
    updateButtons();
  }

  async function sendPrompt(t, obj) {
    const p = vs.prompts[`${t}:${obj}`];
    const body = {
      frame: t, obj_id: obj, points: p.points.map(([x, y]) => [x, y]),
      labels: p.points.map((q) => q[2]), box: p.box,
    };
    vs.pending += 1;
    setStatus("prompting", `Segmenting object ${obj} on frame ${t}…`);
    try {
      const out = await api("/prompts", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
      vs.lastResponse = out;
      vs.results.set(out.frame, labelsOf(out.objects));
      if (vs.current === out.frame) drawMasks();
      setStatus("ready", out.message  // e.g. the object is hidden there (object score < 0)
        ? `${out.message.charAt(0).toUpperCase()}${out.message.slice(1)}.`
        : `Object ${obj} on frame ${t}. Add clicks, another object, or Track.`);
    } catch (e) {
      setStatus("error", `Prompt failed: ${e.message}`);
    } finally {
      vs.pending -= 1;
      updateButtons();
    }
  }

  // SAM 3: every instance of the phrase on the shown frame starts an object
  function addObjects(ids) {
    for (const id of ids) {
      vs.found.add(id);
      if (!vs.objects.includes(id)) vs.objects.push(id);
      vs.nextId = Math.max(vs.nextId, id + 1);
    }
    vs.objects.sort((a, b) => a - b);
  }

  async function find() {
    const text = $("v-find-text").value.trim();
    if (!text || vs.phase === "tracking") return;
    const t = vs.current;
    const thresholdText = $("v-find-threshold").value.trim();
    const threshold = thresholdText === "" ? null : Number(thresholdText);
    if (threshold !== null && !(threshold > 0 && threshold < 1)) {
      setStatus("error", `The score threshold must be a number between 0 and 1 (e.g. 0.3), got “${thresholdText}”; leave it empty for the server's.`);
      return;
    }
    vs.pending += 1;
    setStatus("prompting", `Finding “${text}” on frame ${t}…`);
    try {
      const body = threshold === null ? { frame: t, text } : { frame: t, text, threshold };
      const out = await api("/find", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
      vs.lastResponse = out;
      vs.finds.push({ frame: t, text, found: out.found });
      // the empty object made for clicks keeps its place only if it has prompts
      vs.objects = vs.objects.filter((o) => vs.found.has(o) || Object.keys(vs.prompts).some((k) => Number(k.split(":")[1]) === o));
      addObjects(out.found);
      if (out.found.length) vs.active = out.found[0]; // clicks refine it
      else if (!vs.objects.includes(vs.active)) newObject();
      vs.results.set(out.frame, labelsOf(out.objects));
      renderObjects();
      if (vs.current === out.frame) drawMasks();
      const n = out.found.length;
      setStatus("ready", n ? `Found ${n} × “${text}” on frame ${t} (objects ${out.found.join(", ")}). Track to follow them; new instances are found while tracking.`
        : (out.message || `No “${text}” found on frame ${t}. Try a lower threshold, another phrase or frame.`));
    } catch (e) {
      setStatus("error", `Find failed: ${e.message}`);
    } finally {
      vs.pending -= 1;
      updateButtons();
    }
  }

  async function removeObject(id) {
    if (["tracking", "uploading", "opening"].includes(vs.phase)) return;
    try {
      if (vs.found.has(id) || Object.keys(vs.prompts).some((k) => Number(k.split(":")[1]) === id)) {
        await api(`/objects/${id}`, { method: "DELETE" });
      }
      vs.found.delete(id);
      for (const k of Object.keys(vs.prompts)) if (Number(k.split(":")[1]) === id) delete vs.prompts[k];
      for (const labels of vs.results.values()) for (let j = 0; j < labels.length; j++) if (labels[j] === id) labels[j] = 0;
      vs.objects = vs.objects.filter((o) => o !== id);
      if (vs.active === id) vs.active = vs.objects.length ? vs.objects[vs.objects.length - 1] : -1;
      if (vs.active === -1) newObject();
      renderObjects();
      show(vs.current);
      setStatus("ready", `Object ${id} removed.`);
    } catch (e) {
      setStatus("error", `Could not remove object ${id}: ${e.message}`);
    }
  }

  async function fetchFrame(t) {
    const out = await api(`/masks/${t}`);
    vs.results.set(t, labelsOf(out.objects));
    if (vs.current === t) drawMasks();
  }

  async function track() {
    stopPlaying();
    try {
      const body = { direction: $("v-direction").value };
      vs.job = await api("/track", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
    } catch (e) {
      setStatus("error", `Tracking failed: ${e.message}`);
      return;
    }
    vs.results = new Map();
    drawMasks();
    setStatus("tracking", "Tracking…", 0);
    let since = 0;
    for (;;) {
      let st;
      try {
        st = await api(`/track?since=${since}`);
      } catch (e) {
        setStatus("error", `Tracking failed: ${e.message}`);
        return;
      }
      for (const t of st.frames) await fetchFrame(t); // per-frame results, as they come
      since += st.frames.length;
      vs.job = st;
      const rate = st.frames_per_s ? `, ${st.frames_per_s.toFixed(2)} frames/s, ETA ${st.eta_s.toFixed(0)} s` : "";
      if (st.status === "running") {
        const pass = st.pass && st.pass.count > 1 ? ` (pass ${st.pass.index} of ${st.pass.count}, ${st.pass.direction}: ${st.pass.done} / ${st.pass.total})` : "";
        setStatus("tracking", `Tracking: ${st.done} / ${st.total} frames${pass}${rate}`, st.done / Math.max(st.total, 1));
        await new Promise((r) => setTimeout(r, 150));
        continue;
      }
      if (vs.findsConcepts) { // tracking finds new instances: list them
        try { addObjects((await api("")).objects.filter((o) => !vs.objects.includes(o))); renderObjects(); } catch (e) { /* shown next time */ }
      }
      if (st.status === "error") setStatus("error", `Tracking failed: ${st.error}`);
      else setStatus("ready", `Tracked ${st.done} frames in ${st.seconds.toFixed(1)} s (${st.status}). Scrub or play; click to correct and track again.`);
      return;
    }
  }

  // ------------------------------------------------------------------ playback

  let timer = null;
  function stopPlaying() {
    if (timer !== null) { clearTimeout(timer); timer = null; }
    if (vs.phase === "playing") setStatus("ready", "Stopped.");
  }
  function play() {
    if (vs.phase === "playing") { stopPlaying(); return; }
    for (let t = 0; t < vs.numFrames; t++) frameImage(t); // preload
    setStatus("playing", "Playing…");
    let t = vs.current >= vs.numFrames - 1 ? 0 : vs.current;
    const step = () => {
      show(t);
      t += 1;
      if (t >= vs.numFrames) { timer = null; setStatus("ready", "Played to the end."); return; }
      timer = setTimeout(step, 1000 / (vs.fps || 10));
    };
    step();
  }

  // ------------------------------------------------------------------ input

  function canvasPoint(evt) {
    const r = promptLayer.getBoundingClientRect();
    const x = ((evt.clientX - r.left) * vs.width) / r.width;
    const y = ((evt.clientY - r.top) * vs.height) / r.height;
    return [Math.min(Math.max(x, 0), vs.width), Math.min(Math.max(y, 0), vs.height)];
  }

  let drag = null;
  promptLayer.addEventListener("contextmenu", (e) => e.preventDefault());
  promptLayer.addEventListener("pointerdown", (e) => {
    if (vs.videoId === null || !["ready", "prompting", "error"].includes(vs.phase)) return;
    if (e.button !== 0 && e.button !== 2) return;
    promptLayer.setPointerCapture(e.pointerId);
    drag = { start: canvasPoint(e), sx: e.clientX, sy: e.clientY, button: e.button, moved: false };
  });
  promptLayer.addEventListener("pointermove", (e) => {
    if (!drag) return;
    if (Math.hypot(e.clientX - drag.sx, e.clientY - drag.sy) > 5) drag.moved = true;
    if (drag.moved && drag.button === 0) {
      const [x, y] = canvasPoint(e);
      const [x0, y0] = drag.start;
      drawPrompts([Math.min(x0, x), Math.min(y0, y), Math.max(x0, x), Math.max(y0, y)]);
    }
  });
  promptLayer.addEventListener("pointerup", (e) => {
    if (!drag) return;
    const d = drag;
    drag = null;
    const key = `${vs.current}:${vs.active}`;
    const p = vs.prompts[key] || { points: [], box: null };
    if (d.moved && d.button === 0) {
      const [x, y] = canvasPoint(e);
      const [x0, y0] = d.start;
      p.box = [Math.min(x0, x), Math.min(y0, y), Math.max(x0, x), Math.max(y0, y)];
    } else {
      const label = d.button === 2 || $("v-background").checked ? 0 : 1;
      p.points.push([d.start[0], d.start[1], label]);
    }
    vs.prompts[key] = p;
    drawPrompts();
    sendPrompt(vs.current, vs.active);
  });

  $("v-scrub").addEventListener("input", (e) => { stopPlaying(); show(Number(e.target.value)); });
  $("v-new-object").addEventListener("click", newObject);
  $("v-find").addEventListener("click", find);
  $("v-find-text").addEventListener("input", updateButtons);
  $("v-find-text").addEventListener("keydown", (e) => { if (e.key === "Enter") find(); });
  $("v-find-threshold").addEventListener("keydown", (e) => { if (e.key === "Enter") find(); });
  $("v-track").addEventListener("click", track);
  $("v-cancel").addEventListener("click", () => api("/track", { method: "DELETE" }).catch(() => {}));
  $("v-play").addEventListener("click", play);
  $("v-file").addEventListener("change", (e) => openFile(e.target.files[0]));
  const stage = $("v-stage");
  stage.addEventListener("dragover", (e) => { e.preventDefault(); stage.classList.add("dragover"); });
  stage.addEventListener("dragleave", () => stage.classList.remove("dragover"));
  stage.addEventListener("drop", (e) => {
    e.preventDefault();
    stage.classList.remove("dragover");
    if (unavailable) setStatus("error", `Not available on this server: ${unavailable}.`);
    else if (e.dataTransfer.files.length) openFile(e.dataTransfer.files[0]);
  });
  document.addEventListener("keydown", (e) => {
    if (!document.body.classList.contains("video-on") || e.target.tagName === "INPUT") return;
    if (e.key === "ArrowRight" && vs.videoId) show(Math.min(vs.current + 1, vs.numFrames - 1));
    else if (e.key === "ArrowLeft" && vs.videoId) show(Math.max(vs.current - 1, 0));
  });

  function setMode(video) {
    document.body.classList.toggle("video-on", video);
    $("mode-image").classList.toggle("selected", !video);
    $("mode-video").classList.toggle("selected", video);
    if (video && vs.videoId) show(vs.current);
  }
  $("mode-image").addEventListener("click", () => setMode(false));
  $("mode-video").addEventListener("click", () => setMode(true));

  // Whether this server's model can track (SAM 2 with memory modules), from its answer.
  let unavailable = null;
  fetch("/api/videos").then((r) => r.json()).then((info) => {
    if (!info.available) {
      unavailable = info.reason;
      $("mode-video").title = `Video mode: not available here (${info.reason})`;
      $("v-file").disabled = true;
      const open = $("v-open");
      open.classList.add("disabled");
      open.setAttribute("aria-disabled", "true");
      open.title = `Not available: ${info.reason}`;
      const hint = document.createElement("small");
      hint.textContent = "Start samkit serve with a SAM 2 model (for example --model sam2.1_hiera_tiny) to track videos.";
      $("v-drop-hint").replaceChildren(`Not available on this server: ${info.reason}.`, document.createElement("br"), hint);
      setStatus("error", `Not available on this server: ${info.reason}.`);
    } else {
      const l = info.limits;
      $("v-drop-hint").firstChild.textContent =
        `Drop a short video here (up to ${l.max_frames} frames, ${l.max_seconds} s, ${(l.max_bytes / 2 ** 20).toFixed(0)} MiB)`;
    }
  }).catch(() => {});

  // For tests and the curious: the state, and the displayed mask layer (alpha > 0) and the
  // object ids it shows, as base64 of one byte per pixel.
  function b64(bytes) {
    let s = "";
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(s);
  }
  window.samkitVideo = {
    state: vs,
    show,
    setMode,
    maskLayerBase64() {
      const d = maskLayer.getContext("2d").getImageData(0, 0, maskLayer.width, maskLayer.height).data;
      const bytes = new Uint8Array(d.length / 4);
      for (let j = 0; j < bytes.length; j++) bytes[j] = d[4 * j + 3] > 0 ? 1 : 0;
      return b64(bytes);
    },
    labelsBase64() {
      return b64(vs.results.get(vs.current) || new Uint8Array(vs.width * vs.height));
    },
  };
  updateButtons();
})();
