// samkit web app: open an image, click / drag prompts, see masks. Plain JS, no build step.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const imageLayer = $("image-layer");
  const maskLayer = $("mask-layer");
  const promptLayer = $("prompt-layer");
  const MASK_RGBA = [30, 144, 255, 140];
  const FAMILIES = { sam1: "SAM 1", sam2: "SAM 2", sam3: "SAM 3" };

  const state = {
    phase: "empty", // empty | uploading | encoding | ready | predicting | everything | error
    file: null,
    fileName: "",
    imageId: null,
    width: 0,
    height: 0,
    actions: [], // {type: "point", x, y, label} | {type: "box", box: [x0, y0, x1, y1]}
    candidates: [], // server records {score, area, bbox, segmentation}
    masks: [], // decoded Uint8Array(h * w), row-major, per candidate
    selected: -1,
    everything: null, // annotations of "segment everything"
    settings: [], // the "segment everything" fields, from /api/info: {name, label, default, ...}
    everythingWhy: null, // why the last "segment everything" kept no mask (the server's words)
    bitmap: null, // the shown photo (redrawn when a new upload is refused)
    pending: 0,
    seq: 0,
    error: null,
    lastResponse: null,
  };

  // ------------------------------------------------------------------ helpers

  function setStatus(phase, text, progress) {
    state.phase = phase;
    $("status").dataset.phase = phase;
    $("status-text").textContent = text;
    const bar = $("progress");
    if (progress === undefined) {
      bar.hidden = true;
    } else {
      bar.hidden = false;
      if (progress === null) bar.removeAttribute("value");
      else bar.value = progress;
    }
    document.body.classList.toggle("busy", ["uploading", "encoding", "everything"].includes(phase));
    updateButtons();
    document.dispatchEvent(new Event("samkit:state")); // find.js (SAM 3) follows the image
  }

  function updateButtons() {
    const haveImage = state.imageId !== null;
    const idle = !["uploading", "encoding", "everything"].includes(state.phase);
    $("undo").disabled = !(haveImage && idle && state.actions.length);
    $("clear").disabled = !(haveImage && idle && (state.actions.length || state.everything));
    const everythingOff = state.info && state.info.everything && !state.info.everything.available;
    $("everything").disabled = !(haveImage && idle) || Boolean(everythingOff);
    $("download-png").disabled = !(state.selected >= 0 && !state.everything);
    $("download-json").disabled = !(state.selected >= 0 || (state.everything && state.everything.length));
  }

  async function errorText(resp) {
    try {
      const body = await resp.json();
      if (typeof body.detail === "string") return body.detail;
      return JSON.stringify(body.detail);
    } catch (e) {
      return `${resp.status} ${resp.statusText}`;
    }
  }

  // COCO compressed RLE string -> run lengths (pycocotools' rleFrString), exact for any size.
  function rleStringToCounts(s) {
    const counts = [];
    let p = 0;
    while (p < s.length) {
      let x = 0;
      let k = 0;
      let more = true;
      while (more) {
        const c = s.charCodeAt(p) - 48;
        x += (c & 0x1f) * 2 ** (5 * k);
        more = (c & 0x20) !== 0;
        p += 1;
        k += 1;
        if (!more && (c & 0x10)) x -= 2 ** (5 * k);
      }
      if (counts.length > 2) x += counts[counts.length - 2];
      counts.push(x);
    }
    return counts;
  }

  // RLE (column-major runs, zeros first) -> row-major Uint8Array of 0/1.
  function decodeRle(rle) {
    const [h, w] = rle.size;
    const counts = typeof rle.counts === "string" ? rleStringToCounts(rle.counts) : rle.counts;
    const mask = new Uint8Array(h * w);
    let idx = 0;
    for (let i = 0; i < counts.length; i++) {
      const n = counts[i];
      if (i % 2 === 1) {
        for (let j = idx; j < idx + n; j++) {
          const col = Math.floor(j / h);
          mask[(j - col * h) * w + col] = 1;
        }
      }
      idx += n;
    }
    return mask;
  }

  function palette(i) {
    const hue = (i * 0.618033988749895) % 1;
    const f = (n) => {
      const k = (n + hue * 12) % 12;
      return Math.round(255 * (0.55 - 0.45 * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
    };
    return [f(0), f(8), f(4)];
  }

  // ------------------------------------------------------------------ drawing

  function canvasPoint(evt) {
    const r = promptLayer.getBoundingClientRect();
    const x = ((evt.clientX - r.left) * state.width) / r.width;
    const y = ((evt.clientY - r.top) * state.height) / r.height;
    return [Math.min(Math.max(x, 0), state.width), Math.min(Math.max(y, 0), state.height)];
  }

  function drawMasks() {
    const ctx = maskLayer.getContext("2d");
    ctx.clearRect(0, 0, maskLayer.width, maskLayer.height);
    const n = state.width * state.height;
    if (!n) return;
    const img = ctx.createImageData(state.width, state.height);
    const px = img.data;
    if (state.everything) {
      const order = state.everything.map((a, i) => i).sort((a, b) => state.everything[b].area - state.everything[a].area);
      for (const i of order) {
        const m = state.everything[i].mask;
        const [r, g, b] = palette(i);
        for (let j = 0; j < n; j++) {
          if (m[j]) { px[4 * j] = r; px[4 * j + 1] = g; px[4 * j + 2] = b; px[4 * j + 3] = 150; }
        }
      }
    } else if (state.selected >= 0) {
      const m = state.masks[state.selected];
      for (let j = 0; j < n; j++) {
        if (m[j]) {
          px[4 * j] = MASK_RGBA[0]; px[4 * j + 1] = MASK_RGBA[1];
          px[4 * j + 2] = MASK_RGBA[2]; px[4 * j + 3] = MASK_RGBA[3];
        }
      }
    }
    ctx.putImageData(img, 0, 0);
  }

  function drawPrompts(preview) {
    const ctx = promptLayer.getContext("2d");
    ctx.clearRect(0, 0, promptLayer.width, promptLayer.height);
    const scale = state.width / (promptLayer.getBoundingClientRect().width || state.width);
    const r = 6 * scale;
    const boxes = state.actions.filter((a) => a.type === "box").slice(-1).map((a) => a.box);
    if (preview) boxes.push(preview);
    for (const [x0, y0, x1, y1] of boxes) {
      ctx.lineWidth = 4 * scale; ctx.strokeStyle = "#fff";
      ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
      ctx.lineWidth = 2 * scale; ctx.strokeStyle = "#1e90ff";
      ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    }
    for (const a of state.actions) {
      if (a.type !== "point") continue;
      ctx.beginPath();
      ctx.arc(a.x, a.y, r, 0, 2 * Math.PI);
      ctx.fillStyle = a.label === 1 ? "#28c83c" : "#e62828";
      ctx.fill();
      ctx.lineWidth = 2 * scale; ctx.strokeStyle = "#fff";
      ctx.stroke();
    }
  }

  function renderCandidates() {
    const box = $("candidates");
    box.replaceChildren();
    if (state.everything) {
      const span = document.createElement("span");
      span.className = "muted";
      span.textContent = state.everything.length || !state.everythingWhy
        ? `${state.everything.length} masks (segment everything)`
        : "0 masks (segment everything)";
      box.append(span);
    } else if (!state.candidates.length) {
      const span = document.createElement("span");
      span.className = "muted";
      span.textContent = state.imageId === null ? "open an image first" : "click the image to get candidates";
      box.append(span);
    }
    state.candidates.forEach((c, i) => {
      const b = document.createElement("button");
      b.className = i === state.selected ? "selected" : "";
      b.dataset.index = String(i);
      b.innerHTML = `Mask ${i + 1} <span class="score">IoU ${c.score.toFixed(3)}</span>`;
      b.title = `predicted IoU ${c.score.toFixed(4)} (the model's estimate of the mask's quality), area ${c.area} px`;
      b.addEventListener("click", () => { state.selected = i; renderCandidates(); drawMasks(); updateButtons(); });
      box.append(b);
    });
  }

  // ------------------------------------------------------------------ server calls

  function upload(file) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "/api/images");
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) setStatus("uploading", `Uploading ${state.fileName}…`, e.loaded / e.total);
      };
      xhr.upload.onload = () => setStatus("encoding", `Computing the image embedding of ${state.fileName}…`, null);
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

  // The image area's height: what the window has left below the (fixed-height) rows above it.
  function fitImage() {
    const top = $("stage").getBoundingClientRect().top + window.scrollY;
    const room = Math.max(160, window.innerHeight - top - 24);
    document.documentElement.style.setProperty("--image-max-height", `${room}px`);
  }

  function showImage(source, width, height) {
    for (const c of [imageLayer, maskLayer, promptLayer]) { c.width = width; c.height = height; }
    const ctx = imageLayer.getContext("2d");
    if (source) ctx.drawImage(source, 0, 0, width, height);
    else { ctx.fillStyle = "#888"; ctx.fillRect(0, 0, width, height); }
    $("layers").hidden = false;
    $("drop-hint").hidden = true;
    $("stage").classList.remove("empty");
    fitImage();
  }

  function showEmpty() {
    $("layers").hidden = true;
    $("drop-hint").hidden = false;
    $("stage").classList.add("empty");
  }

  async function openFile(file) {
    if (!file) return;
    // What is shown now, to come back to if the new file is refused.
    const previous = {
      file: state.file, fileName: state.fileName, imageId: state.imageId, width: state.width,
      height: state.height, bitmap: state.bitmap, actions: state.actions,
    };
    state.file = file;
    state.fileName = file.name || "image";
    state.imageId = null;
    state.actions = [];
    clearMasks();
    showWarnings([]);
    setStatus("uploading", `Uploading ${state.fileName}…`, 0);
    const t0 = performance.now();
    const timer = setInterval(() => {
      if (state.phase === "encoding") {
        $("status-text").textContent = `Computing the image embedding of ${state.fileName}… ${((performance.now() - t0) / 1000).toFixed(1)} s`;
      }
    }, 100);
    // The photo is shown at once; prompts wait for the embedding (buttons stay disabled).
    const bitmap = await createImageBitmap(file).catch(() => null);
    if (bitmap) {
      state.width = bitmap.width;
      state.height = bitmap.height;
      showImage(bitmap, bitmap.width, bitmap.height);
      drawMasks();
      drawPrompts();
    }
    try {
      const info = await upload(file);
      state.imageId = info.image_id;
      state.width = info.width;
      state.height = info.height;
      state.bitmap = bitmap;
      showImage(bitmap, info.width, info.height);
      drawMasks();
      drawPrompts();
      renderCandidates();
      const how = info.cached ? "embedding cached" : `embedding computed in ${(info.encode_ms / 1000).toFixed(2)} s`;
      setStatus("ready", `${state.fileName}: ${info.width}×${info.height}, ${how}. Click to add points, drag for a box.`);
    } catch (e) {
      const refused = state.fileName;
      Object.assign(state, previous);
      if (state.imageId !== null) {
        showImage(state.bitmap, state.width, state.height);
        drawMasks();
        drawPrompts();
        renderCandidates();
        setStatus("error", `Could not open ${refused}: ${e.message}. Still showing ${state.fileName}.`);
        if (state.actions.length) predict(true);
      } else {
        showEmpty();
        renderCandidates();
        setStatus("error", `Could not open ${refused}: ${e.message}`);
      }
    } finally {
      clearInterval(timer);
    }
  }

  async function ensureImage() {
    // The server may have evicted the embedding: upload the same file again (same image id).
    const info = await upload(state.file);
    state.imageId = info.image_id;
  }

  async function postJson(path, body, retry = true) {
    const resp = await fetch(`/api/images/${state.imageId}/${path}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (resp.status === 404 && retry && state.file) {
      await ensureImage();
      return postJson(path, body, false);
    }
    if (!resp.ok) throw new Error(await errorText(resp));
    return resp.json();
  }

  function promptBody() {
    const points = state.actions.filter((a) => a.type === "point");
    const boxes = state.actions.filter((a) => a.type === "box");
    return {
      points: points.map((a) => [a.x, a.y]),
      labels: points.map((a) => a.label),
      box: boxes.length ? boxes[boxes.length - 1].box : null,
      multimask: true,
    };
  }

  function clearMasks() {
    state.candidates = [];
    state.masks = [];
    state.selected = -1;
    state.everything = null;
    state.lastResponse = null;
    showEverythingWhy(null);
    showWarnings([]);
    renderCandidates();
    drawMasks();
  }

  function showWarnings(warnings) {
    const el = $("warning-text");
    el.hidden = !warnings.length;
    el.textContent = warnings.length ? `Warning: ${warnings.join("; ")}` : "";
    el.title = el.textContent;
  }

  async function predict(keepStatus = false) {
    drawPrompts();
    state.everything = null;
    if (!state.actions.length) { clearMasks(); setStatus("ready", "No prompts. Click to add points, drag for a box."); return; }
    const seq = ++state.seq;
    state.pending += 1;
    const status = [state.phase, $("status-text").textContent];
    setStatus("predicting", "Predicting…");
    try {
      const body = promptBody();
      const t0 = performance.now();
      const out = await postJson("predict", body);
      if (seq !== state.seq) return; // a newer click superseded this answer
      state.lastResponse = out;
      state.candidates = out.masks;
      state.masks = out.masks.map((m) => decodeRle(m.segmentation));
      state.selected = out.best;
      renderCandidates();
      drawMasks();
      showWarnings(out.warnings || []);
      const ms = performance.now() - t0;
      if (keepStatus) setStatus(...status);
      else setStatus("ready", `${out.masks.length} candidate masks (best predicted IoU ${out.masks[out.best].score.toFixed(3)}) in ${ms.toFixed(0)} ms.`);
    } catch (e) {
      if (seq === state.seq) setStatus("error", `Prediction failed: ${e.message}`);
    } finally {
      state.pending -= 1;
    }
  }

  // The settings panel, built from the server's list: the same names as in its explanations.
  function buildSettings(info) {
    const box = $("settings-fields");
    box.replaceChildren();
    state.settings = info.everything_settings || [];
    for (const f of state.settings) {
      const label = document.createElement("label");
      label.dataset.setting = f.name;
      label.title = `${f.help} (${f.name} in the API, --${f.name.replaceAll("_", "-")} in samkit auto)`;
      const input = document.createElement("input");
      Object.assign(input, { id: `setting-${f.name}`, type: "number", min: f.min, max: f.max, step: f.step, value: f.default });
      label.append(`${f.label} `, input);
      box.append(label);
    }
    const off = info.everything && !info.everything.available ? info.everything.reason : null;
    if (off) $("everything").title = off;
    $("settings-note").textContent = off || `Defaults: those of samkit auto for this ${FAMILIES[info.family]} model.`;
  }

  function everythingSettings() {
    const body = {};
    for (const f of state.settings) body[f.name] = $(`setting-${f.name}`).valueAsNumber;
    return body; // NaN (an empty field) is sent as null: the server's default
  }

  // Why "segment everything" kept no mask: shown in the open settings, next to the fields it names.
  function showEverythingWhy(message) {
    state.everythingWhy = message;
    const el = $("everything-why");
    el.hidden = !message;
    el.textContent = message || "";
    for (const f of state.settings) {
      const label = document.querySelector(`label[data-setting="${f.name}"]`);
      if (label) label.classList.toggle("named", Boolean(message && message.includes(`"${f.label}"`)));
    }
    if (message) document.querySelector("details.settings").open = true;
  }

  async function segmentEverything() {
    const seq = ++state.seq;
    state.pending += 1;
    const t0 = performance.now();
    setStatus("everything", "Segmenting everything…", null);
    const timer = setInterval(() => {
      $("status-text").textContent = `Segmenting everything… ${((performance.now() - t0) / 1000).toFixed(1)} s`;
    }, 100);
    try {
      const out = await postJson("everything", everythingSettings());
      if (seq !== state.seq) return;
      state.actions = [];
      clearMasks();
      state.everything = out.annotations.map((a) => ({ ...a, mask: decodeRle(a.segmentation) }));
      const why = out.annotations.length ? null : out.message;
      showEverythingWhy(why);
      renderCandidates();
      drawPrompts();
      drawMasks();
      const secs = `${(out.elapsed_ms / 1000).toFixed(1)} s`;
      setStatus("ready", why
        ? `0 masks in ${secs}: the settings removed all ${out.filter_counts.candidates} candidate masks (why: see settings).`
        : `${out.annotations.length} masks in ${secs}.`);
      $("status-text").title = why || "";
    } catch (e) {
      if (seq === state.seq) setStatus("error", `Segment everything failed: ${e.message}`);
    } finally {
      clearInterval(timer);
      state.pending -= 1;
    }
  }

  // ------------------------------------------------------------------ downloads

  function saveBlob(blob, name) {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = name;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }

  function stem() { return state.fileName.replace(/\.[^.]+$/, "") || "image"; }

  // The PNG comes from the server's mask writer, the one the CLI and the quickstart use.
  async function downloadPng() {
    if (state.selected < 0) return;
    const selected = state.selected;
    try {
      const out = await postJson("predict", { ...promptBody(), png: true });
      const bytes = Uint8Array.from(atob(out.masks[selected].png), (c) => c.charCodeAt(0));
      saveBlob(new Blob([bytes], { type: "image/png" }), `${stem()}_mask.png`);
    } catch (e) {
      setStatus("error", `Download failed: ${e.message}`);
    }
  }

  function downloadJson() {
    // A COCO instance-segmentation file (pycocotools.coco.COCO loads it), like `samkit auto`.
    let annotations;
    if (state.everything) {
      annotations = state.everything.map(({ mask, ...a }) => a);
    } else if (state.selected >= 0) {
      const c = state.candidates[state.selected];
      const body = promptBody();
      annotations = [{
        segmentation: c.segmentation, area: c.area, bbox: c.bbox, predicted_iou: c.score,
        point_coords: body.points, point_labels: body.labels, box: body.box,
      }];
    } else return;
    const doc = {
      info: { description: "samkit web app", samkit_image_id: state.imageId },
      images: [{ id: 1, file_name: state.fileName, height: state.height, width: state.width }],
      annotations: annotations.map((a, i) => ({ ...a, id: i + 1, image_id: 1, category_id: 1, iscrowd: 0 })),
      categories: [{ id: 1, name: "object", supercategory: "object" }],
    };
    saveBlob(new Blob([JSON.stringify(doc)], { type: "application/json" }), `${stem()}.json`);
  }

  // ------------------------------------------------------------------ input

  let drag = null;
  promptLayer.addEventListener("contextmenu", (e) => e.preventDefault());
  promptLayer.addEventListener("pointerdown", (e) => {
    if (state.imageId === null || !["ready", "predicting", "error"].includes(state.phase)) return;
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
    const [x, y] = canvasPoint(e);
    if (d.moved && d.button === 0) {
      const [x0, y0] = d.start;
      const box = [Math.min(x0, x), Math.min(y0, y), Math.max(x0, x), Math.max(y0, y)];
      state.actions.push({ type: "box", box });
    } else {
      const label = d.button === 2 || $("background").checked ? 0 : 1;
      state.actions.push({ type: "point", x: d.start[0], y: d.start[1], label });
    }
    predict();
  });

  $("undo").addEventListener("click", () => { state.actions.pop(); predict(); });
  $("clear").addEventListener("click", () => { state.actions = []; state.seq += 1; clearMasks(); drawPrompts(); setStatus("ready", "Cleared."); });
  $("everything").addEventListener("click", segmentEverything);
  $("download-png").addEventListener("click", downloadPng);
  $("download-json").addEventListener("click", downloadJson);
  $("file").addEventListener("change", (e) => openFile(e.target.files[0]));
  document.addEventListener("keydown", (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === "z" && !$("undo").disabled) { e.preventDefault(); $("undo").click(); }
    else if (e.key === "Escape" && !$("clear").disabled) $("clear").click();
    else if (e.key === "b" || e.key === "B") $("background").checked = !$("background").checked;
  });
  const stage = $("stage");
  stage.addEventListener("dragover", (e) => { e.preventDefault(); stage.classList.add("dragover"); });
  stage.addEventListener("dragleave", () => stage.classList.remove("dragover"));
  stage.addEventListener("drop", (e) => {
    e.preventDefault();
    stage.classList.remove("dragover");
    if (e.dataTransfer.files.length) openFile(e.dataTransfer.files[0]);
  });

  fetch("/api/info").then((r) => r.json()).then((info) => {
    state.info = info;
    $("model").textContent = `${info.model} (${FAMILIES[info.family] || info.family})`;
    $("random-warning").hidden = !info.random_weights;
    buildSettings(info);
  }).catch(() => {});

  // For tests and the curious: the state, and the displayed mask layer as base64 of 0/1 bytes.
  window.addEventListener("resize", fitImage);
  fitImage();

  window.samkit = {
    state,
    decodeRle,
    predict,
    postJson,
    setStatus,
    palette,
    maskLayerBase64() {
      const d = maskLayer.getContext("2d").getImageData(0, 0, maskLayer.width, maskLayer.height).data;
      const bytes = new Uint8Array(d.length / 4);
      for (let j = 0; j < bytes.length; j++) bytes[j] = d[4 * j + 3] > 0 ? 1 : 0;
      let s = "";
      for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
      return btoa(s);
    },
  };
  updateButtons();
})();
