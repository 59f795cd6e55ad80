// The elevation profile (courses with elevation): plain SVG drawn at the
// size it is shown (so its marker is round), a distance axis in the race's
// units, a height scale, the start, checkpoints and finish as ticks, and a
// dot for the followed racer.
import { colorOf } from "./colors.js";
import { cfg } from "./state.js";
import { currentUnits, fmtHeight, METRES } from "./units.js";

const SVG = "http://www.w3.org/2000/svg";
const H = 84; // px: the plot and its axis
const LEFT = 40; // px for the height scale
const BOTTOM = 16; // px for the distance axis
let dot = null;
let placed = null;
const scale = {};

function svg(tag, attrs, parent) {
  const el = document.createElementNS(SVG, tag);
  for (const k of Object.keys(attrs)) el.setAttribute(k, attrs[k]);
  parent.appendChild(el);
  return el;
}
function text(content, attrs, parent) {
  svg("text", attrs, parent).textContent = content;
}

// A round step for n ticks over span: 1, 2 or 5 times a power of ten.
function step(span, n) {
  const raw = span / n;
  const p = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((k) => k * p).find((s) => s >= raw) || raw;
}

export function drawProfile() {
  const prof = cfg.profile;
  if (!prof || prof.length < 2) return;
  const box = document.getElementById("profile-svg");
  const W = Math.max(200, Math.round(box.getBoundingClientRect().width) || 300);
  box.setAttribute("viewBox", `0 0 ${W} ${H}`);
  box.replaceChildren();
  const lo = Math.min(...prof.map((p) => p[1]));
  const hi = Math.max(...prof.map((p) => p[1]));
  const span = Math.max(hi - lo, 10);
  const len = prof[prof.length - 1][0] || 1;
  const plotW = W - LEFT - 6;
  const plotH = H - BOTTOM - 6;
  scale.x = (d) => (LEFT + (plotW * d) / len).toFixed(1);
  scale.y = (e) => (6 + plotH - (plotH * (e - lo)) / span).toFixed(1);
  const base = 6 + plotH;
  const d = `M${LEFT},${base}${prof.map((p) => `L${scale.x(p[0])},${scale.y(p[1])}`).join("")}L${LEFT + plotW},${base}Z`;
  svg("path", { d, class: "ground" }, box);
  for (const at of [0, len].concat(cfg.checkpoints.map((c) => c[1]))) {
    svg("line", { x1: scale.x(at), x2: scale.x(at), y1: 6, y2: base, class: "tick" }, box);
  }
  // The height scale: the lowest and highest points.
  for (const e of [lo, hi]) {
    svg("line", { x1: LEFT - 3, x2: LEFT, y1: scale.y(e), y2: scale.y(e), class: "axis" }, box);
    text(fmtHeight(e), { x: LEFT - 5, y: Number(scale.y(e)) + 4, class: "label end" }, box);
  }
  // The distance axis, in the race's units.
  const units = currentUnits();
  const per = METRES[units];
  const every = step(len / per, Math.max(2, Math.floor(plotW / 70)));
  svg("line", { x1: LEFT, x2: LEFT + plotW, y1: base, y2: base, class: "axis" }, box);
  for (let u = 0; u * per <= len + 1; u += every) {
    const x = scale.x(u * per);
    svg("line", { x1: x, x2: x, y1: base, y2: base + 3, class: "axis" }, box);
    const label = `${Number(u.toFixed(2))}${u === 0 ? ` ${units}` : ""}`;
    text(label, { x, y: H - 2, class: u === 0 ? "label" : "label mid" }, box);
  }
  dot = svg("circle", { r: 4, cx: -10, cy: -10, class: "who" }, box);
  const [low, high] = [fmtHeight(lo), fmtHeight(hi)];
  document.getElementById("profile-cap").textContent =
    `Elevation ${low.split(" ")[0]}–${high}` +
    (cfg.checkpoints.length ? "; ticks: start, checkpoints, finish" : "");
  document.getElementById("profile").hidden = false;
  if (placed) placeOnProfile(placed);
}

export function placeOnProfile(r) {
  placed = r;
  if (!dot || !r?.position) {
    if (dot) dot.setAttribute("cx", -10);
    return;
  }
  const prof = cfg.profile;
  const d = cfg.laps > 1 ? r.distance_m % cfg.lap_m : r.distance_m; // the profile is a lap
  let k = 1;
  while (k < prof.length - 1 && prof[k][0] < d) k++;
  const a = prof[k - 1];
  const b = prof[k];
  const f = b[0] > a[0] ? Math.min(1, Math.max(0, (d - a[0]) / (b[0] - a[0]))) : 0;
  dot.setAttribute("cx", scale.x(d));
  dot.setAttribute("cy", scale.y(a[1] + (b[1] - a[1]) * f));
  dot.setAttribute("fill", colorOf(r));
}

// Drawn again at its new size, and in new units.
export function initProfile() {
  drawProfile();
  const box = document.getElementById("profile-svg");
  let width = 0;
  if (window.ResizeObserver && cfg.profile) {
    new ResizeObserver(() => {
      const w = Math.round(box.getBoundingClientRect().width);
      if (w && w !== width) {
        width = w;
        drawProfile();
      }
    }).observe(box);
  }
}
