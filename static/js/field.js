// A large race (its snapshot's `field` block, DESIGN.md "Large races"): the
// followed racers' live records from their shards' columns, the whole field
// by rank when the board pages through it, their trails from the pieces
// their trail groups list, and finding a racer by name or bib.
import { getJSON } from "./net.js";
import { fnv1a, redraw, S } from "./state.js";
import { loadPieces, trailPoints } from "./trails.js";

const F = S.field;
const STATUSES = ["finished", "racing", "stale", "waiting"];
export const PAGE = 25; // board rows a page, as the head

function shardOf(id) {
  return fnv1a(id) % S.snapshot.field.shards;
}

// A racer's record from their shard's columns (entry j of the roster, whose
// columns say who each racer is: every field of a record's identity).
function recordAt(roster, doc, j) {
  const r = {
    rank: doc.rank[j],
    status: STATUSES[doc.status[j]],
    distance_m: doc.distance_m[j] || 0,
    pace_s_per_km: doc.pace_s_per_km[j],
    gap_s: doc.gap_s[j],
    eta_s: doc.eta_s[j],
    finish_s: doc.finish_s[j],
    estimated: doc.estimated ? doc.estimated[j] === 1 : false, // placed by timing mats
    position: null,
    tail: [],
    track: [],
    seq: doc.seq,
  };
  for (const key of Object.keys(roster.identity)) r[key] = roster.identity[key][j];
  // Columns only some races have (laps) come through as they are.
  for (const key of ["lap", "gun_finish_s"]) {
    if (doc[key]) r[key] = doc[key][j];
  }
  // The progress ranks use, published as how far it is beyond the fix.
  if (doc.ahead_m && doc.ahead_m[j] !== null) r.progress_m = r.distance_m + doc.ahead_m[j];
  if (doc.lat_e6[j] !== null) {
    const at = Date.parse(doc.generated_at) - doc.age_ms[j];
    r.position = {
      lat: doc.lat0 + doc.lat_e6[j] / 1e6,
      lon: doc.lon0 + doc.lon_e6[j] / 1e6,
      at: new Date(at).toISOString(),
    };
  }
  return r;
}

function indexOf(roster, id) {
  if (!roster.index) roster.index = new Map(roster.identity.id.map((x, j) => [x, j]));
  const j = roster.index.get(id);
  return j === undefined ? -1 : j;
}

// A racer's live record, if the page has their shard: else null.
export function liveRecord(id) {
  if (!S.snapshot?.field) return null;
  const n = shardOf(id);
  const roster = F.rosters[n];
  const doc = F.shards[n];
  if (!roster || !doc) return null;
  const j = indexOf(roster, id);
  return j < 0 ? null : recordAt(roster, doc, j);
}

// The followed racers' records: from the head (full records) or their shards.
export function followedRecords(snap) {
  const out = [];
  for (const id of S.following) {
    const rec = snap.racers.find((r) => r.id === id) || liveRecord(id);
    if (rec) out.push(rec);
  }
  return out;
}

// -- fetching ------------------------------------------------------------------

function ensureRoster(n) {
  if (F.rosters[n]) return Promise.resolve(F.rosters[n]);
  return getJSON(S.snapshot.field.roster_url.replace("{shard}", String(n))).then((doc) => {
    F.rosters[n] = doc;
    return doc;
  });
}

// A shard's newest copy (never an older one than the page has).
function fetchShard(n) {
  return getJSON(S.snapshot.field.shard_url.replace("{shard}", String(n)), {
    cache: "no-cache",
  }).then((doc) => {
    if (!F.shards[n] || F.shards[n].seq <= doc.seq) F.shards[n] = doc;
    return doc;
  });
}

// Shards n (and their rosters), each asked for at most once per snapshot.
function loadShards(shards) {
  const seq = S.snapshot.seq;
  const asks = [];
  for (const n of shards) {
    if (F.shards[n] && F.shards[n].seq >= seq) continue;
    asks.push(ensureRoster(n).then(() => fetchShard(n)));
  }
  // Each settles on its own: one that fails is asked again next poll.
  return Promise.allSettled(asks);
}

function noteLive(id) {
  const rec = liveRecord(id);
  if (!rec?.position) return;
  const ms = Date.parse(rec.position.at);
  const live = F.live[id] || [];
  F.live[id] = live;
  const last = live[live.length - 1];
  if (!last || ms > last[2]) live.push([rec.position.lat, rec.position.lon, ms]);
}

// Whether the board needs the whole field: a page past the head, or a category.
function wantsWhole() {
  return S.board.page > 0 || !!S.board.category;
}
let wholeAt = 0;

// Every poll: the followed racers' live shards (a few KB each, fresh each
// cycle), their rosters once, their trail groups when due; the whole field
// while the board pages through it (every shard, at most every
// max(interval, one second a shard): a phone browsing 50,000 racers is not
// sent a megabyte every poll).
export function poll() {
  const field = S.snapshot?.field;
  if (!field) return;
  const shards = new Set(S.following.map(shardOf));
  if (wantsWhole()) {
    const every = Math.max(1000 * (S.snapshot.race.interval_s || 2), 1000 * field.shards);
    if (!F.all || Date.now() - wholeAt >= every) {
      wholeAt = Date.now();
      for (let n = 0; n < field.shards; n++) shards.add(n);
    }
  }
  if (!shards.size) return;
  loadShards(shards).then(() => {
    for (const id of S.following) {
      const n = shardOf(id);
      if (F.rosters[n]) F.missing[id] = indexOf(F.rosters[n], id) < 0;
      noteLive(id);
    }
    if (wantsWhole()) buildWhole();
    redraw();
  });
  if (S.following.length) loadTrails(S.following);
}

// Someone followed anew: their shard now, not at the next poll.
export function followed() {
  poll();
}

// The whole field by rank, from every shard of one cycle.
function buildWhole() {
  const field = S.snapshot.field;
  const docs = [];
  for (let n = 0; n < field.shards; n++) {
    if (!F.shards[n] || !F.rosters[n]) return;
    docs.push(F.shards[n]);
  }
  const seq = docs[0].seq;
  if (docs.some((d) => d.seq !== seq)) return; // shards of two cycles: wait for one
  if (F.all && F.all.seq === seq) return;
  const byRank = [];
  docs.forEach((doc, n) => {
    const roster = F.rosters[n];
    for (let j = 0; j < doc.rank.length; j++) byRank[doc.rank[j] - 1] = recordAt(roster, doc, j);
  });
  F.all = { seq, byRank: byRank.filter(Boolean) };
}

// The rows of the board's page when it is not the head: {rows, total}, or
// null while the field is on its way.
export function pageRows() {
  if (!F.all) return null;
  const all = S.board.category
    ? F.all.byRank.filter((r) => r.category === S.board.category)
    : F.all.byRank;
  const from = S.board.page * PAGE;
  return { rows: all.slice(from, from + PAGE), total: all.length, from };
}

// Search matches' live numbers: their shards, once per snapshot.
export function loadDetails(ids) {
  if (!S.snapshot?.field || !ids.length) return;
  loadShards(new Set(ids.map(shardOf))).then(redraw);
}

// Racers' trails (the followed; in a replay, all shown): their trail
// groups, fetched again once trail_every_s / 3 old (the recent trail is
// rewritten every trail_every_s); then the pieces they list, each once.
export function loadTrails(ids) {
  const field = S.snapshot?.field;
  if (!field) return;
  const byUrl = {};
  for (const id of ids) {
    const have = F.trails[id];
    if (have && Date.now() - have.at < (1000 * field.trail_every_s) / 3) continue;
    const url = field.trail_url.replace("{trail}", String(fnv1a(id) % field.trails));
    byUrl[url] = byUrl[url] || [];
    byUrl[url].push(id);
  }
  for (const url of Object.keys(byUrl)) {
    getJSON(url, { cache: "no-cache" })
      .then((doc) => {
        for (const id of byUrl[url]) {
          const k = doc.ids.indexOf(id);
          if (k < 0) continue;
          const refs = doc.chunks[k].slice();
          if (doc.recent[k]) refs.push(doc.recent[k]);
          F.trails[id] = {
            at: Date.now(),
            refs: refs.map((ref) => [doc.packs[ref[0]], ref[1], ref[2]]),
            splits: doc.splits ? doc.splits[k] : null,
          };
          loadPieces(F.trails[id].refs);
        }
        redraw();
      })
      .catch(() => {
        /* asked again next time */
      });
  }
}

// A racer's trail as the page has it: their pieces, and for a followed
// racer the positions seen since.
export function trailOf(r) {
  const refs = F.trails[r.id] ? F.trails[r.id].refs : [];
  return trailPoints(refs, F.live[r.id] || []);
}

// -- finding a racer by name or bib -------------------------------------------
// As the publisher folds (shapes/field.py fold/tokens/name_key): accents
// off, lower case, words of letters and digits.
function fold(text) {
  return text
    .normalize("NFKD")
    .replace(/\p{Mn}/gu, "")
    .toLowerCase();
}
function words(text) {
  return fold(text)
    .split(/[^\p{L}\p{N}]+/u)
    .filter(Boolean);
}
function nameKey(prefix) {
  if (/^[a-z0-9]+$/.test(prefix)) return prefix;
  let hex = "";
  for (const b of new TextEncoder().encode(prefix)) hex += b.toString(16).padStart(2, "0");
  return `~${hex}`;
}
// Each name index object once (they never change): typing on within a
// prefix asks for nothing more.
const names = {};
function lookup(prefix) {
  const url = S.snapshot.field.names_url.replace("{key}", nameKey(prefix));
  if (!names[url]) {
    names[url] = getJSON(url).catch(() => {
      delete names[url]; // asked again on the next search
      return { racers: [], fields: [], searched: [] };
    });
  }
  return names[url];
}
// The racers (their identity: id, name...) with a word of each field the
// index says is searched (name, id, bib) starting with every word asked.
export function findRacers(query) {
  const field = S.snapshot?.field;
  const want = words(query);
  if (!field || !want.length) return Promise.resolve([]);
  const first = Array.from(want[0]);
  return lookup(first.slice(0, 2).join(""))
    .then((doc) =>
      // A crowded prefix lists only exact two-letter words; the rest are one letter on.
      doc.split && first.length > 2 ? lookup(first.slice(0, 3).join("")) : doc,
    )
    .then((doc) =>
      (doc.racers || [])
        .map((values) => Object.fromEntries(doc.fields.map((f, k) => [f, values[k]])))
        .filter((r) => {
          const have = words(doc.searched.map((f) => r[f] || "").join(" "));
          return want.every((w) => have.some((h) => h.indexOf(w) === 0));
        }),
    );
}
