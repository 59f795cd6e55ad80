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

// The records shown: every racer of a small race; a large race's head, and
// the followed racer's record from their shard.
export function shown(snap) {
  return isField(snap) ? field.shown(snap) : snap.racers;
}

function refsOf(r) {
  return (r.track || []).map(parseRange).filter(Boolean);
}

// After each new snapshot: what the shape needs besides it. A small race:
// every racer's pieces (one request per pack); a large one: the followed
// racer's shard and trail.
export function polled(snap) {
  if (isField(snap)) {
    field.pollFollowed();
    return;
  }
  const refs = snap.racers.flatMap(refsOf);
  keepPieces(refs);
  loadPieces(refs);
}

// A racer's whole trail as the page has it: [lat, lon, ms] in time order.
export function trailOf(r) {
  if (isField(S.snapshot)) return field.trailOf(r);
  const tail = (r.tail || []).map((p) => [p[0], p[1], Date.parse(p[2])]);
  return trailPoints(refsOf(r), tail);
}

// Whose trail is drawn: every racer's in a small race; in a large one the
// followed racer's (and in a replay, every racer shown).
export function drawsTrail(snap, r) {
  return !isField(snap) || !!S.replay || r.id === S.following;
}

// A replay of a large race reads the trails of those it shows.
export function wantTrails(ids) {
  if (isField(S.snapshot)) field.loadTrails(ids);
}
