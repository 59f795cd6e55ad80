// The course in metres (the page's simplified geometry): progress along it
// of a point, and the stretch of it between two progresses.
import { cfg } from "./state.js";

const c = cfg.course;
const lat0 = c.length ? c[0][0] : 0;
const lon0 = c.length ? c[0][1] : 0;
const ky = 111195;
const kx = ky * Math.cos((lat0 * Math.PI) / 180);
const xy = [];
const cum = [0];
c.forEach((p, i) => {
  xy.push([(p[1] - lon0) * kx, (p[0] - lat0) * ky]);
  if (i) cum.push(cum[i - 1] + Math.hypot(xy[i][0] - xy[i - 1][0], xy[i][1] - xy[i - 1][1]));
});

// The drawn course's length: one lap of it.
export const courseLength = cum[cum.length - 1] || 0;

// Progress along the course of a point, searched near the last (hint: a
// segment) or, without one, along the whole course: {seg, d, off} (off:
// metres from the course).
export function progressOf(lat, lon, hint) {
  const x = (lon - lon0) * kx;
  const y = (lat - lat0) * ky;
  let best = Infinity;
  let at = 0;
  const from = hint === null || hint === undefined ? 0 : hint;
  for (let k = Math.max(0, from - 2); k < xy.length - 1; k++) {
    if (hint !== null && hint !== undefined && cum[k] > cum[from] + 2000) break; // far ahead
    const a = xy[k];
    const b = xy[k + 1];
    const dx = b[0] - a[0];
    const dy = b[1] - a[1];
    const len2 = dx * dx + dy * dy;
    let f = len2 ? ((x - a[0]) * dx + (y - a[1]) * dy) / len2 : 0;
    f = Math.max(0, Math.min(1, f));
    const off = Math.hypot(a[0] + f * dx - x, a[1] + f * dy - y);
    if (off < best) {
      best = off;
      at = k + f;
    }
  }
  const i = Math.floor(at);
  return {
    seg: i,
    d: cum[i] + (at - i) * ((cum[i + 1] || cum[i]) - cum[i]),
    off: best,
  };
}

function pointAt(d) {
  let k = 0;
  while (k < c.length - 2 && cum[k + 1] < d) k++;
  const f = cum[k + 1] > cum[k] ? (d - cum[k]) / (cum[k + 1] - cum[k]) : 0;
  return [c[k][0] + (c[k + 1][0] - c[k][0]) * f, c[k][1] + (c[k + 1][1] - c[k][1]) * f];
}

// The course from progress a to b (a <= b), as [lat, lon] points.
export function stretch(a, b) {
  if (c.length < 2) return [];
  const out = [pointAt(a)];
  for (let j = 1; j < c.length && cum[j] < b; j++) if (cum[j] > a) out.push(c[j]);
  out.push(pointAt(b));
  return out;
}
