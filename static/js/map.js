// The map: the course, its tiles (or the race's own basemap), each racer's
// marker and trail, and in a large race the field's density along the course.
import { follow } from "./follow.js";
import { replayTrail } from "./replay.js";
import { isField, trailOf } from "./shape.js";
import { cfg, colorOf, S } from "./state.js";

export const map = L.map("map", { zoomSnap: 0.25 });
const courseLine = L.polyline(cfg.course, { color: "#00572a", weight: 5, opacity: 0.6 }).addTo(map);
map.fitBounds(courseLine.getBounds(), { padding: [16, 16] });
// Tiles are decoration: if they fail, the course, markers and trails still show.
const own = cfg.basemap;
if (own && (window.pmtiles || window.protomapsL)) {
  // The race's own basemap, read from this origin by range requests.
  const url = new URL(own.url, location.href).href;
  const b = own.bounds;
  const options = {
    attribution: own.attribution || cfg.attribution,
    maxZoom: 19,
    minNativeZoom: own.min_zoom,
    maxNativeZoom: own.max_zoom,
    bounds: L.latLngBounds([b[1], b[0]], [b[3], b[2]]),
  };
  const layer =
    own.type === "vector"
      ? protomapsL.leafletLayer({ ...options, url, flavor: "light", lang: "en" })
      : pmtiles.leafletRasterLayer(new pmtiles.PMTiles(url), options);
  layer.addTo(map);
} else {
  L.tileLayer(cfg.tiles, { attribution: cfg.attribution, maxZoom: 19 }).addTo(map);
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

export const markers = {};
const trails = {};

export function drawRacer(r, withTrail) {
  const color = colorOf(r);
  if (withTrail) {
    if (!trails[r.id]) {
      trails[r.id] = L.polyline([], { color, weight: 3, opacity: 0.85 }).addTo(map);
    }
    const pts = S.replay ? replayTrail(r.id) : trailOf(r).map((p) => [p[0], p[1]]);
    trails[r.id].setLatLngs(pts);
  }
  if (!r.position) {
    // not started (at the replayed moment): no marker
    if (markers[r.id]) {
      map.removeLayer(markers[r.id]);
      delete markers[r.id];
    }
    return;
  }
  const ll = [r.position.lat, r.position.lon];
  let m = markers[r.id];
  if (!m) {
    if (r.kind === "vehicle") {
      // a square, not a dot: shape tells vehicles apart, not colour alone
      m = L.marker(ll, {
        icon: L.divIcon({ className: "vehicle-marker", iconSize: [18, 18] }),
        keyboard: false,
      });
    } else {
      m = L.circleMarker(ll, {
        radius: 8,
        color: "#fff",
        weight: 2,
        fillColor: color,
        fillOpacity: 0.95,
      });
    }
    m.addTo(map);
    m.bindTooltip(document.createTextNode(r.name)); // a text node: never parsed as HTML
    m.on("click", () => follow(r.id));
    markers[r.id] = m;
  }
  m.setLatLng(ll);
  const stale = r.status === "stale";
  if (m.setStyle) m.setStyle({ fillOpacity: stale ? 0.35 : 0.95 });
  else if (m.getElement()) {
    m.getElement().style.background = color;
    m.getElement().style.opacity = stale ? 0.45 : 1;
  }
}

// Markers and trails of those no longer shown go (the head of a large race
// changes); a large race draws only the followed racer's trail, but in a replay.
export function dropGone(keep) {
  const large = isField(S.snapshot);
  for (const id of Object.keys(markers)) {
    if (!keep[id]) {
      map.removeLayer(markers[id]);
      delete markers[id];
    }
  }
  for (const id of Object.keys(trails)) {
    if (!keep[id] || (large && !S.replay && id !== S.following)) {
      map.removeLayer(trails[id]);
      delete trails[id];
    }
  }
}

// -- a large race: the field overview --------------------------------------
// The course cut into density.bins equal stretches, each coloured by how
// many racers are on it (none: not drawn).
const densityLayer = L.layerGroup().addTo(map);
let stretches = null;
let densityKey = "";
function courseStretches(bins) {
  const c = cfg.course;
  const d = [0];
  for (let i = 1; i < c.length; i++) d.push(d[i - 1] + map.distance(c[i - 1], c[i]));
  const total = d[d.length - 1] || 1;
  const out = [];
  let k = 0;
  function at(x) {
    while (k < c.length - 2 && d[k + 1] < x) k++;
    const f = d[k + 1] > d[k] ? (x - d[k]) / (d[k + 1] - d[k]) : 0;
    return [c[k][0] + (c[k + 1][0] - c[k][0]) * f, c[k][1] + (c[k + 1][1] - c[k][1]) * f];
  }
  for (let b = 0; b < bins; b++) {
    const from = (total * b) / bins;
    const to = (total * (b + 1)) / bins;
    const seg = [at(from)];
    for (let j = k + 1; j < c.length && d[j] < to; j++) seg.push(c[j]);
    seg.push(at(to));
    out.push(seg);
  }
  return out;
}
export function drawDensity(dens) {
  if (!dens || cfg.course.length < 2) return;
  const key = dens.counts.join(",");
  if (key === densityKey) return;
  densityKey = key;
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
