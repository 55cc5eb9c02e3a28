// samkit web app, SAM 3: find every instance of a phrase, toggle them, refine one with clicks,
// download the shown ones as COCO JSON. Shown only when /api/info says `find.available`.
// Uses app.js through window.samkit (state, postJson, setStatus, decodeRle, predict, palette).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const layer = $("find-layer");
  const find = {
    available: false,
    imageId: null, // the image the instances belong to
    text: "",
    threshold: 0.5,
    instances: [], // server records + {mask: Uint8Array, visible: bool}
    pending: false,
    seq: 0,
  };

  function app() { return window.samkit; }

  function updateButtons() {
    if (!find.available) return;
    const st = app().state;
    const haveImage = st.imageId !== null && !["uploading", "encoding"].includes(st.phase);
    $("find-text").disabled = !haveImage;
    $("find-run").disabled = !haveImage || find.pending;
    $("find-download").disabled = !find.instances.some((i) => i.visible);
  }

  function draw() {
    const st = app().state;
    if (layer.width !== st.width || layer.height !== st.height) {
      layer.width = st.width;
      layer.height = st.height;
    }
    const ctx = layer.getContext("2d");
    ctx.clearRect(0, 0, layer.width, layer.height);
    const n = st.width * st.height;
    if (!n || !find.instances.length) return;
    const img = ctx.createImageData(st.width, st.height);
    const px = img.data;
    // lowest score first, so that the best instance is on top where they overlap
    for (let k = find.instances.length - 1; k >= 0; k--) {
      const inst = find.instances[k];
      if (!inst.visible) continue;
      const [r, g, b] = app().palette(k);
      const m = inst.mask;
      for (let j = 0; j < n; j++) {
        if (m[j]) { px[4 * j] = r; px[4 * j + 1] = g; px[4 * j + 2] = b; px[4 * j + 3] = 130; }
      }
    }
    ctx.putImageData(img, 0, 0);
  }

  function renderList(message) {
    const list = $("find-list");
    list.replaceChildren();
    const span = document.createElement("span");
    span.className = "muted find-count";
    span.textContent = find.instances.length
      ? `${find.instances.length} instance${find.instances.length > 1 ? "s" : ""} (score):`
      : message || "type a phrase and press Enter";
    span.title = find.instances.length ? "scroll the list sideways to see them all" : span.textContent;
    list.append(span);
    find.instances.forEach((inst, k) => {
      const item = document.createElement("span");
      item.className = "find-item";
      item.dataset.index = String(k);
      const [r, g, b] = app().palette(k);
      const label = document.createElement("label");
      label.title = `score ${inst.score.toFixed(4)} (the model's confidence), area ${inst.area} px; untick to hide`;
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = inst.visible;
      box.addEventListener("change", () => { inst.visible = box.checked; draw(); updateButtons(); });
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = `rgb(${r}, ${g}, ${b})`;
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = inst.score.toFixed(3);
      label.append(box, swatch, `#${k + 1} `, score);
      const refine = document.createElement("button");
      refine.className = "refine";
      refine.textContent = "refine";
      refine.title = "Start the click prompts from this instance's box (the interactive head); then click to add points";
      refine.addEventListener("click", () => refineInstance(inst));
      item.append(label, refine);
      list.append(item);
    });
  }

  function reset() {
    find.imageId = app().state.imageId;
    find.instances = [];
    find.seq += 1;
    renderList();
    draw();
  }

  async function run() {
    const st = app().state;
    const text = $("find-text").value.trim();
    if (st.imageId === null) return;
    if (!text) { app().setStatus("error", "Find: type a phrase first (e.g. dog)"); return; }
    const threshold = $("find-threshold").valueAsNumber;
    if (!(threshold > 0 && threshold < 1)) {  // as the server (and the video Find) take it
      app().setStatus("error", "Find: the threshold must be a number between 0 and 1 (exclusive), e.g. 0.5");
      return;
    }
    const seq = ++find.seq;
    find.pending = true;
    updateButtons();
    app().setStatus("predicting", `Finding "${text}"…`);
    const t0 = performance.now();
    try {
      const out = await app().postJson("find", { text, threshold });
      if (seq !== find.seq) return;
      find.imageId = out.image_id;
      find.text = out.text;
      find.threshold = out.threshold;
      find.instances = out.instances.map((a) => ({ ...a, mask: app().decodeRle(a.segmentation), visible: true }));
      renderList(out.message);
      draw();
      const ms = (performance.now() - t0).toFixed(0);
      app().setStatus("ready", out.instances.length
        ? `${out.instances.length} instances of "${out.text}" (score > ${out.threshold}) in ${ms} ms.`
        : `${out.message} (${ms} ms)`);
    } catch (e) {
      if (seq === find.seq) app().setStatus("error", `Find failed: ${e.message}`);
    } finally {
      if (seq === find.seq) find.pending = false;
      updateButtons();
    }
  }

  function refineInstance(inst) {
    const st = app().state;
    const [x0, y0, x1, y1] = inst.box_xyxy;
    const clip = (v, hi) => Math.min(Math.max(v, 0), hi);
    const box = [clip(x0, st.width), clip(y0, st.height), clip(x1, st.width), clip(y1, st.height)];
    st.actions = [{ type: "box", box }];
    app().predict();
  }

  function download() {
    const st = app().state;
    const shown = find.instances.filter((i) => i.visible);
    if (!shown.length) return;
    // A COCO instance-segmentation file (pycocotools.coco.COCO loads it); the phrase is the category.
    const doc = {
      info: { description: "samkit web app, SAM 3 find", samkit_image_id: find.imageId, threshold: find.threshold },
      images: [{ id: 1, file_name: st.fileName, height: st.height, width: st.width }],
      annotations: shown.map(({ mask, visible, ...a }, i) => ({ ...a, id: i + 1, image_id: 1, category_id: 1, iscrowd: 0 })),
      categories: [{ id: 1, name: find.text, supercategory: "concept" }],
    };
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([JSON.stringify(doc)], { type: "application/json" }));
    a.download = `${st.fileName.replace(/\.[^.]+$/, "") || "image"}_${find.text.replace(/[^A-Za-z0-9_-]+/g, "_")}.json`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }

  $("find-run").addEventListener("click", run);
  $("find-text").addEventListener("keydown", (e) => {
    e.stopPropagation(); // typing "b" is not the background-points shortcut
    if (e.key === "Enter") { e.preventDefault(); run(); }
  });
  $("find-download").addEventListener("click", download);
  document.addEventListener("samkit:state", () => {
    if (!find.available) return;
    if (app().state.imageId !== null && app().state.imageId !== find.imageId && !find.pending) reset();
    updateButtons();
  });

  fetch("/api/info").then((r) => r.json()).then((info) => {
    find.available = Boolean(info.find && info.find.available);
    $("find-row").hidden = !find.available;
    if (find.available) { renderList(); updateButtons(); }
  }).catch(() => {});

  window.samkitFind = { find, run, draw };
})();
