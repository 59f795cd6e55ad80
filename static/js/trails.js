// Racers' trails, for both shapes (DESIGN.md, "Trails"): pieces of packs,
// one gzip member per racer, each read once (they never change). The pieces
// wanted from one pack are read with one range request: a small race's
// pieces hold every racer side by side, so a whole field's trails cost a
// request per pack.
import { getRange, inflateJSON } from "./net.js";
import { redraw } from "./state.js";

const pieces = {}; // "pack@offset" -> [[lat, lon, ms], ...] once read; "asked" on its way

function key(ref) {
  return `${ref[0]}@${ref[1]}`;
}

// A record's `track` entry ("packs/1-ab.bin#bytes=0-99") as [pack, offset, length].
export function parseRange(url) {
  const m = /^(.+)#bytes=(\d+)-(\d+)$/.exec(url);
  return m ? [m[1], Number(m[2]), Number(m[3]) - Number(m[2]) + 1] : null;
}

function pointsOf(doc) {
  const t0 = 1000 * doc.t0;
  return doc.points.map((p) => [p[0], p[1], t0 + 1000 * p[2]]);
}

// Read the pieces not had yet: per pack, one request for the span covering them.
export function loadPieces(refs) {
  const byPack = {};
  for (const ref of refs) {
    if (pieces[key(ref)]) continue;
    pieces[key(ref)] = "asked";
    byPack[ref[0]] = byPack[ref[0]] || [];
    byPack[ref[0]].push(ref);
  }
  for (const pack of Object.keys(byPack)) {
    const want = byPack[pack];
    const first = Math.min(...want.map((r) => r[1]));
    const last = Math.max(...want.map((r) => r[1] + r[2])) - 1;
    getRange(pack, first, last)
      .then((buf) =>
        Promise.all(
          want.map((ref) =>
            inflateJSON(buf.slice(ref[1] - first, ref[1] - first + ref[2])).then((doc) => {
              pieces[key(ref)] = pointsOf(doc);
            }),
          ),
        ),
      )
      .then(redraw)
      .catch(() => {
        for (const ref of want) if (pieces[key(ref)] === "asked") delete pieces[key(ref)];
      });
  }
}

// A trail in time order, each point once: the pieces (those read so far),
// then the points after them, all as [lat, lon, ms].
export function trailPoints(refs, after) {
  const out = [];
  let last = -Infinity;
  function add(p) {
    if (p[2] > last) {
      out.push(p);
      last = p[2];
    }
  }
  for (const ref of refs) {
    const got = pieces[key(ref)];
    if (Array.isArray(got)) got.forEach(add);
  }
  after.forEach(add);
  return out;
}

// Let go of pieces no trail lists any more (merged into bigger ones).
export function keepPieces(refs) {
  const keep = new Set(refs.map(key));
  for (const k of Object.keys(pieces)) if (!keep.has(k) && pieces[k] !== "asked") delete pieces[k];
}
