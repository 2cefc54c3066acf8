// The vplink page: pick a picture, drag a box on it, link it, watch the agent's steps, read the answer.
// Everything that comes from data is inserted as text (textContent / text nodes), never as markup.
"use strict";

const STEPS = ["prepare", "describe", "retrieve", "rerank", "decide"];
const RED = "#e00000";
const FACE = "#00b4e6";
const $ = (id) => document.getElementById(id);

const state = {
  image: null,      // the HTMLImageElement shown
  file: null,       // the uploaded File, or null
  path: null,       // or the picture's path under the server's image root
  box: null,        // [x0, y0, x1, y1] in the picture's pixels, or null: the whole picture
  drag: null,       // {x, y} where a drag started, in picture pixels
  faces: null,      // evidence.faces of the last result, drawn over the picture
  imageSize: null,  // the size the evidence was computed at (faces' boxes are in its pixels)
  people: null,     // after "Find everyone": [{number, box, person, result}] per box, drawn with its name
  selected: null,   // the index into people whose result is shown
};
const UNKNOWN = "#808080";

/** An element with attributes and children; a string child becomes a text node. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "style") node.style.cssText = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
const fmt = (value, digits = 3) => (typeof value === "number" ? value.toFixed(digits) : String(value ?? ""));
const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);

// ------------------------------------------------------------------ the picture and the box

function scale() { return state.image ? $("canvas").width / state.image.naturalWidth : 1; }

function fitCanvas() {
  // The picture fills the column (small pictures are enlarged so a box is easy to draw), at most 70% of the
  // window high; the box is always kept in the picture's own pixels.
  const canvas = $("canvas");
  const fit = Math.min(($("stage").clientWidth || 560) / state.image.naturalWidth,
                       (window.innerHeight * 0.7) / state.image.naturalHeight);
  const width = state.image.naturalWidth * Math.max(fit, 0.05);
  canvas.width = Math.max(1, Math.round(width));
  canvas.height = Math.max(1, Math.round(state.image.naturalHeight * canvas.width / state.image.naturalWidth));
}

function draw() {
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!state.image) return;
  ctx.drawImage(state.image, 0, 0, canvas.width, canvas.height);
  if (state.people) drawPeople(ctx);
  else drawFaces(ctx);
  if (state.box) {
    const [x0, y0, x1, y1] = state.box.map((v) => v * scale());
    ctx.lineWidth = Math.max(2, Math.round(canvas.width / 200));
    ctx.strokeStyle = RED;
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
  }
}

function drawFaces(ctx) {
  const faces = (state.faces && Array.isArray(state.faces.faces)) ? state.faces.faces : [];
  if (!faces.length || !state.image) return;
  const analysed = Array.isArray(state.imageSize) && state.imageSize[0] ? state.imageSize[0] : state.image.naturalWidth;
  const k = $("canvas").width / analysed;
  const fontSize = Math.max(11, Math.round($("canvas").width / 40));
  ctx.font = `bold ${fontSize}px system-ui, sans-serif`;
  faces.forEach((face, index) => {
    if (!face || !Array.isArray(face.box) || face.box.length !== 4) return;
    const [x0, y0, x1, y1] = face.box.map((v) => Number(v) * k);
    const marked = index === state.faces.marked;
    ctx.lineWidth = marked ? 2 : 1.5;
    ctx.strokeStyle = FACE;
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    const label = String(index + 1);
    const w = ctx.measureText(label).width + 6;
    ctx.fillStyle = marked ? RED : FACE;
    ctx.fillRect(x0, Math.max(0, y0 - fontSize - 4), w, fontSize + 4);
    ctx.fillStyle = marked ? "#fff" : "#000";
    ctx.fillText(label, x0 + 3, Math.max(fontSize, y0 - 4));
  });
}

function drawPeople(ctx) {
  const k = scale();
  const fontSize = Math.max(11, Math.round($("canvas").width / 45));
  ctx.font = `bold ${fontSize}px system-ui, sans-serif`;
  state.people.forEach((entry, index) => {
    if (!Array.isArray(entry.box)) return;
    const [x0, y0, x1, y1] = entry.box.map((v) => Number(v) * k);
    const colour = entry.person.answer ? RED : UNKNOWN;
    ctx.lineWidth = index === state.selected ? 4 : 2;
    ctx.strokeStyle = colour;
    ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    const label = `${entry.number}. ${entry.person.name || "unknown"}`;  // drawn as text on the canvas, not markup
    const w = ctx.measureText(label).width + 6;
    const top = Math.min(y1, $("canvas").height - fontSize - 4);
    ctx.fillStyle = colour;
    ctx.fillRect(Math.min(x0, $("canvas").width - w), top, w, fontSize + 4);
    ctx.fillStyle = "#fff";
    ctx.fillText(label, Math.min(x0, $("canvas").width - w) + 3, top + fontSize);
  });
}

function personAt(point) {
  if (!state.people) return -1;
  // The smallest box under the point: a face box inside a bigger one is the one meant.
  let best = -1;
  let area = Infinity;
  state.people.forEach((entry, index) => {
    const [x0, y0, x1, y1] = entry.box || [0, 0, 0, 0];
    const size = (x1 - x0) * (y1 - y0);
    if (point.x >= x0 && point.x <= x1 && point.y >= y0 && point.y <= y1 && size < area) { best = index; area = size; }
  });
  return best;
}

function toPicture(event) {
  const rect = $("canvas").getBoundingClientRect();
  const k = state.image.naturalWidth / rect.width;
  const clamp = (v, hi) => Math.max(0, Math.min(hi, Math.round(v)));
  return { x: clamp((event.clientX - rect.left) * k, state.image.naturalWidth),
           y: clamp((event.clientY - rect.top) * (state.image.naturalHeight / rect.height), state.image.naturalHeight) };
}

function boxFrom(a, b) {
  return [Math.min(a.x, b.x), Math.min(a.y, b.y), Math.max(a.x, b.x), Math.max(a.y, b.y)];
}

function setBox(box) {
  state.box = box;
  $("box").value = box ? box.join(",") : "";
  draw();
}

$("canvas").addEventListener("mousedown", (event) => {
  if (!state.image || event.button !== 0) return;
  event.preventDefault();
  state.drag = toPicture(event);
});
window.addEventListener("mousemove", (event) => {
  if (!state.drag) return;
  state.box = boxFrom(state.drag, toPicture(event));
  $("box").value = state.box.join(",");
  draw();
});
window.addEventListener("mouseup", (event) => {
  if (!state.drag) return;
  const end = toPicture(event);
  const box = boxFrom(state.drag, end);
  state.drag = null;
  const clicked = box[2] - box[0] < 4 && box[3] - box[1] < 4 ? personAt(end) : -1;
  if (clicked >= 0) { setBox(null); selectPerson(clicked); return; }
  // A click (or a sliver) is not a box: keep the whole picture rather than a box the server refuses.
  setBox(box[2] - box[0] >= 4 && box[3] - box[1] >= 4 ? box : null);
});
$("box").addEventListener("change", () => {
  const parts = $("box").value.split(/[\s,]+/).filter(Boolean).map(Number);
  const drawable = parts.length === 4 && parts.every(Number.isFinite) && parts[0] < parts[2] && parts[1] < parts[3];
  // A malformed or inverted box is not drawn (it would look valid); it stays in the field as typed, and
  // the server's answer says what is wrong with it.
  state.box = drawable ? parts : null;
  draw();
});
$("clear").addEventListener("click", () => setBox(null));

function showPicture(url, source) {
  const image = new Image();
  image.onload = () => {
    if (state.image && state.image.src.startsWith("blob:")) URL.revokeObjectURL(state.image.src);
    state.image = image;
    Object.assign(state, source, { faces: null, imageSize: null, people: null, selected: null });
    $("placeholder").hidden = true;
    $("people-panel").hidden = true;
    $("go").disabled = false;
    $("everyone").disabled = false;
    fitCanvas();
    setBox(null);
    $("status").textContent = `${image.naturalWidth} × ${image.naturalHeight} px: drag on it to mark a box`;
  };
  image.onerror = () => showError("The browser cannot show this file as a picture; choose a JPEG or PNG.");
  image.src = url;
}

$("file").addEventListener("change", () => {
  const file = $("file").files[0];
  if (!file) return;
  $("picker").value = "";
  showPicture(URL.createObjectURL(file), { file, path: null });
});
$("picker").addEventListener("change", () => {
  const path = $("picker").value;
  if (!path) return;
  $("file").value = "";
  const url = "pictures/" + path.split("/").map(encodeURIComponent).join("/");
  showPicture(url, { file: null, path });
});
window.addEventListener("resize", () => { if (state.image) { fitCanvas(); draw(); } });

// ------------------------------------------------------------------ asking the service

$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData();
  if (state.file) form.append("image", state.file, state.file.name);
  else if (state.path) form.append("path", state.path);
  form.append("box", $("box").value.trim());
  form.append("text", $("text").value);
  form.append("mention", $("mention").value);
  startRun();
  try {
    const response = await fetch("link/stream", { method: "POST", body: form });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      clear($("steps"));  // refused before any step ran
      throw new Error(errorText(body, response.status));
    }
    await readEvents(response, onEvent);
  } catch (error) {
    showError(error.message);
  } finally {
    $("go").disabled = false;
    document.querySelectorAll("#steps li.running").forEach((li) => li.classList.remove("running"));
  }
});

// ------------------------------------------------------------------ everyone in the picture

$("everyone").addEventListener("click", async () => {
  const form = new FormData();
  if (state.file) form.append("image", state.file, state.file.name);
  else if (state.path) form.append("path", state.path);
  form.append("text", $("text").value);
  startRun();
  clear($("steps"));
  $("everyone").disabled = true;
  $("status").textContent = "finding everyone…";
  try {
    const response = await fetch("link/all", { method: "POST", body: form });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(errorText(body, response.status));
    showEveryone(body);
  } catch (error) {
    showError(error.message);
  } finally {
    $("go").disabled = false;
    $("everyone").disabled = false;
  }
});

function showEveryone(picture) {
  const people = Array.isArray(picture.people) ? picture.people : [];
  const results = Array.isArray(picture.results) ? picture.results : [];
  state.people = people.map((person, i) => ({ number: i + 1, box: person.box, person, result: results[i] }));
  setBox(null);
  const list = $("people");
  clear(list);
  state.people.forEach((entry, index) => {
    const item = el("li", { "data-index": String(index), "data-box": (entry.box || []).join(",") },
      `${entry.number}. ${entry.person.name || "unknown"}`,
      entry.person.answer ? el("span", { class: "id" }, ` ${entry.person.answer}`) : null,
      entry.person.confidence !== null && entry.person.confidence !== undefined ? ` (${fmt(entry.person.confidence, 2)})` : "",
      entry.person.changed_by_joint ? el("span", { class: "muted" }, " · changed by the joint decision") : null);
    item.addEventListener("click", () => selectPerson(index));
    list.append(item);
  });
  $("people-panel").hidden = false;
  const found = picture.boxes_from === "faces" ? "face(s) found" : "box(es)";
  $("status").textContent = `${state.people.length} ${found}, linked jointly: one entity each`;
  if (state.people.length) selectPerson(0);
  else draw();
}

function selectPerson(index) {
  state.selected = index;
  document.querySelectorAll("#people li").forEach((li) => li.classList.toggle("selected", Number(li.dataset.index) === index));
  const entry = state.people[index];
  if (entry.result) showResult(entry.result);
  state.faces = null;  // the named boxes stand for the faces here
  draw();
}

function errorText(body, status) {
  const detail = body && body.detail;
  if (typeof detail === "string") return `${detail} (HTTP ${status})`;
  if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("\n");
  return `the service answered HTTP ${status}`;
}

/** Read a text/event-stream body and call back with (event, data) per event. */
async function readEvents(response, callback) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of frame.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) callback(name, JSON.parse(data.join("\n")));
    }
    if (done) return;
  }
}

function startRun() {
  $("go").disabled = true;
  state.faces = null;  // the last answer's faces belong to the last question
  state.people = null;
  state.selected = null;
  $("people-panel").hidden = true;
  draw();
  $("error").hidden = true;
  $("result").hidden = true;
  $("status").textContent = "linking…";
  clear($("steps"));
  STEPS.forEach((node, i) => $("steps").append(el("li", { "data-node": node, class: i === 0 ? "running" : "" }, node)));
}

function onEvent(name, data) {
  if (name === "step") markStep(data.node, data.update || {});
  else if (name === "result") showResult(data);
  else if (name === "error") showError(data.detail || "the run failed");
}

function markStep(node, update) {
  let li = document.querySelector(`#steps li[data-node="${CSS.escape(node)}"]`);
  if (!li) { li = el("li", { "data-node": node }, node); $("steps").append(li); }
  li.classList.remove("running");
  li.classList.add("done");
  // A step the graph routed around (describe, when the evidence was clear) is marked skipped.
  const items = [...document.querySelectorAll("#steps li")];
  items.slice(0, items.indexOf(li)).filter((item) => !item.classList.contains("done"))
    .forEach((item) => { item.classList.remove("running"); item.classList.add("done", "skipped"); item.append(el("span", { class: "what" }, " · skipped")); });
  const ms = update.timings_ms && update.timings_ms[node];
  const summary = stepSummary(node, update);
  li.append(el("span", { class: "what" }, [ms !== undefined ? ` ${Math.round(ms)} ms` : "", summary ? ` · ${summary}` : ""].join("")));
  const next = [...document.querySelectorAll("#steps li")].find((item) => !item.classList.contains("done"));
  if (next) next.classList.add("running");
  if (node === "prepare" && update.evidence) { showFaces(update.evidence); }
  if (node === "describe") $("status").textContent = "retrieving candidates…";
  if (node === "prepare") $("status").textContent = "working…";
}

function stepSummary(node, update) {
  if (node === "prepare" && update.evidence) {
    const faces = update.evidence.faces && update.evidence.faces.faces;
    const names = update.evidence.caption_names;
    const parts = [];
    if (Array.isArray(faces)) parts.push(`${faces.length} face${faces.length === 1 ? "" : "s"}`);
    if (Array.isArray(names) && names.length) parts.push(`names: ${names.join(", ")}`);
    return parts.join("; ");
  }
  if (node === "describe") return update.description ? `model: ${(update.description.names || []).join(", ") || update.description.entity_type}` : "no model";
  if (node === "retrieve" && Array.isArray(update.candidates)) return `${update.candidates.length} candidates`;
  if (node === "rerank" && Array.isArray(update.ranking) && update.ranking.length) return `top: ${update.ranking[0].name}`;
  if (node === "decide") return update.nil ? "NIL" : "";
  if (node === "reflect" && update.judgement) return `choice: ${update.judgement.choice}`;
  return "";
}

function showFaces(evidence) {
  state.faces = evidence.faces || null;
  state.imageSize = evidence.image_size || null;
  draw();
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
  $("status").textContent = "";
}

// ------------------------------------------------------------------ the answer

function showResult(result) {
  const evidence = result.evidence || {};
  showFaces(evidence);
  const best = !result.nil && result.ranking && result.ranking.length ? result.ranking[0] : null;
  $("answer").textContent = result.headline;
  $("answer").className = result.nil ? "nil" : best ? "found" : "";
  $("status").textContent = `done in ${Math.round(Object.values(result.timings_ms || {}).reduce((a, b) => a + b, 0))} ms`;
  showCrop(result.query && result.query.box);
  showReasoning(result);
  showRanking(result);
  showEvidence(result);
  showModel(result);
  showNotes(result);
  $("entity").hidden = true;
  $("result").hidden = false;
}

function showCrop(box) {
  const figure = $("crop-figure");
  if (!state.image || !Array.isArray(box)) { figure.hidden = true; return; }
  const [x0, y0, x1, y1] = box;
  const canvas = $("crop");
  const k = Math.min(200 / (x1 - x0), 200 / (y1 - y0));
  canvas.width = Math.max(1, Math.round((x1 - x0) * k));
  canvas.height = Math.max(1, Math.round((y1 - y0) * k));
  canvas.getContext("2d").drawImage(state.image, x0, y0, x1 - x0, y1 - y0, 0, 0, canvas.width, canvas.height);
  figure.hidden = false;
}

function showReasoning(result) {
  const box = $("reasoning");
  clear(box);
  if (result.rationale) box.append(el("p", {}, el("b", {}, "The model's reasoning: "), result.rationale));
  else if (!result.used_model) box.append(el("p", { class: "muted" }, "No model server is connected: the region was linked on the evidence and the text alone."));
  const query = result.query || {};
  box.append(el("p", { class: "muted" },
    `box ${Array.isArray(query.box) ? "[" + query.box.join(", ") + "]" : "whole picture"}`,
    query.text ? ` · caption “${query.text}”` : "", query.mention ? ` · mention “${query.mention}”` : ""));
}

function showRanking(result) {
  const body = $("ranking").querySelector("tbody");
  clear(body);
  const ranking = (result.ranking || []).slice(0, 10);
  const top = ranking.length ? Math.max(...ranking.map((e) => e.score), 1e-9) : 1;
  ranking.forEach((entity, i) => {
    const row = el("tr", { class: i === 0 && !result.nil ? "best" : "", "data-id": entity.id },
      el("td", { class: "num" }, String(i + 1)),
      el("td", {}, el("div", {}, entity.name), el("span", { class: "id" }, entity.id)),
      el("td", { class: "num" }, fmt(entity.score, 4),
        el("span", { class: "bar", style: `width:${Math.max(1, Math.round(60 * Math.max(0, entity.score) / top))}px` })),
      el("td", { class: "desc" }, (entity.description || "").slice(0, 160)));
    row.addEventListener("click", () => showEntity(entity.id));
    body.append(row);
  });
  if (!ranking.length) body.append(el("tr", {}, el("td", { colspan: "4", class: "muted" }, "No candidate was retrieved.")));
}

async function showEntity(id) {
  const box = $("entity");
  clear(box);
  box.hidden = false;
  try {
    const response = await fetch("entities/" + encodeURIComponent(id));
    const body = await response.json();
    if (!response.ok) throw new Error(errorText(body, response.status));
    box.append(el("b", {}, body.name), " ", el("span", { class: "id" }, body.id), valueView(
      Object.fromEntries(Object.entries(body).filter(([k]) => !["id", "name"].includes(k)))));
  } catch (error) {
    box.append(el("span", { class: "note" }, error.message));
  }
}

function showEvidence(result) {
  const box = $("evidence");
  clear(box);
  const evidence = result.evidence;
  if (!isObject(evidence) || !Object.keys(evidence).length) {
    box.append(el("p", { class: "muted" }, "No visual evidence (no picture, or the tools were not run)."));
  } else {
    const rows = [];
    for (const [key, value] of Object.entries(evidence)) {
      if (value === null || value === undefined) continue;
      rows.push(el("dt", {}, key.replace(/_/g, " ")),
        el("dd", {}, key === "faces" && isObject(value) ? facesView(value) : valueView(value)));
    }
    box.append(el("dl", {}, rows));
  }
  if (result.evidence_text) {
    box.append(el("details", {}, el("summary", {}, "The evidence as the model reads it"), el("pre", {}, result.evidence_text)));
  }
}

function facesView(faces) {
  const found = Array.isArray(faces.faces) ? faces.faces : [];
  const wrap = el("div");
  const marked = faces.marked;
  let summary = `${found.length} found`;
  if (found.length && Number.isInteger(marked)) summary += `; the box marks face ${marked + 1}` + (faces.position ? `, the ${faces.position}` : "");
  else if (found.length && !faces.whole_image) summary += "; none lies inside the box";
  wrap.append(el("span", { class: "face-key" }), summary);
  if (found.length) wrap.append(tableView(found, 0, marked));
  const rest = Object.fromEntries(Object.entries(faces).filter(([k]) => !["faces", "marked", "position", "whole_image"].includes(k)));
  if (Object.keys(rest).length) wrap.append(valueView(rest));
  return wrap;
}

/** A list of records as a numbered table, one column per key any of them has; ``marked`` is highlighted. */
function tableView(records, depth, marked = null) {
  const keys = [...new Set(records.flatMap((record) => Object.keys(record)))];
  return el("table", { class: "records" },
    el("thead", {}, el("tr", {}, el("th", {}, "#"), keys.map((k) => el("th", {}, k.replace(/_/g, " "))))),
    el("tbody", {}, records.map((record, i) => el("tr", { class: i === marked ? "marked" : "" },
      el("td", {}, String(i + 1) + (i === marked ? " ◀ marked" : "")),
      keys.map((k) => el("td", {}, valueView(record[k], depth + 1)))))));
}

/** Any JSON value as readable elements: numbers rounded, lists joined or tabled, objects as definition lists. */
function valueView(value, depth = 0) {
  if (value === null || value === undefined) return el("span", { class: "muted" }, "–");
  if (typeof value === "number") return document.createTextNode(Number.isInteger(value) ? String(value) : fmt(value));
  if (typeof value !== "object") return document.createTextNode(String(value));
  if (depth > 3) return el("code", {}, JSON.stringify(value));
  if (Array.isArray(value)) {
    if (!value.length) return el("span", { class: "muted" }, "none");
    if (value.every((v) => v === null || typeof v !== "object")) {
      return document.createTextNode(value.map((v) => (typeof v === "number" && !Number.isInteger(v) ? fmt(v) : String(v))).join(", "));
    }
    if (value.every(isObject)) return tableView(value, depth);
    return el("div", {}, value.map((item) => el("div", { class: "chip" }, valueView(item, depth + 1))));
  }
  const entries = Object.entries(value).filter(([, v]) => v !== null && v !== undefined);
  if (!entries.length) return el("span", { class: "muted" }, "none");
  return el("dl", {}, entries.flatMap(([k, v]) => [el("dt", {}, k.replace(/_/g, " ")), el("dd", {}, valueView(v, depth + 1))]));
}

function showModel(result) {
  const box = $("model");
  clear(box);
  if (!result.used_model && !result.description) {
    box.append(el("p", { class: "muted" }, "No model was used (start the service with --llm-url to connect one)."));
    return;
  }
  box.append(el("p", {}, "model ", el("code", {}, result.used_model || "?")));
  if (result.description) box.append(el("h4", {}, "What it says the region shows"), valueView(result.description));
  if (result.judgement) box.append(el("h4", {}, "Reflection (a close call, judged again)"), valueView(result.judgement));
}

function showNotes(result) {
  const box = $("notes");
  clear(box);
  for (const note of result.notes || []) box.append(el("div", { class: "note" }, note));
  const timings = Object.entries(result.timings_ms || {});
  if (timings.length) {
    box.append(el("table", { class: "records" }, el("tbody", {}, timings.map(([step, ms]) =>
      el("tr", {}, el("td", {}, step), el("td", { class: "num" }, `${ms.toFixed(1)} ms`))))));
  }
}

// ------------------------------------------------------------------ start

async function start() {
  try {
    const health = await (await fetch("health")).json();
    const store = health.store || {};
    const server = health.model_server || {};
    $("health").textContent = [
      store.ok ? `store: ${store.entities} entities` : `store: unavailable (${store.error || "?"})`,
      `text encoder: ${(health.encoders || {}).text || "?"}`,
      server.configured ? `model server: ${server.reachable ? "reachable" : "NOT reachable"} (${server.model || "?"})`
        : "model server: none (evidence and text only)",
    ].join(" · ");
  } catch (error) {
    $("health").textContent = `the service does not answer: ${error.message}`;
  }
  try {
    const listing = await (await fetch("pictures")).json();
    if (listing.image_root && listing.pictures.length) {
      for (const path of listing.pictures) $("picker").append(el("option", { value: path }, path));
      $("picker-label").hidden = false;
    }
  } catch (error) { /* no picker: uploads still work */ }
}

start();
