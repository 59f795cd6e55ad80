// The map: the course, its tiles (or the race's own basemap), each racer's
// marker (named, a button to follow them) and trail, groups of markers that
// would pile up, names when zoomed in, a key; the followed racers drawn on
// top, labelled, the others dimmed; the camera on the followed one until
// the spectator moves the map; a large race's density along the course.
import { BANDS, categoryColor, colorOf, colouring } from "./colors.js";
import { courseLength, progressOf, stretch } from "./course.js";
import { crowd } from "./crowd.js";
import { follow } from "./follow.js";
import { statusWords } from "./numbers.js";
import { replayTrail } from "./replay.js";
import { isField, trailOf } from "./shape.js";
import { cfg, S } from "./state.js";
import { fmtDistance } from "./units.js";

const FOLLOW_ZOOM = 16; // following someone zooms in at least this far
const LABEL_ZOOM = 15; // names on the map from this zoom on
// Markers closer than this on screen are one, with a count: a marker is a
// 24 px target and a group 28 px, and no two may overlap (WCAG 2.5.8).
const GROUP_PX = 28;
const SILENCE_S = 60; // fixes further apart: a silence, never drawn as a straight shortcut

export let map = null;

// Leaflet's stylesheet, read without holding up the page's first paint
// (preloaded in the page's head): the map is made once it applies, so no
// tile is ever laid out without it.
function leafletStyle() {
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = new URL("vendor/leaflet/leaflet.css", import.meta.url).href;
  const loaded = new Promise((resolve) => {
    link.addEventListener("load", resolve);
    link.addEventListener("error", resolve); // a map without its styles beats none
  });
  document.head.appendChild(link);
  return loaded;
}

// The map, once Leaflet's stylesheet is in: resolves when it is drawn.
export function initMap() {
  return leafletStyle().then(makeMap);
}

function makeMap() {
  map = L.map("map", { zoomSnap: 0.25 });
  const courseLine = L.polyline(cfg.course, { color: "#00572a", weight: 5, opacity: 0.6 });
  courseLine.addTo(map);
  map.fitBounds(courseLine.getBounds(), { padding: [16, 16] });
  // Tiles are decoration: if they fail, the course, markers and trails still show.
  const own = cfg.basemap;
  if (own && (window.pmtiles || window.protomapsL)) {
    // The race's own basemap, read from this origin by range requests.
    const url = new URL(own.url, location.href).href;
    const b = own.bounds;
    const options = {
      maxZoom: 19,
      minNativeZoom: own.min_zoom,
      maxNativeZoom: own.max_zoom,
      bounds: L.latLngBounds([b[1], b[0]], [b[3], b[2]]),
    };
    const layer =
      own.type === "vector"
        ? protomapsL.leafletLayer({ ...options, url, flavor: "light", lang: "en" })
        : pmtiles.leafletRasterLayer(new pmtiles.PMTiles(url), options);
    credit(layer, own.attribution);
    layer.addTo(map);
  } else {
    const layer = L.tileLayer(cfg.tiles, { maxZoom: 19 });
    credit(layer, cfg.attribution);
    layer.addTo(map);
  }
  if (cfg.course.length) {
    const dot = { radius: 7, color: "#fff", weight: 2, fillOpacity: 1 };
    L.circleMarker(cfg.course[0], { ...dot, fillColor: "#00572a" })
      .bindTooltip("Start")
      .addTo(map);
    L.circleMarker(cfg.course[cfg.course.length - 1], { ...dot, fillColor: "#111" })
      .bindTooltip("Finish")
      .addTo(map);
  }
  map.on("dragstart", spectatorMoved);
  map.on("zoomstart", spectatorMoved);
  map.on("zoomend", () => arrange(lastPlaced));
  recentre = new Recentre().addTo(map);
  key = new Key().addTo(map);
  groupLayer = L.layerGroup().addTo(map);
  densityLayer = L.layerGroup().addTo(map);
}

// Attribution as text (Leaflet's control takes HTML): a basemap's may be markup.
function asText(html) {
  const text = new DOMParser().parseFromString(html || "", "text/html").body.textContent || "";
  const entities = { "&": "&amp;", "<": "&lt;", ">": "&gt;" };
  return text.replace(/[&<>]/g, (ch) => entities[ch]);
}
// Credited once a tile of it has been drawn: the map actually drawn.
function credit(layer, text) {
  if (text) layer.once("tileload", () => map.attributionControl.addAttribution(asText(text)));
}

// -- the camera: on the followed racer until the spectator moves the map ----
let ours = false; // the map is moved by the page, not the spectator
function moveMap(f) {
  ours = true;
  try {
    f();
  } finally {
    ours = false;
  }
}
function spectatorMoved() {
  if (ours || !S.focus || !S.centring) return;
  S.centring = false;
  showRecentre();
}
const Recentre = L.Control.extend({
  options: { position: "topright" },
  onAdd() {
    const b = L.DomUtil.create("button", "recentre");
    b.type = "button";
    b.id = "recentre";
    b.hidden = true;
    L.DomEvent.disableClickPropagation(b);
    b.addEventListener("click", () => {
      S.centring = true;
      showRecentre();
      aim();
    });
    return b;
  },
});
let recentre = null;
let focusRecord = null;
function showRecentre() {
  const b = recentre.getContainer();
  b.hidden = !S.focus || S.centring;
  if (focusRecord) b.textContent = `Re-centre on ${focusRecord.name}`;
}
// Keep the focus in view: zoomed in when they were just chosen.
function aim() {
  const r = focusRecord;
  if (!r?.position || !S.centring) return;
  const ll = [r.position.lat, r.position.lon];
  moveMap(() => {
    if (S.arriving) map.setView(ll, Math.max(map.getZoom(), FOLLOW_ZOOM), { animate: false });
    else map.panTo(ll, { animate: false });
  });
  S.arriving = false;
}

// -- markers -----------------------------------------------------------------
const markers = {}; // id -> {m, dot, label}
const trails = {}; // id -> {solid, quiet (silences), n}
let groupLayer = null;

function markerFor(r) {
  let got = markers[r.id];
  if (got) return got;
  const box = document.createElement("div");
  const dot = document.createElement("span");
  const label = document.createElement("span");
  label.className = "label";
  box.append(dot, label);
  const m = L.marker([r.position.lat, r.position.lon], {
    icon: L.divIcon({ className: "racer", html: box, iconSize: [24, 24] }),
    keyboard: true,
    riseOnHover: true,
  });
  m.on("click", () => follow(r.id));
  m.addTo(map);
  const el = m.getElement();
  el.setAttribute("role", "button");
  el.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      follow(r.id);
    }
  });
  got = { m, dot, label };
  markers[r.id] = got;
  return got;
}

function dropMarker(id) {
  if (!markers[id]) return;
  map.removeLayer(markers[id].m);
  delete markers[id];
}

// A trail: solid where fixes follow each other, dashed across a silence
// (along the course when both ends are on it, else straight).
function trailShapes(pts) {
  const solid = [];
  const quiet = [];
  let run = [];
  for (let i = 0; i < pts.length; i++) {
    const p = pts[i];
    const prev = pts[i - 1];
    if (prev && p[2] - prev[2] > 1000 * SILENCE_S) {
      if (run.length > 1) solid.push(run);
      run = [];
      const a = progressOf(prev[0], prev[1]);
      const b = progressOf(p[0], p[1]);
      const onCourse = a.off < 60 && b.off < 60 && b.d >= a.d;
      const straight = map.distance([prev[0], prev[1]], [p[0], p[1]]);
      quiet.push(
        onCourse && b.d - a.d < 3 * straight + 300
          ? stretch(a.d, b.d)
          : [
              [prev[0], prev[1]],
              [p[0], p[1]],
            ],
      );
    }
    run.push([p[0], p[1]]);
  }
  if (run.length > 1) solid.push(run);
  return { solid, quiet };
}

function drawTrail(r, color, mine) {
  let t = trails[r.id];
  if (!t) {
    t = {
      solid: L.polyline([], { color, weight: 3, opacity: 0.85, interactive: false }).addTo(map),
      quiet: L.polyline([], {
        color,
        weight: 3,
        opacity: 0.7,
        dashArray: "4 8",
        interactive: false,
      }).addTo(map),
      n: -1,
      last: null,
    };
    trails[r.id] = t;
  }
  const pts = S.replay ? replayTrail(r.id) : trailOf(r);
  const lastT = pts.length ? pts[pts.length - 1][2] : null;
  if (pts.length !== t.n || lastT !== t.last) {
    const shapes = trailShapes(pts);
    t.solid.setLatLngs(shapes.solid);
    t.quiet.setLatLngs(shapes.quiet);
    t.n = pts.length;
    t.last = lastT;
  }
  const dim = S.following.length && !mine;
  const style = { color, weight: mine ? 5 : 3, opacity: dim ? 0.3 : 0.85 };
  t.solid.setStyle(style);
  t.quiet.setStyle({ ...style, opacity: dim ? 0.25 : 0.7 });
  if (mine) {
    t.solid.bringToFront();
    t.quiet.bringToFront();
  }
}

function dropTrail(id) {
  if (!trails[id]) return;
  map.removeLayer(trails[id].solid);
  map.removeLayer(trails[id].quiet);
  delete trails[id];
}

function labelOf(r, mine) {
  const name = r.name.length > 28 ? `${r.name.slice(0, 27)}…` : r.name;
  return mine && r.bib ? `${name} · ${r.bib}` : name;
}

// Every racer shown (trails for those drawsTrail says), grouped where they
// would pile up, the followed on top.
export function drawMap(racers, withTrail) {
  if (!map) return;
  const keep = new Set();
  focusRecord = null;
  const placed = [];
  for (const r of racers) {
    keep.add(r.id);
    const mine = S.following.includes(r.id);
    if (r.id === S.focus) focusRecord = r;
    const color = colorOf(r);
    if (withTrail(r)) drawTrail(r, color, mine);
    else dropTrail(r.id);
    if (!r.position) {
      dropMarker(r.id); // not started (at the replayed moment): no marker
      continue;
    }
    const got = markerFor(r);
    got.m.setLatLng([r.position.lat, r.position.lon]);
    got.dot.className = `dot ${r.kind}${r.estimated ? " estimated" : ""}`;
    got.dot.style.background = r.estimated ? "#fff" : color;
    got.dot.style.borderColor = r.estimated ? color : "";
    const el = got.m.getElement();
    const focus = r.id === S.focus;
    el.classList.toggle("mine", mine);
    el.classList.toggle("focus", focus);
    el.classList.toggle("dim", !!S.following.length && !mine);
    el.classList.toggle("stale", r.status === "stale");
    const place = r.position && r.rank ? `rank ${r.rank}` : "";
    const text = `${r.name}${r.bib ? ` (bib ${r.bib})` : ""}, ${place}, ${statusWords(r)}, ${fmtDistance(r.distance_m)}`;
    el.setAttribute("aria-label", `${text}. ${mine && focus ? "Stop following" : "Follow"}`);
    el.title = text;
    el.setAttribute("aria-pressed", String(mine));
    got.m.setZIndexOffset(focus ? 3000 : mine ? 2000 : r.kind === "vehicle" ? 500 : 0);
    got.label.textContent = labelOf(r, mine);
    placed.push(r);
  }
  for (const id of Object.keys(markers)) if (!keep.has(id)) dropMarker(id);
  for (const id of Object.keys(trails)) if (!keep.has(id)) dropTrail(id);
  aim();
  showRecentre();
  arrange(placed);
  if (S.replay) map.removeLayer(densityLayer);
  else if (isField(S.snapshot)) densityLayer.addTo(map);
  renderKey(racers.some((r) => r.kind === "vehicle"));
}

// Groups and labels for the markers as the map is now.
let lastPlaced = [];
function arrange(placed) {
  lastPlaced = placed;
  const rankOf = (r) => (r.rank ? r.rank : 1e9);
  const order = placed.slice().sort((a, b) => {
    const ka = a.id === S.focus ? 0 : S.following.includes(a.id) ? 1 : 2;
    const kb = b.id === S.focus ? 0 : S.following.includes(b.id) ? 1 : 2;
    return ka - kb || rankOf(a) - rankOf(b);
  });
  const items = order.map((r) => {
    const p = map.latLngToLayerPoint([r.position.lat, r.position.lon]);
    return { id: r.id, x: p.x, y: p.y, keep: S.following.includes(r.id), label: labelOf(r) };
  });
  const { groups, labelled } = crowd(items, GROUP_PX, map.getZoom() >= LABEL_ZOOM);
  groupLayer.clearLayers();
  const byId = new Map(placed.map((r) => [r.id, r]));
  for (const ids of groups) {
    for (const id of ids) {
      const el = markers[id].m.getElement();
      el.classList.toggle("grouped", ids.length > 1);
      const side = labelled.get(id);
      el.classList.toggle("labelled", !!side);
      for (const at of ["left", "above", "below"]) el.classList.toggle(`label-${at}`, side === at);
    }
    if (ids.length > 1) drawGroup(ids.map((id) => byId.get(id)));
  }
}

function drawGroup(rs) {
  const ll = [rs[0].position.lat, rs[0].position.lon];
  const box = document.createElement("div");
  box.textContent = String(rs.length);
  const g = L.marker(ll, {
    icon: L.divIcon({ className: "pack", html: box, iconSize: [28, 28] }),
    keyboard: true,
    zIndexOffset: 1000,
  });
  const names = rs.map((r) => r.name);
  g.addTo(groupLayer);
  const el = g.getElement();
  el.setAttribute("role", "button");
  el.setAttribute(
    "aria-label",
    `${rs.length} racers here: ${names.slice(0, 5).join(", ")}${rs.length > 5 ? "…" : ""}. Show them`,
  );
  el.title = names.join(", ");
  const open = () => {
    const bounds = L.latLngBounds(rs.map((r) => [r.position.lat, r.position.lon]));
    const far = map.distance(bounds.getSouthWest(), bounds.getNorthEast());
    if (far > 5 && map.getZoom() < 18) {
      map.fitBounds(bounds, { maxZoom: 19, padding: [40, 40] }); // the spectator's move
      return;
    }
    // Too close to tell apart at any zoom: a list to choose from.
    const list = document.createElement("ul");
    list.className = "group-list";
    for (const r of rs) {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = r.bib ? `${r.name} (${r.bib})` : r.name;
      b.addEventListener("click", () => {
        map.closePopup();
        follow(r.id);
      });
      li.appendChild(b);
      list.appendChild(li);
    }
    L.popup().setLatLng(ll).setContent(list).openOn(map);
  };
  g.on("click", open);
  el.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      open();
    }
  });
}

// -- the key -------------------------------------------------------------------
const Key = L.Control.extend({
  options: { position: "bottomleft" },
  onAdd() {
    const d = L.DomUtil.create("details", "key");
    d.open = window.matchMedia("(min-width: 900px)").matches;
    L.DomEvent.disableClickPropagation(d);
    L.DomEvent.disableScrollPropagation(d);
    return d;
  },
});
let key = null;
let keyFor = "";
function keyRow(list, swatch, text, color) {
  const li = document.createElement("li");
  const s = document.createElement("span");
  s.className = `k ${swatch}`;
  if (color) s.style.background = color;
  const t = document.createElement("span");
  t.textContent = text;
  li.append(s, t);
  list.appendChild(li);
}
function renderKey(vehicles) {
  const how = colouring();
  const large = isField(S.snapshot);
  const id = `${how}|${large}|${!!S.replay}|${vehicles}`;
  if (id === keyFor) return;
  keyFor = id;
  const d = key.getContainer();
  const summary = document.createElement("summary");
  summary.textContent = "Map key";
  const list = document.createElement("ul");
  keyRow(list, "runner", "a runner");
  if (vehicles) keyRow(list, "vehicle", "a vehicle");
  keyRow(list, "estimated", "position estimated");
  keyRow(list, "group", "several racers: select to see them");
  keyRow(list, "quiet", "no fixes for a while");
  if (how === "category") {
    for (const c of (cfg.categories || []).slice(0, 12))
      keyRow(list, "runner", c, categoryColor(c));
  } else if (how === "band") {
    for (const b of BANDS) keyRow(list, "runner", b[3], b[2]);
  }
  if (large) keyRow(list, "mine", "a racer you follow: ringed, named, their own colour");
  if (large && !S.replay) keyRow(list, "crowd", "the course: yellow few, red many racers");
  d.replaceChildren(summary, list);
}

// -- a large race: the field overview --------------------------------------
// The course cut into density.bins equal stretches, each coloured by how
// many racers are on it (none: not drawn).
let densityLayer = null;
let stretches = null;
let densityKey = "";
function courseStretches(bins) {
  // Bins of the whole course's progress; in a race of laps, each drawn on the lap.
  const lap = cfg.laps > 1 ? cfg.lap_m : courseLength || 1;
  const total = cfg.laps > 1 ? cfg.course_length_m : lap;
  const out = [];
  for (let b = 0; b < bins; b++) {
    const from = ((total * b) / bins) % lap;
    const to = from + total / bins;
    out.push(to <= lap ? stretch(from, to) : stretch(from, lap).concat(stretch(0, to - lap)));
  }
  return out;
}
export function drawDensity(dens) {
  if (!map || !dens || cfg.course.length < 2) return;
  const k = dens.counts.join(",");
  if (k === densityKey) return;
  densityKey = k;
  if (!stretches || stretches.length !== dens.bins) stretches = courseStretches(dens.bins);
  const most = Math.max(...dens.counts, 1);
  densityLayer.clearLayers();
  dens.counts.forEach((n, b) => {
    if (!n) return;
    const f = Math.sqrt(n / most); // a crowd of 2,000 beside a handful still shows both
    const hue = Math.round(55 - 55 * f); // yellow (few) to red (many)
    L.polyline(stretches[b], {
      color: `hsl(${hue},95%,48%)`,
      weight: 5 + 6 * f,
      opacity: 0.9,
      interactive: false,
    }).addTo(densityLayer);
  });
}
