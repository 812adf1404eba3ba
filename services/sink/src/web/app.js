// Framewire camera grid: polls the sink's JSON API and keeps one tile per camera.
// Plain browser JavaScript, no build step; every value from the API goes in via
// textContent or attributes, never as HTML.
"use strict";

const REFRESH_MS = 2000;     // /api/cameras
const SERIES_MS = 10000;     // each camera's last hour of windows
const HOUR_MS = 3600000;

const grid = document.getElementById("grid");
const template = document.getElementById("tile-template");
const tiles = new Map();      // camera id → { el, seriesAt, thumbAt, pictureAt }
const SVG = "http://www.w3.org/2000/svg";

function fmt(value, digits) {
  return typeof value === "number" && isFinite(value) ? value.toFixed(digits) : "–";
}

function fmtDuration(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return s + " s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + " min " + (s % 60) + " s";
  const h = Math.floor(m / 60);
  return h + " h " + (m % 60) + " min";
}

function fmtTime(ms) {
  return new Date(ms).toLocaleTimeString();
}

function describe(incident, now) {
  const since = fmtTime(incident.start_ms);
  const long = fmtDuration(incident.ongoing ? now - incident.start_ms : incident.duration_ms);
  switch (incident.kind) {
    case "offline": return "offline for " + long + " (last frame " + since + ")";
    case "black": return "black picture for " + long + " (since " + since + ")";
    case "frozen": return "frozen picture for " + long + " (since " + since + ")";
    case "appeared": return incident.label + " in view for " + long + " (since " + since + ")";
    case "left": return incident.label + " left at " + since;
    default: return incident.kind + " for " + long + " (since " + since + ")";
  }
}

function tileFor(id) {
  let t = tiles.get(id);
  if (t) return t;
  const el = template.content.firstElementChild.cloneNode(true);
  el.dataset.camera = id;
  el.querySelector(".name").textContent = id;
  el.querySelector(".name").title = id;
  const img = el.querySelector(".thumb");
  img.alt = "latest keyframe of " + id;
  img.addEventListener("load", () => {
    img.hidden = false;
    img.dataset.loaded = "1";
    el.querySelector(".nothumb").hidden = true;
  });
  t = { el, seriesAt: 0, thumbAt: null, pictureAt: null };
  tiles.set(id, t);
  return t;
}

function renderCamera(cam, now) {
  const t = tileFor(cam.id);
  const el = t.el;
  const incidents = cam.incidents || [];
  el.dataset.status = cam.status;
  el.classList.toggle("incident", cam.status === "online" && incidents.length > 0);
  const badge = el.querySelector(".badge");
  badge.textContent = cam.status === "online" && incidents.length > 0 ? incidents[0].kind : cam.status;
  badge.className = "badge " + (cam.status === "offline" ? "offline" : incidents.length ? "incident" : "online");

  const w = cam.last_window;
  el.querySelector(".fps").textContent = fmt(cam.fps, 1);
  el.querySelector(".brightness").textContent = w ? fmt(w.y_avg_mean, 1) : "–";
  el.querySelector(".motion").textContent = w ? fmt(w.y_dif_mean, 2) : "–";
  el.querySelector(".latency").textContent = w ? w.latency_p50_ms + " ms" : "–";

  const list = el.querySelector(".incidents");
  list.replaceChildren(...incidents.map((i) => {
    const li = document.createElement("li");
    li.className = i.kind;
    li.dataset.kind = i.kind;
    li.textContent = describe(i, now);
    return li;
  }));

  const meta = [];
  if (cam.width && cam.height) meta.push(cam.width + "×" + cam.height);
  meta.push("last frame " + fmtTime(cam.last_seen_ms));
  if (w) {
    meta.push(w.frames + " frames in the last window");
    if (w.decode_errors) meta.push(w.decode_errors + " decode errors");
    if (w.gaps) meta.push(w.gaps + " missing");
  }
  el.querySelector(".meta").textContent = meta.join(" · ");

  if (cam.thumbnail && cam.thumbnail_capture_ms !== t.thumbAt) {
    t.thumbAt = cam.thumbnail_capture_ms;
    el.querySelector(".thumb").src = cam.thumbnail + "?t=" + cam.thumbnail_capture_ms;
  }
  renderObjects(el, cam.detections_window, cam.objects_present || []);
  if (cam.last_analysed_ms !== t.pictureAt) {
    const at = cam.last_analysed_ms;
    t.pictureAt = at;
    loadBoxes(cam.id, t).catch(() => { if (t.pictureAt === at) t.pictureAt = null; });
  }
  if (now - t.seriesAt >= SERIES_MS) {
    t.seriesAt = now;
    loadSeries(cam.id, t).catch(() => { t.seriesAt = 0; });
  }
  return el;
}

// Per-class counts of the newest window with analysed pictures: the most in one picture,
// and how many were seen in how many of the analysed pictures.
function renderObjects(el, w, present) {
  const box = el.querySelector(".detections");
  const list = el.querySelector(".objects");
  const classes = w && w.classes ? Object.entries(w.classes) : [];
  box.hidden = !w;
  box.dataset.pictures = w ? String(w.pictures_analysed) : "0";
  classes.sort((a, b) => b[1].max_per_picture - a[1].max_per_picture || a[0].localeCompare(b[0]));
  const here = new Set(present.map((p) => p.label));
  list.replaceChildren(...classes.map(([label, c]) => {
    const li = document.createElement("li");
    li.dataset.label = label;
    li.dataset.objects = String(c.objects);
    li.dataset.max = String(c.max_per_picture);
    li.dataset.pictures = String(c.pictures);
    li.classList.toggle("present", here.has(label));
    li.textContent = label + " ×" + c.max_per_picture;
    li.title = c.objects + " seen in " + c.pictures + " of " + w.pictures_analysed +
      " analysed pictures (at most " + c.max_per_picture + " in one)";
    return li;
  }));
  if (w && classes.length === 0) {
    const li = document.createElement("li");
    li.textContent = "nothing in " + w.pictures_analysed + " pictures";
    list.replaceChildren(li);
  }
}

// Boxes of the newest analysed picture, drawn in the picture's own pixels: the SVG's
// viewBox is the picture and "meet" letterboxes it exactly as the thumbnail's
// object-fit: contain does.
function drawBoxes(svg, picture) {
  const objects = picture ? picture.objects || [] : [];
  svg.dataset.boxes = String(objects.length);
  if (!picture) {
    svg.replaceChildren();
    return;
  }
  const w = picture.width, h = picture.height;
  svg.setAttribute("viewBox", "0 0 " + w + " " + h);
  svg.dataset.captureMs = String(picture.capture_ms);
  const font = Math.max(10, Math.round(h / 22));
  svg.replaceChildren(...objects.map((o) => {
    const g = document.createElementNS(SVG, "g");
    g.setAttribute("class", "box");
    g.dataset.label = o.label;
    g.dataset.score = o.score.toFixed(2);
    const x = o.box.x0 * w, y = o.box.y0 * h;
    const outline = document.createElementNS(SVG, "rect");
    outline.setAttribute("class", "outline");
    outline.setAttribute("x", x.toFixed(1));
    outline.setAttribute("y", y.toFixed(1));
    outline.setAttribute("width", ((o.box.x1 - o.box.x0) * w).toFixed(1));
    outline.setAttribute("height", ((o.box.y1 - o.box.y0) * h).toFixed(1));
    const text = o.label + " " + o.score.toFixed(2);
    const ty = y >= font + 2 ? y - 2 : y + font;
    const tag = document.createElementNS(SVG, "rect");
    tag.setAttribute("class", "tag");
    tag.setAttribute("x", x.toFixed(1));
    tag.setAttribute("y", (ty - font).toFixed(1));
    tag.setAttribute("width", (text.length * font * 0.6 + 4).toFixed(1));
    tag.setAttribute("height", String(font + 2));
    const label = document.createElementNS(SVG, "text");
    label.setAttribute("x", (x + 2).toFixed(1));
    label.setAttribute("y", (ty - 2).toFixed(1));
    label.setAttribute("font-size", String(font));
    label.textContent = text;
    const title = document.createElementNS(SVG, "title");
    title.textContent = text;
    g.append(outline, tag, label, title);
    return g;
  }));
}

async function loadBoxes(id, t) {
  const svg = t.el.querySelector(".boxes");
  if (t.pictureAt == null) {
    drawBoxes(svg, null);
    return;
  }
  const res = await fetch("/api/cameras/" + encodeURIComponent(id) + "/detections/latest", { cache: "no-store" });
  if (res.status === 404) {
    drawBoxes(svg, null);
    return;
  }
  if (!res.ok) throw new Error(res.status);
  drawBoxes(svg, await res.json());
}

function drawLine(svg, values) {
  const line = svg.querySelector("polyline");
  const finite = values.filter((v) => typeof v === "number" && isFinite(v));
  svg.dataset.points = String(finite.length);
  if (finite.length === 0) {
    line.setAttribute("points", "");
    return;
  }
  const lo = Math.min(...finite);
  const hi = Math.max(...finite);
  const span = hi - lo || 1;
  const n = values.length;
  const points = values.map((v, i) => {
    const x = n === 1 ? 100 : (i / (n - 1)) * 200;
    const y = 30 - ((v - lo) / span) * 28;
    return x.toFixed(1) + "," + y.toFixed(1);
  });
  line.setAttribute("points", points.join(" "));
  svg.querySelector("title")?.remove();
  const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
  title.textContent = "min " + lo.toFixed(2) + ", max " + hi.toFixed(2);
  svg.appendChild(title);
}

async function loadSeries(id, t) {
  const to = Date.now() + 1;
  const url = "/api/cameras/" + encodeURIComponent(id) + "/summaries?from=" + (to - HOUR_MS) + "&to=" + to;
  const res = await fetch(url, { cache: "no-store" });
  if (!res.ok) throw new Error(res.status);
  const data = await res.json();
  const windows = data.windows || [];
  drawLine(t.el.querySelector(".brightness-line"), windows.map((w) => w.y_avg_mean));
  drawLine(t.el.querySelector(".motion-line"), windows.map((w) => w.y_dif_mean));
}

function setNotice(text) {
  const n = document.getElementById("notice");
  n.hidden = !text;
  n.textContent = text || "";
}

async function refresh() {
  let data;
  try {
    const res = await fetch("/api/cameras", { cache: "no-store" });
    data = await res.json();
    if (!res.ok) throw new Error(data.error || res.status);
  } catch (e) {
    setNotice("Cannot reach the sink's API: " + e.message + ". Retrying…");
    return;
  }
  setNotice("");
  const now = data.now_ms || Date.now();
  const cameras = data.cameras || [];
  const els = cameras.map((c) => renderCamera(c, now));
  const ids = new Set(cameras.map((c) => c.id));
  for (const [id, t] of tiles) {
    if (!ids.has(id)) { t.el.remove(); tiles.delete(id); }
  }
  grid.replaceChildren(...els);
  document.getElementById("empty").hidden = cameras.length > 0;
  const online = cameras.filter((c) => c.status === "online").length;
  const incidents = cameras.filter((c) => (c.incidents || []).length > 0).length;
  document.getElementById("totals").textContent =
    cameras.length + " cameras · " + online + " online · " + incidents + " with incidents";
  document.getElementById("updated").textContent = "updated " + fmtTime(now);
  document.body.dataset.refreshed = String((Number(document.body.dataset.refreshed) || 0) + 1);
}

refresh();
setInterval(refresh, REFRESH_MS);
