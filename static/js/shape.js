// The two shapes a race is published in (DESIGN.md): the one place the page
// asks which. A small race's snapshot.json holds every racer's record and
// trail; a large race's holds the leaderboard head, and a `field` block
// saying where every racer's live numbers and trail are (field.js).
import * as field from "./field.js";
import { S } from "./state.js";
import { keepPieces, loadPieces, parseRange, trailPoints } from "./trails.js";

export function isField(snap) {
  return !!snap?.field;
}

// The board's rows (a page of them in a large race), in the category asked
// for: {rows, total, from}; rows null while a large race's page is on its way.
export function boardRows(snap) {
  const cat = S.board.category;
  if (!isField(snap)) {
    const rows = cat ? snap.racers.filter((r) => r.category === cat) : snap.racers;
    return { rows, total: rows.length, from: 0 };
  }
  if (S.board.page === 0 && !cat) return { rows: snap.racers, total: snap.field.count, from: 0 };
  return field.pageRows() || { rows: null, total: snap.field.count, from: 0 };
}

// The followed racers' records ("my runners").
export function followedRecords(snap) {
  if (isField(snap)) return field.followedRecords(snap);
  return S.following.map((id) => snap.racers.find((r) => r.id === id)).filter(Boolean);
}

// The records on the map: every racer of a small race; a large race's head,
// the board's page and the followed racers.
export function shown(snap) {
  if (!isField(snap)) return snap.racers;
  const out = snap.racers.slice();
  const seen = new Set(out.map((r) => r.id));
  const page = boardRows(snap).rows || [];
  for (const r of page.concat(field.followedRecords(snap))) {
    if (!seen.has(r.id)) {
      seen.add(r.id);
      out.push(r);
    }
  }
  return out;
}

function refsOf(r) {
  return (r.track || []).map(parseRange).filter(Boolean);
}

// After each new snapshot: what the shape needs besides it. A small race:
// every racer's pieces (one request per pack); a large one: the followed
// racers' shards and trails, and the field while the board pages through it.
export function polled(snap) {
  if (isField(snap)) {
    field.poll();
    return;
  }
  const refs = snap.racers.flatMap(refsOf);
  keepPieces(refs);
  loadPieces(refs);
}

// The board asks for another page or category: a large race fetches the field now.
export function boardChanged() {
  if (isField(S.snapshot)) field.poll();
}

// Someone followed anew.
export function followedNow() {
  if (isField(S.snapshot)) field.followed();
}

// A racer's whole trail as the page has it: [lat, lon, ms] in time order.
export function trailOf(r) {
  if (isField(S.snapshot)) return field.trailOf(r);
  const tail = (r.tail || []).map((p) => [p[0], p[1], Date.parse(p[2])]);
  return trailPoints(refsOf(r), tail);
}

// Whose trail is drawn: every racer's in a small race; in a large one the
// followed racers' (and in a replay, every racer shown).
export function drawsTrail(snap, r) {
  return !isField(snap) || !!S.replay || S.following.includes(r.id);
}

// A replay of a large race reads the trails of those it shows.
export function wantTrails(ids) {
  if (isField(S.snapshot)) field.loadTrails(ids);
}

// Search matches' live numbers (a large race: their shards).
export function wantDetails(ids) {
  if (isField(S.snapshot)) field.loadDetails(ids);
}

// A racer's live record, wherever the page has it.
export function recordOf(snap, id) {
  return snap.racers.find((r) => r.id === id) || (isField(snap) ? field.liveRecord(id) : null);
}
