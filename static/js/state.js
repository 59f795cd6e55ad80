// What every module of the page shares: the race's config, one state object,
// the server's clock, and who a racer is (their colour).

export const cfg = JSON.parse(document.getElementById("race-config").textContent);

export const S = {
  snapshot: null, // the newest snapshot.json seen (never an older copy)
  following: null, // the followed racer's id
  replay: null, // null: live; else {t: ms, playing: bool, speed: 1 | 10 | 60}
  // Server clock minus ours: a phone's clock may be off (poll.js).
  skewMs: null,
  // A large race (its snapshot's `field` block, DESIGN.md "Large races"):
  // the followed racer's record comes from its live shard every poll; trails
  // from the pieces their trail groups list (field.js).
  field: {
    rosters: {}, // shard number -> roster (immutable): ids, names, kinds, colors
    record: null, // the followed racer's live record, built from shard columns
    missing: false, // the followed id is in no roster
    trails: {}, // racer id -> {refs: [[pack, offset, length]], at}: from their trail group
    live: [], // the followed racer's positions seen since, as [lat, lon, ms]
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

const PALETTE = ["#e4572e", "#17bebb", "#ffc914", "#76b041", "#2e282a", "#8e6c8a", "#3a86ff"];
// By id, not by place: a racer who overtakes keeps their colour.
export function colorOf(r) {
  return r.color || PALETTE[fnv1a(r.id) % PALETTE.length];
}
