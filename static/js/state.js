// What every module of the page shares: the race's config, one state object,
// the server's clock.

export const cfg = JSON.parse(document.getElementById("race-config").textContent);

export const S = {
  snapshot: null, // the newest snapshot.json seen (never an older copy)
  // "My runners": the ids followed, pinned atop the board, highlighted and
  // labelled on the map (follow.js); `focus` is the one the map follows.
  following: [],
  focus: null,
  centring: true, // the map keeps the focus in view (false: the spectator moved it)
  arriving: false, // the focus was just chosen: the map zooms in to them once
  replay: null, // null: live; else {t: ms, playing: bool, speed: 1 | 10 | 60}
  // What the board shows: a page of ranks (0: the head), a category, an order.
  board: { page: 0, category: "", order: "gun" },
  // Server clock minus ours: a phone's clock may be off (poll.js).
  skewMs: null,
  // A large race (its snapshot's `field` block, DESIGN.md "Large races"):
  // the followed racers' records come from their live shards every poll;
  // trails from the pieces their trail groups list (field.js).
  field: {
    rosters: {}, // shard number -> roster (immutable): each identity field a column
    shards: {}, // shard number -> the newest shard document fetched
    records: {}, // racer id -> their live record, built from shard columns
    missing: {}, // followed ids in no roster
    trails: {}, // racer id -> {refs: [[pack, offset, length]], at}: from their trail group
    live: {}, // racer id -> their positions seen since, as [lat, lon, ms]
    all: null, // the whole field by rank, when a page of the board needs it: {seq, byRank}
  },
};

export function now() {
  return Date.now() + (S.skewMs || 0);
}

// Redraw everything from the snapshot: registered by main.js, asked for by
// any module whose data arrived (a piece of a trail, a shard, a trail group).
let drawer = null;
export function onRedraw(f) {
  drawer = f;
}
export function redraw() {
  if (S.snapshot && drawer) drawer(S.snapshot);
}

// FNV-1a (32-bit) of the id's UTF-8 bytes: the publisher's shard_of().
export function fnv1a(text) {
  const bytes = new TextEncoder().encode(text);
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193) >>> 0;
  return h;
}
