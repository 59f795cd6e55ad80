// The elevation profile (courses with elevation): plain SVG, the ground, the
// start, checkpoints and finish as ticks, and a dot for the followed racer.
import { cfg, colorOf } from "./state.js";

const SVG = "http://www.w3.org/2000/svg";
let dot = null;
const scale = {};

function svg(tag, attrs, parent) {
  const el = document.createElementNS(SVG, tag);
  for (const k of Object.keys(attrs)) el.setAttribute(k, attrs[k]);
  parent.appendChild(el);
  return el;
}

export function drawProfile() {
  const prof = cfg.profile;
  if (!prof || prof.length < 2) return;
  const box = document.getElementById("profile-svg");
  const W = 300;
  const H = 64;
  const lo = Math.min(...prof.map((p) => p[1]));
  const hi = Math.max(...prof.map((p) => p[1]));
  const span = Math.max(hi - lo, 10);
  const len = prof[prof.length - 1][0] || 1;
  scale.x = (d) => ((W * d) / len).toFixed(1);
  scale.y = (e) => (H - 4 - ((H - 10) * (e - lo)) / span).toFixed(1);
  const d = `M0,${H}${prof.map((p) => `L${scale.x(p[0])},${scale.y(p[1])}`).join("")}L${W},${H}Z`;
  svg("path", { d, class: "ground" }, box);
  for (const at of [0, len].concat(cfg.checkpoints.map((c) => c[1]))) {
    svg("line", { x1: scale.x(at), x2: scale.x(at), y1: 0, y2: H, class: "tick" }, box);
  }
  dot = svg("circle", { r: 3, cx: -10, cy: -10, class: "who" }, box);
  document.getElementById("profile-cap").textContent =
    `Elevation ${Math.round(lo)}–${Math.round(hi)} m` +
    (cfg.checkpoints.length ? "; ticks: start, checkpoints, finish" : "");
  document.getElementById("profile").hidden = false;
}

export function placeOnProfile(r) {
  if (!dot || !r?.position) {
    if (dot) dot.setAttribute("cx", -10);
    return;
  }
  const prof = cfg.profile;
  const d = r.distance_m;
  let k = 1;
  while (k < prof.length - 1 && prof[k][0] < d) k++;
  const a = prof[k - 1];
  const b = prof[k];
  const f = b[0] > a[0] ? Math.min(1, Math.max(0, (d - a[0]) / (b[0] - a[0]))) : 0;
  dot.setAttribute("cx", scale.x(d));
  dot.setAttribute("cy", scale.y(a[1] + (b[1] - a[1]) * f));
  dot.setAttribute("fill", colorOf(r));
}
